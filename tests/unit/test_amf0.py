"""AMF0 on its own: values both ways, every marker an encoder may send, then hostile bytes."""

from __future__ import annotations

import ast
import struct
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamsnap.protocol.rtmp import amf0
from streamsnap.protocol.rtmp.amf0 import MAX_AMF_VALUES, AmfError, Undefined, decode_amf0, encode_amf0
from tests.syntax import parse

pytestmark = pytest.mark.unit


def test_amf0_round_trip() -> None:
    values = ["connect", 1.0, {"app": "live", "n": 2.5, "ok": True, "nested": {"x": None}}, None,
              Undefined.UNDEFINED, [1.0, "a"]]
    assert decode_amf0(b"".join(encode_amf0(v) for v in values)) == values


def test_what_encoding_writes() -> None:
    assert encode_amf0(2) == b"\x00" + struct.pack(">d", 2.0)  # every number is a double
    assert encode_amf0(False) == b"\x01\x00"
    assert encode_amf0("ok") == b"\x02\x00\x02ok"
    assert encode_amf0({"a": None}) == b"\x03\x00\x01a\x05\x00\x00\x09"
    long = "x" * 0x10000
    assert encode_amf0(long)[:5] == b"\x0c\x00\x01\x00\x00"  # past 64 KiB: a long string
    assert decode_amf0(encode_amf0(long)) == [long]


@pytest.mark.parametrize("data, value", [
    (b"\x08\x00\x00\x00\x09\x00\x03fps\x00" + struct.pack(">d", 30.0) + b"\x00\x00\x09", {"fps": 30.0}),  # ECMA
    (b"\x0b" + struct.pack(">d", 1e12) + b"\x00\x00", 1e12),  # date: the time zone is dropped
    (b"\x07\x00\x01", None),  # reference: not followed
    (b"\x0d", None),  # unsupported
    (b"\x0f\x00\x00\x00\x03<a>", "<a>"),  # XML document
    (b"\x02\x00\x02\xff\xfe", "\ufffd\ufffd"),  # not UTF-8: replaced, not refused
])
def test_markers_an_encoder_may_send(data: bytes, value: object) -> None:
    assert decode_amf0(data) == [value]


@pytest.mark.parametrize("data, words", [
    (b"\x0a\x00\x00\x00\x01" * 100, "deep"),
    (b"\x03\x00\x01a" * 20 + b"\x05", "deep"),
    (b"\x0a\xff\xff\xff\xff\x05", "array longer than the message"),
    (b"\x03\x00\x01a\x05", "runs past the message"),  # an object without its end
    (b"\x00\x00\x00", "runs past the message"),
    (b"\x10", "marker 0x10 not supported"),  # typed object
    (b"\x11", "marker 0x11 not supported"),  # AMF3 switch
])
def test_malformed_amf0_is_refused_in_our_words(data: bytes, words: str) -> None:
    with pytest.raises(AmfError, match=words):
        decode_amf0(data)


def test_an_array_of_millions_is_refused_by_its_count_before_any_value_is_read() -> None:
    nulls = b"\x0a" + (4_000_000).to_bytes(4, "big") + b"\x05" * 4_000_000
    started = time.perf_counter()
    with pytest.raises(AmfError, match="array of 4000000 values over the limit of 256"):
        decode_amf0(encode_amf0("connect") + encode_amf0(1.0) + nulls)
    assert time.perf_counter() - started < 0.05  # unbounded, it took 6-9 s of the event loop


@pytest.mark.parametrize("data", [
    b"\x0a" + (MAX_AMF_VALUES + 1).to_bytes(4, "big") + b"\x05" * (MAX_AMF_VALUES + 1),  # one array
    (b"\x0a\x00\x00\x00\x64" + b"\x05" * 100) * 3,  # values of several arrays add up
    b"\x03" + b"".join(b"\x00\x02k" + bytes([i % 10 + 48]) + b"\x05" for i in range(300)) + b"\x00\x00\x09",  # object
    b"\x08\x00\x00\x00\x00" + b"".join(b"\x00\x01k\x05" for _ in range(300)) + b"\x00\x00\x09",  # ECMA
    b"\x05" * (MAX_AMF_VALUES + 1),  # values side by side
])
def test_values_are_counted_across_a_message(data: bytes) -> None:
    with pytest.raises(AmfError, match="over the limit of 256"):
        decode_amf0(data)


def test_what_encoders_send_fits_the_value_limit() -> None:
    # ffmpeg's connect, with enhanced RTMP's codec list (OBS 30+, ffmpeg 7+) on top.
    connect = {"app": "live", "flashVer": "FMLE/3.0 (compatible; Lavf61.7.100)", "tcUrl": "rtmp://h/live",
               "fpad": False, "capabilities": 15.0, "audioCodecs": 4071.0, "videoCodecs": 252.0,
               "videoFunction": 1.0, "type": "nonprivate", "fourCcList": ["av01", "vp09", "hvc1", "avc1"]}
    data = b"".join(encode_amf0(v) for v in ("connect", 1.0, connect))
    assert decode_amf0(data) == ["connect", 1.0, connect]
    assert decode_amf0(b"\x05" * MAX_AMF_VALUES) == [None] * MAX_AMF_VALUES
    assert decode_amf0(b"\x05" * 1000, max_values=1000) == [None] * 1000


@given(st.binary(max_size=300))
def test_amf0_decoding_of_junk_raises_amf_error_only(data: bytes) -> None:
    try:
        decode_amf0(data)
    except AmfError:
        pass


def test_amf0_knows_no_connection() -> None:
    # Values only: AMF0 is also FLV script data, and its tests need no connection.
    imported = [alias.name if isinstance(node, ast.Import) else node.module
                for node in ast.walk(parse(Path(amf0.__file__))) if isinstance(node, ast.Import | ast.ImportFrom)
                for alias in node.names]
    assert [name for name in imported if name and name.startswith("streamsnap")] == []
