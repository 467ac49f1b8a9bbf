"""Uploaded images (base64 / data URIs) → checked PIL images, with size limits."""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from minicpm.errors import ImageError

ALLOWED_FORMATS = ("PNG", "JPEG", "GIF", "WEBP")
_DATA_URI = re.compile(r"^data:(?P<mime>[\w/+.-]+)?(;[\w=-]+)*;base64,", re.I)


@dataclass
class DecodedImage:
    image: Image.Image
    format: str
    width: int
    height: int
    nbytes: int

    def describe(self) -> str:
        return f"{self.format} image, {self.width}×{self.height} pixels"


def decode_image(data: str, *, max_bytes: int, max_pixels: int, label: str = "image") -> DecodedImage:
    """Decode base64 (optionally a ``data:`` URI) and fully load it, so a truncated file fails
    here with a 400 and not later inside the model."""
    if not isinstance(data, str) or not data:
        raise ImageError(f"{label}: no base64 data")
    m = _DATA_URI.match(data)
    if m:
        data = data[m.end():]
    elif data.startswith(("http://", "https://")):
        # Fetching would be an outbound connection: the plugin never makes one.
        raise ImageError(f"{label}: only inline base64 images are accepted, not URLs")
    # Refuse before decoding: base64 is 4/3 the size of the bytes.
    if len(data) * 3 // 4 > max_bytes:
        raise ImageError(f"{label} is about {len(data) * 3 // 4 / 2**20:.1f} MiB; "
                         f"the limit is {max_bytes / 2**20:.1f} MiB")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ImageError(f"{label}: not valid base64 ({e})") from e
    try:
        img = Image.open(io.BytesIO(raw))
        fmt = (img.format or "").upper()
        if fmt not in ALLOWED_FORMATS:
            raise ImageError(f"{label}: {fmt or 'unknown'} images are not accepted; "
                             f"send {', '.join(ALLOWED_FORMATS)}")
        w, h = img.size
        if w * h > max_pixels:
            raise ImageError(f"{label} is {w}×{h} pixels; the limit is {max_pixels:,} pixels")
        img.load()
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as e:
        raise ImageError(f"{label}: cannot decode the image ({e})") from e
    return DecodedImage(img, fmt, w, h, len(raw))
