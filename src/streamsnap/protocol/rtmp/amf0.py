"""AMF0 (Action Message Format 0), sans I/O: the values RTMP commands and script data are written in.

Values only, no connection state: `decode_amf0` reads every value of a message body and
`encode_amf0` writes one. Decoding is bounded by the bytes given, by `MAX_AMF_DEPTH` and by a
count of values (`MAX_AMF_VALUES` unless told): an array's count is checked against it before
any of its values is read, so a message of a million nulls costs one comparison. Anything
malformed or over a bound raises `AmfError`, which the RTMP connection turns into its own error.
"""

from __future__ import annotations

import enum
import struct


class AmfError(ValueError):
    """Bytes that are not AMF0, or AMF0 beyond what is decoded here."""


class Undefined(enum.Enum):
    """AMF0 `undefined` (distinct from `null`, which is None)."""

    UNDEFINED = "undefined"


AmfValue = float | bool | str | None | Undefined | dict[str, "AmfValue"] | list["AmfValue"]
MAX_AMF_DEPTH = 16
MAX_AMF_VALUES = 256
"""Values one decoding reads at most (containers and object members included). ffmpeg's and OBS's
`connect` hold about 15, enhanced RTMP's codec lists a few dozen more."""


class _Reader:
    def __init__(self, data: bytes, max_values: int) -> None:
        self.data = data
        self.pos = 0
        self.max_values = max_values
        self.values_left = max_values

    def count(self, values: int) -> None:
        """Take `values` from what is left to read; raises `AmfError` past the bound."""
        if values > self.values_left:
            raise AmfError(f"AMF0 values over the limit of {self.max_values}")
        self.values_left -= values

    def take(self, count: int) -> bytes:
        if count < 0 or self.pos + count > len(self.data):
            raise AmfError("AMF0 value runs past the message")
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def _amf_string(reader: _Reader, size: int) -> str:
    return reader.take(size).decode("utf-8", "replace")


def _amf_pairs(reader: _Reader, depth: int) -> dict[str, AmfValue]:
    result: dict[str, AmfValue] = {}
    while True:
        key = _amf_string(reader, reader.u16())
        if not key and reader.left >= 1 and reader.data[reader.pos] == 0x09:
            reader.pos += 1
            return result
        result[key] = _amf_value(reader, depth + 1)


def _amf_value(reader: _Reader, depth: int = 0) -> AmfValue:
    if depth > MAX_AMF_DEPTH:
        raise AmfError("AMF0 nested too deep")
    reader.count(1)
    marker = reader.u8()
    if marker == 0x00:
        value: float = struct.unpack(">d", reader.take(8))[0]
        return value
    if marker == 0x01:
        return reader.u8() != 0
    if marker == 0x02:
        return _amf_string(reader, reader.u16())
    if marker == 0x03:
        return _amf_pairs(reader, depth)
    if marker in (0x05, 0x0D):  # null, unsupported
        return None
    if marker == 0x06:
        return Undefined.UNDEFINED
    if marker == 0x07:  # reference: an index into objects seen; not kept, so just skipped
        reader.u16()
        return None
    if marker == 0x08:  # ECMA array: a count (advisory), then pairs like an object
        reader.u32()
        return _amf_pairs(reader, depth)
    if marker == 0x0A:
        count = reader.u32()
        if count > reader.left:  # each value takes at least one byte
            raise AmfError("AMF0 array longer than the message")
        if count > reader.values_left:
            raise AmfError(f"AMF0 array of {count} values over the limit of {reader.max_values}")
        return [_amf_value(reader, depth + 1) for _ in range(count)]
    if marker == 0x0B:  # date: milliseconds and a time zone
        date: float = struct.unpack(">d", reader.take(8))[0]
        reader.take(2)
        return date
    if marker in (0x0C, 0x0F):  # long string, XML document
        return _amf_string(reader, reader.u32())
    raise AmfError(f"AMF0 marker {marker:#x} not supported")


def decode_amf0(data: bytes, *, max_values: int = MAX_AMF_VALUES) -> list[AmfValue]:
    """Every AMF0 value in `data`; raises `AmfError` on anything malformed, nested deeper than
    `MAX_AMF_DEPTH` or holding more than `max_values` values."""
    reader = _Reader(data, max_values)
    values: list[AmfValue] = []
    while reader.left:
        values.append(_amf_value(reader))
    return values


def encode_amf0(value: AmfValue) -> bytes:
    """One AMF0 value."""
    if value is None:
        return b"\x05"
    if isinstance(value, Undefined):
        return b"\x06"
    if isinstance(value, bool):
        return b"\x01" + (b"\x01" if value else b"\x00")
    if isinstance(value, int | float):
        return b"\x00" + struct.pack(">d", float(value))
    if isinstance(value, str):
        raw = value.encode()
        if len(raw) > 0xFFFF:
            return b"\x0c" + len(raw).to_bytes(4, "big") + raw
        return b"\x02" + len(raw).to_bytes(2, "big") + raw
    if isinstance(value, dict):
        body = b"".join(len(k.encode()).to_bytes(2, "big") + k.encode() + encode_amf0(v) for k, v in value.items())
        return b"\x03" + body + b"\x00\x00\x09"
    return b"\x0a" + len(value).to_bytes(4, "big") + b"".join(encode_amf0(v) for v in value)
