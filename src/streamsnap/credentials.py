"""Camera urls as they may be shown: without the credentials in them, whatever their encoding.

A camera's url may carry credentials in its user information (`rtsp://admin:pw@host/…`) and in its
query (`?user=admin&password=pw`, as many cameras take them). They go to the camera and nowhere else:
`public_url` is the form names, listings, metrics labels and log lines use, and `redact` finds the camera
urls in a log line, in whatever percent-encoding a client wrote them (a request path carries them
encoded, `rtsp%3A%2F%2F…`, `rtsp:%2F%2F…`, or encoded twice), by parsing each one.
"""

from __future__ import annotations

import re
import urllib.parse

CAMERA_SCHEMES = ("rtsp", "rtsps")
CREDENTIAL_PARAMETERS = frozenset({
    "user", "username", "usr", "login", "password", "passwd", "pass", "pwd", "psw", "auth", "authorization",
    "token", "access_token", "key", "apikey", "api_key", "secret", "sig", "signature", "session", "sid",
})
"Query parameters (compared decoded and in lower case) whose values are credentials of the camera's."
MAX_DECODINGS = 4
"Percent-encodings undone at most to find a camera url in a log line (each `%25` is one more)."
_TOKEN = re.compile(r"[^\s\"'<>]+")


def public_url(url: str) -> str:
    """`url` without user information and without credential query parameters."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return "<invalid url>"
    netloc = parts.netloc
    if "@" in netloc:
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        netloc = f"{host}:{port}" if port is not None else host
    query = parts.query
    if query:
        pairs = query.split("&")
        kept = [pair for pair in pairs if _key(pair) not in CREDENTIAL_PARAMETERS]
        query = "&".join(kept)
    shown = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return url[:len(parts.scheme)] + shown[len(parts.scheme):]  # the scheme as written (urlsplit lowers it)


def _key(pair: str) -> str:
    return _decoded(pair.partition("=")[0]).strip().lower()


def _decoded(text: str) -> str:
    """`text` with its percent-encodings undone, `MAX_DECODINGS` layers at most."""
    for _ in range(MAX_DECODINGS):
        plain = urllib.parse.unquote(text)
        if plain == text:
            break
        text = plain
    return text


def _camera_url_at(text: str) -> int:
    lower = text.lower()
    found = [lower.find(f"{scheme}://") for scheme in CAMERA_SCHEMES]
    return min((at for at in found if at >= 0), default=-1)


def redact(text: str) -> str:
    """`text` with each camera url in it, plain or percent-encoded, replaced by its public form (decoded) when
    it carries credentials; other text is left as it was."""
    if "rtsp" not in text.lower():
        return text

    def shown(match: re.Match[str]) -> str:
        token = match.group(0)
        plain = _decoded(token)
        at = _camera_url_at(plain)
        if at < 0:
            return token
        url = plain[at:]
        public = public_url(url)
        return token if public == url else plain[:at] + public

    return _TOKEN.sub(shown, text)
