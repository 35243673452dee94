"""AMF0 on its own: values both ways, every marker an encoder may send, then hostile bytes."""

from __future__ import annotations

import ast
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamsnap.protocol.rtmp import amf0
from streamsnap.protocol.rtmp.amf0 import AmfError, Undefined, decode_amf0, encode_amf0
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
