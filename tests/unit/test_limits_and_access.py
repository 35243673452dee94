"""The message rate limit, refusals and shutdown in the Session; token and Origin policy in access."""

from __future__ import annotations

import asyncio
import json
import time

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamsnap.access import (
    OPEN_GRANT,
    SIGNATURE_HEADER,
    AccessControl,
    AccessDenied,
    BackendHooks,
    Grant,
    NotAuthenticated,
    Right,
    TokenPolicy,
    origin_allowed,
    sign,
    signature_valid,
    signed_json_request,
)
from streamsnap.config import BackendSettings, SignalingSettings
from streamsnap.protocol import messages as msg
from streamsnap.protocol.constants import StreamStatus
from streamsnap.protocol.session import CloseSession, Send, Session, State, StopPublish

pytestmark = pytest.mark.unit

FUZZ = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
SECRET = "s3cret-for-tests-only-" + "0123456789abcdef" * 3


def established(config: SignalingSettings) -> Session:
    session = Session("sid", "token", now=0.0, config=config)
    session.receive(msg.Connect(), 0.0)
    return session


def test_a_burst_over_the_limit_closes_with_policy_violation() -> None:
    session = established(SignalingSettings(message_rate=10.0, message_burst=5))
    answers = [session.receive(msg.Ping(), 0.0) for _ in range(4)]  # 1 already spent on Connect
    assert all(isinstance(a[0], Send) and a[0].message.message == "pong" for a in answers)
    flooded = session.receive(msg.Ping(), 0.0)
    assert isinstance(flooded[0], Send)
    assert flooded[0].message.data[0]["info"] == "Failed by error: too many messages"
    assert flooded[-1] == CloseSession("Failed by error: too many messages", 1008)
    assert session.state is State.CLOSED


def test_the_bucket_refills_at_the_rate() -> None:
    session = established(SignalingSettings(message_rate=10.0, message_burst=2))
    now = 0.0
    for _ in range(100):  # 10 per second forever is fine
        now += 0.1
        assert session.receive(msg.Ping(), now)[0] == Send(msg.pong())
    assert session.state is State.ESTABLISHED


@FUZZ
@given(st.lists(st.floats(min_value=0.0, max_value=0.5), min_size=1, max_size=300),
       st.floats(min_value=1.0, max_value=50.0), st.integers(min_value=1, max_value=30))
def test_no_client_gets_more_than_burst_plus_rate(gaps: list[float], rate: float, burst: int) -> None:
    """Whatever the timing, messages accepted by time t never exceed burst + rate * t."""
    session = Session("sid", "token", now=0.0, config=SignalingSettings(message_rate=rate, message_burst=burst))
    now, accepted = 0.0, 0
    for gap in gaps:
        now += gap
        actions = session.receive(msg.Ping(), now)
        if session.state is State.CLOSED:
            assert isinstance(actions[-1], CloseSession) and actions[-1].code == 1008
            break
        accepted += 1
        assert accepted <= burst + rate * now + 1e-6


def test_refused_connection_says_why_and_closes() -> None:
    session = Session("sid", "token", now=0.0, config=SignalingSettings())
    actions = session.refuse_connection("Restricted access")
    assert actions == [Send(msg.fail("connection", "Restricted access")), CloseSession("Restricted access", 1008)]
    assert session.receive(msg.Connect(), 1.0) == []


def test_shutdown_unpublishes_every_stream_then_closes() -> None:
    session = established(SignalingSettings())
    for index in range(2):
        session.receive(msg.Publish(f"id{index}", f"cam{index}", "v=0"), 0.0)
        session.publish_started(f"id{index}")
    actions = session.shutting_down("Stopped by server shutdown")
    statuses = [a.message.data[0] for a in actions if isinstance(a, Send)]
    assert [(s["mediaSessionId"], s["status"], s["info"]) for s in statuses] == [
        ("id0", StreamStatus.UNPUBLISHED, "Stopped by server shutdown"),
        ("id1", StreamStatus.UNPUBLISHED, "Stopped by server shutdown"),
    ]
    assert [a.stream_id for a in actions if isinstance(a, StopPublish)] == ["id0", "id1"]
    assert actions[-1] == CloseSession("Stopped by server shutdown", 1001)
    assert session.shutting_down("again") == []


# Access tokens.

def test_tokens_off_by_default() -> None:
    policy = TokenPolicy("")
    assert not policy.enabled
    assert policy.grant(None) is OPEN_GRANT
    assert policy.bearer(None) is OPEN_GRANT


def test_token_rights_and_stream_patterns() -> None:
    policy = TokenPolicy(SECRET)
    grant = policy.grant(policy.issue(["snapshot"], streams=["cam-*", "lobby"], subject="viewer"))
    assert grant.expires is not None and not grant.expired()
    assert grant == Grant(frozenset({Right.SNAPSHOT}), ("cam-*", "lobby"), "viewer", grant.expires)
    assert grant.allows(Right.SNAPSHOT, "cam-7") and grant.allows(Right.SNAPSHOT, "lobby")
    assert not grant.allows(Right.SNAPSHOT, "office")
    assert not grant.allows(Right.PUBLISH, "cam-7")
    lenient = TokenPolicy(SECRET, allow_no_exp=True)  # a token without `exp` needs the setting
    everything = lenient.grant(jwt.encode({"rights": ["publish", "snapshot", "manage", "pull", "metrics",
                                                      "unknown-right"]}, SECRET))
    assert everything.rights == frozenset(Right) and everything.allows(Right.PUBLISH, "any")


def test_a_grant_sees_the_streams_some_right_covers() -> None:
    viewer = Grant(frozenset({Right.SNAPSHOT}), ("cam-*",))
    assert viewer.sees("cam-1") and not viewer.sees("office")
    assert not viewer.allows(Right.MANAGE, "cam-1")
    assert not Grant(frozenset(), ()).sees("cam-1")  # a token with no right sees nothing
    assert OPEN_GRANT.sees("anything") and OPEN_GRANT.allows(Right.MANAGE, "anything")


@pytest.mark.parametrize(
    "token",
    [
        None,
        "",
        "not-a-jwt",
        jwt.encode({"rights": ["publish"]}, "another-secret-" + "0123456789abcdef" * 3, algorithm="HS256"),
        jwt.encode({"rights": ["publish"], "exp": int(time.time()) - 10}, SECRET, algorithm="HS256"),
        jwt.encode({"sub": "no rights claim"}, SECRET, algorithm="HS256"),
        jwt.encode({"rights": "publish"}, SECRET, algorithm="HS256"),
        jwt.encode({"rights": ["publish"], "streams": "cam"}, SECRET, algorithm="HS256"),
        jwt.encode({"rights": ["publish"]}, SECRET, algorithm="HS512"),
        jwt.encode({"rights": ["publish"]}, None, algorithm="none"),
    ],
    ids=["missing", "empty", "garbage", "wrong-secret", "expired", "no-rights", "rights-not-list",
         "streams-not-list", "other-algorithm", "alg-none"],
)
def test_bad_tokens_are_restricted_access(token: str | None) -> None:
    with pytest.raises(NotAuthenticated) as denied:
        TokenPolicy(SECRET).grant(token)
    assert denied.value.detail  # the log says why; clients are told "Restricted access" by the transports


def test_issuer_is_checked_when_configured() -> None:
    policy = TokenPolicy(SECRET, issuer="my-app")
    assert policy.grant(policy.issue(["publish"])).rights == {Right.PUBLISH}
    with pytest.raises(AccessDenied):
        policy.grant(TokenPolicy(SECRET).issue(["publish"]))


def test_bearer_header_for_rest() -> None:
    policy = TokenPolicy(SECRET)
    token = policy.issue(["snapshot"])
    assert policy.bearer(f"Bearer {token}").rights == {Right.SNAPSHOT}
    assert policy.bearer(f"bearer  {token} ").rights == {Right.SNAPSHOT}
    for header in (None, "", token, f"Basic {token}", "Bearer "):
        with pytest.raises(AccessDenied):
            policy.bearer(header)


@FUZZ
@given(st.text(max_size=400) | st.binary(max_size=400).map(lambda b: b.decode("latin-1")))
def test_any_token_string_is_refused_cleanly(token: str) -> None:
    with pytest.raises(AccessDenied):
        TokenPolicy(SECRET).grant(token)


def test_origin_allow_list() -> None:
    allowed = ["https://app.example", "http://localhost:8080"]
    assert origin_allowed("https://app.example", allowed)
    assert origin_allowed("HTTPS://APP.EXAMPLE/", allowed)
    assert origin_allowed("http://localhost:8080", allowed)
    assert not origin_allowed("https://evil.example", allowed)
    assert not origin_allowed("http://localhost:8081", allowed)
    assert not origin_allowed("null", allowed)
    assert origin_allowed(None, allowed)  # not a browser
    assert origin_allowed("https://evil.example", [])
    assert origin_allowed("https://evil.example", ["*"])


def test_hook_signature() -> None:
    body = b'{"event": "connect"}'
    header = sign("k", body)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert signature_valid("k", body, header)
    assert not signature_valid("k", body + b" ", header)
    assert not signature_valid("other", body, header)
    assert not signature_valid("k", body, None)


def test_tokens_without_exp_are_refused_unless_allowed() -> None:
    forever = jwt.encode({"rights": ["snapshot"]}, SECRET)
    with pytest.raises(NotAuthenticated, match="exp"):
        TokenPolicy(SECRET).grant(forever)
    assert TokenPolicy(SECRET, allow_no_exp=True).grant(forever).expires is None


def test_empty_streams_grant_nothing_and_names_match_exactly() -> None:
    policy = TokenPolicy(SECRET)
    nothing = policy.grant(jwt.encode({"rights": ["snapshot"], "streams": [], "exp": time.time() + 60}, SECRET))
    assert nothing.streams == () and not nothing.allows(Right.SNAPSHOT, "any") and not nothing.sees("any")
    everything = policy.grant(jwt.encode({"rights": ["snapshot"], "exp": time.time() + 60}, SECRET))
    assert everything.streams is None and everything.allows(Right.SNAPSHOT, "any")
    # a name with pattern characters in it is matched as written too
    exact = Grant(frozenset({Right.SNAPSHOT}), ("cam[1]", "lobby*"))
    assert exact.allows(Right.SNAPSHOT, "cam[1]") and exact.allows(Right.SNAPSHOT, "lobby*")
    assert exact.allows(Right.SNAPSHOT, "cam1")  # and as a pattern
    assert not exact.allows(Right.SNAPSHOT, "office")


def test_an_expired_grant_is_refused_at_use() -> None:
    grant = Grant(frozenset({Right.SNAPSHOT}), None, "viewer", expires=time.time() - 1)
    assert grant.expired()
    access = AccessControl(TokenPolicy(SECRET), BackendHooks(BackendSettings()))
    with pytest.raises(NotAuthenticated, match="expired"):
        asyncio.run(access.allow(grant, Right.SNAPSHOT, "cam", {}))


def test_webhook_bodies_are_signed_like_the_hooks() -> None:
    body, headers = signed_json_request("hook-key", {"name": "cam", "path": "thumbnails/cam.jpg", "taken_at": 1})
    assert json.loads(body) == {"name": "cam", "path": "thumbnails/cam.jpg", "taken_at": 1}
    assert headers["Content-Type"] == "application/json"
    assert signature_valid("hook-key", body, headers[SIGNATURE_HEADER])
    assert SIGNATURE_HEADER not in signed_json_request("", {"name": "cam"})[1]  # no secret: unsigned
