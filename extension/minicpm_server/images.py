"""Uploaded images (base64 / data URIs) → checked PIL images, with limits checked before work.

Order of checks, cheapest first: the number of images and their base64 length (no decoding,
on the event loop); then, in a worker thread, the width and height from the file's header
(a few KB of base64 decoded), and only then the full decode. A 40-megapixel single-colour PNG
is ~150 KB of base64 but ~120 MB decoded: its header refuses it before that."""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import re
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError

from minicpm.errors import ImageError
from minicpm.images import MAX_SIDE

from .errors import RequestError

ALLOWED_FORMATS = ("PNG", "JPEG", "GIF", "WEBP")
_DATA_URI = re.compile(r"^data:(?P<mime>[\w/+.-]+)?(;[\w=-]+)*;base64,", re.I)
_HEADER_B64_CHARS = 64 * 1024  # enough for the size of a PNG, GIF or WebP, most JPEGs
# Decoding is CPU work: its own small pool, so that it neither blocks the event loop nor
# queues behind file I/O in the default executor.
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="minicpm-image")


@dataclass
class DecodedImage:
    image: Image.Image  # at most MAX_SIDE px on the long side (the models see no more)
    format: str
    width: int  # as uploaded
    height: int
    nbytes: int

    def describe(self) -> str:
        return f"{self.format} image, {self.width}×{self.height} pixels"


@dataclass
class ImageUpload:
    """One image as received: where it was (for messages) and its base64 text."""

    label: str
    data: str


def _strip(data: Any, label: str) -> str:
    if not isinstance(data, str) or not data:
        raise ImageError(f"{label}: no base64 data")
    m = _DATA_URI.match(data)
    if m:
        return data[m.end():]
    if data.startswith(("http://", "https://")):
        # Fetching would be an outbound connection: the plugin never makes one.
        raise ImageError(f"{label}: only inline base64 images are accepted, not URLs")
    return data


def check_uploads(uploads: Sequence[ImageUpload], *, max_images: int, max_bytes: int) -> None:
    """Count and size from the base64 text alone: O(1) per image, safe on the event loop."""
    if len(uploads) > max_images:
        raise RequestError(400, f"{len(uploads)} images in one request; the limit is "
                                f"{max_images} (c.MiniCPM.max_images)")
    for up in uploads:
        n = len(_strip(up.data, up.label)) * 3 // 4  # base64 is 4/3 the size of the bytes
        if n > max_bytes:
            raise ImageError(f"{up.label} is about {n / 2**20:.1f} MiB; the limit is "
                             f"{max_bytes / 2**20:.1f} MiB (c.MiniCPM.max_image_bytes)")


def _b64(text: str, label: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ImageError(f"{label}: not valid base64 ({e})") from e


def _check_header(img: Image.Image, label: str, max_pixels: int) -> tuple[str, int, int]:
    fmt = (img.format or "").upper()
    if fmt not in ALLOWED_FORMATS:
        raise ImageError(f"{label}: {fmt or 'unknown'} images are not accepted; "
                         f"send {', '.join(ALLOWED_FORMATS)}")
    w, h = img.size
    if w * h > max_pixels:
        raise ImageError(f"{label} is {w}×{h} pixels; the limit is {max_pixels:,} pixels "
                         "(c.MiniCPM.max_image_pixels)")
    return fmt, w, h


def decode_image(data: str, *, max_bytes: int, max_pixels: int, label: str = "image") -> DecodedImage:
    """Decode one image (blocking: call it in a worker). Refuses by byte size, then by the
    header's width×height, before decoding any pixels; a truncated file fails here with a
    400 and not later inside the model."""
    text = _strip(data, label)
    if len(text) * 3 // 4 > max_bytes:
        raise ImageError(f"{label} is about {len(text) * 3 // 4 / 2**20:.1f} MiB; "
                         f"the limit is {max_bytes / 2**20:.1f} MiB")
    with warnings.catch_warnings():
        # Pillow's own bomb warning fires at half its limit; ours is explicit and lower.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        if len(text) > _HEADER_B64_CHARS:  # peek at the header before decoding everything
            try:
                _check_header(Image.open(io.BytesIO(_b64(text[:_HEADER_B64_CHARS], label))),
                              label, max_pixels)
            except ImageError as e:
                if "pixels" in str(e):
                    raise
            except Exception:  # noqa: BLE001 - header beyond the prefix: full check below
                pass
        raw = _b64(text, label)
        try:
            img = Image.open(io.BytesIO(raw))  # reads the header only
            fmt, w, h = _check_header(img, label, max_pixels)
            img.load()
            if max(w, h) > MAX_SIDE:  # free the large buffer now; the models see no more
                img.thumbnail((MAX_SIDE, MAX_SIDE))
        except ImageError:
            raise
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
                Image.DecompressionBombError) as e:
            raise ImageError(f"{label}: cannot decode the image ({e})") from e
    return DecodedImage(img, fmt, w, h, len(raw))


async def decode_uploads(uploads: Sequence[ImageUpload], cfg: Any) -> list[DecodedImage]:
    """Check counts and sizes now, decode in the image pool (never on the event loop)."""
    check_uploads(uploads, max_images=cfg.max_images, max_bytes=cfg.max_image_bytes)
    if not uploads:
        return []
    loop = asyncio.get_running_loop()

    def work() -> list[DecodedImage]:
        return [decode_image(u.data, max_bytes=cfg.max_image_bytes,
                             max_pixels=cfg.max_image_pixels, label=u.label) for u in uploads]

    return await loop.run_in_executor(_POOL, work)
