"""Encoder for ``application/vnd.amazon.eventstream`` frames (botocore ships only the decoder).

A frame is: total length (u32), headers length (u32), CRC32 of those 8 bytes,
headers, payload, CRC32 of everything before it. Integers are big-endian.
"""

from __future__ import annotations

import json
import struct
from binascii import crc32

_STRING_HEADER_TYPE = 7
_PRELUDE = struct.Struct(">II")
_CRC = struct.Struct(">I")
_PRELUDE_AND_CRCS = _PRELUDE.size + 2 * _CRC.size


def encode_headers(headers: dict[str, str]) -> bytes:
    out = bytearray()
    for name, value in headers.items():
        name_bytes, value_bytes = name.encode("utf-8"), value.encode("utf-8")
        out += struct.pack(">B", len(name_bytes)) + name_bytes
        out += struct.pack(">BH", _STRING_HEADER_TYPE, len(value_bytes)) + value_bytes
    return bytes(out)


def encode_frame(headers: dict[str, str], payload: bytes) -> bytes:
    encoded_headers = encode_headers(headers)
    prelude = _PRELUDE.pack(_PRELUDE_AND_CRCS + len(encoded_headers) + len(payload), len(encoded_headers))
    message = prelude + _CRC.pack(crc32(prelude)) + encoded_headers + payload
    return message + _CRC.pack(crc32(message))


def payload_part(data: bytes) -> bytes:
    """A ``PayloadPart`` event carrying raw response bytes."""
    return encode_frame(
        {":event-type": "PayloadPart", ":content-type": "application/octet-stream", ":message-type": "event"},
        data,
    )


def exception_event(exception_type: str, message: str, error_code: str | None = None) -> bytes:
    """A modelled stream exception (``ModelStreamError``, ``InternalStreamFailure``)."""
    body: dict[str, str] = {"Message": message}
    if error_code:
        body["ErrorCode"] = error_code
    return encode_frame(
        {":exception-type": exception_type, ":content-type": "application/json", ":message-type": "exception"},
        json.dumps(body).encode("utf-8"),
    )
