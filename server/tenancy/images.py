"""What an uploaded logo really is, from its bytes: PNG, JPEG or WebP, and its size in pixels.

The type comes from the magic bytes and the dimensions from the format's own header, never from a
file name or a declared type: a text, SVG or HTML file named logo.png, a GIF, or a header that does
not parse is refused. Nothing is decoded beyond the header (no pixel data), so this is cheap and
cannot be made to allocate a huge bitmap.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from server.errors import ValidationFailed

MAX_BYTES = 256 * 1024
MAX_SIDE = 4096  # pixels: a tiny file claiming 60000x60000 would make every SDK allocate a huge bitmap

_PNG = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic...): they carry the size.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


@dataclass(frozen=True)
class ImageInfo:
    content_type: str
    width: int
    height: int


def _refuse(message: str, code: str = "invalid_logo") -> ValidationFailed:
    return ValidationFailed(message, {"path": "$.logo"}, code=code)


def _png(data: bytes) -> tuple[int, int]:
    # signature, then the IHDR chunk: length 13, type, width, height (big-endian), and the file ends in IEND.
    if len(data) < 33 or data[12:16] != b"IHDR" or struct.unpack(">I", data[8:12])[0] != 13:
        raise _refuse("not a valid PNG: no IHDR header")
    if not data.rstrip(b"\x00").endswith(b"IEND\xaeB`\x82"):
        raise _refuse("not a valid PNG: the file is truncated (no IEND)")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _jpeg(data: bytes) -> tuple[int, int]:
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise _refuse("not a valid JPEG: bad segment marker")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        if marker == 0xD9 or marker == 0xDA:  # end of image / start of scan before any frame header
            break
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if length < 2:
            raise _refuse("not a valid JPEG: bad segment length")
        if marker in _SOF:
            if i + 9 > n:
                break
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        i += 2 + length
    raise _refuse("not a valid JPEG: no frame header")


def _webp(data: bytes) -> tuple[int, int]:
    if len(data) < 30 or struct.unpack("<I", data[4:8])[0] + 8 > len(data):
        raise _refuse("not a valid WebP: the file is truncated")
    chunk = data[12:16]
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            raise _refuse("not a valid WebP: bad lossless signature")
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise _refuse("not a valid WebP: bad frame start code")
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    raise _refuse("not a valid WebP: unknown chunk")


def inspect(data: bytes) -> ImageInfo:
    """The image's real type and size, or ValidationFailed (422) naming what is wrong."""
    if len(data) > MAX_BYTES:
        raise _refuse(f"the logo is {len(data)} bytes; at most {MAX_BYTES} (256 KB)", "logo_too_large")
    if data.startswith(_PNG):
        content_type, (width, height) = "image/png", _png(data)
    elif data.startswith(b"\xff\xd8\xff"):
        content_type, (width, height) = "image/jpeg", _jpeg(data)
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        content_type, (width, height) = "image/webp", _webp(data)
    else:
        raise _refuse("the logo must be a PNG, JPEG or WebP image (checked by content, not by name)",
                      "unsupported_image")
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise _refuse(f"the logo is {width}x{height} pixels; each side must be 1 to {MAX_SIDE}",
                      "logo_dimensions")
    return ImageInfo(content_type, width, height)
