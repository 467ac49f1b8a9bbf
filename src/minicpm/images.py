"""Image preparation shared by every engine, the server and the magics.

Anything a notebook can hold as a picture — PNG/JPEG/GIF/WebP bytes, base64 text or a data URI,
a file path, a PIL image, a numpy array, a matplotlib figure, an ``IPython.display.Image`` — is
turned into one RGB PIL image with EXIF orientation applied and huge images scaled down. Bad
input raises :class:`~minicpm.errors.ImageError` saying what was wrong.

    to_pil(x) -> PIL.Image.Image        # RGB, oriented, at most max_side px on the long side
    to_png_bytes(x) -> bytes
    to_data_uri(x, fmt="png") -> str    # "data:image/png;base64,..." (llama.cpp's handlers)
    image_info(x) -> dict               # width, height, mode, source format (no scaling)
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ImageError

# Limits. Decoding is refused above MAX_BYTES (compressed) or MAX_PIXELS (decoded), so that a
# hostile or accidental 30k×30k PNG cannot take the server's memory; anything that passes is
# scaled so that its long side is at most MAX_SIDE (MiniCPM-V slices at 448 px, 9 slices at
# most, so more than ~2k px never reaches the model anyway).
MAX_BYTES = 50 * 2**20
MAX_PIXELS = 64_000_000
MAX_SIDE = 2048

_DATA_URI = re.compile(r"^data:(?P<mime>[\w/+.-]*)(?P<params>(;[^,;]*)*?)(?P<b64>;base64)?,",
                       re.IGNORECASE)
_MAGIC = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"BM": "BMP",
}


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - pillow is a dependency
        raise ImageError("image support needs Pillow: pip install pillow") from e
    return Image


def _sniff(data: bytes) -> str | None:
    for magic, fmt in _MAGIC.items():
        if data.startswith(magic):
            return fmt
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _decode_base64(text: str) -> bytes:
    s = text.strip()
    m = _DATA_URI.match(s)
    if m:
        if not m.group("b64"):
            raise ImageError("data URI is not base64-encoded; only ';base64,' URIs are accepted")
        s = s[m.end():]
    s = re.sub(r"\s+", "", s)
    if len(s) * 3 // 4 > MAX_BYTES:
        raise ImageError(f"image is larger than {MAX_BYTES // 2**20} MiB (base64 text of "
                         f"{len(s)} characters)")
    try:
        return base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ImageError(f"not valid base64 image data ({e})") from e


def _open_bytes(data: bytes, what: str = "image bytes") -> Any:
    Image = _pil()
    if not data:
        raise ImageError(f"{what}: empty")
    if len(data) > MAX_BYTES:
        raise ImageError(f"{what}: {len(data) / 2**20:.1f} MiB is over the "
                         f"{MAX_BYTES // 2**20} MiB limit")
    fmt = _sniff(data)
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb check warns at half its limit; ours is explicit below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            _check_pixels(img.size, what)
            img.load()  # decode now: truncated files fail here, not later in a backend
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageError(f"{what}: {e}") from e
    except (OSError, SyntaxError, ValueError) as e:
        kind = f"{fmt} " if fmt else ""
        reason = str(e) or type(e).__name__
        if fmt is None:
            reason = f"not a recognised image format (starts with {data[:8]!r})"
        raise ImageError(f"{what}: cannot decode {kind}image: {reason}") from e
    return img


def _check_pixels(size: tuple[int, int], what: str) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise ImageError(f"{what}: empty image ({w}×{h})")
    if w * h > MAX_PIXELS:
        raise ImageError(f"{what}: {w}×{h} = {w * h / 1e6:.0f} megapixels is over the "
                         f"{MAX_PIXELS / 1e6:.0f} MP limit")


def _from_array(arr: Any) -> Any:
    import numpy as np

    Image = _pil()
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)  # CHW (torch layout) → HWC
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise ImageError(f"array of shape {a.shape} is not an image (want H×W, H×W×3 or H×W×4)")
    _check_pixels((a.shape[1], a.shape[0]), "array")
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype.kind == "f":
        if not np.isfinite(a).all():
            a = np.nan_to_num(a, nan=0.0, posinf=1.0, neginf=0.0)
        # Floats: [0, 1] as matplotlib does; other ranges are stretched so that they show.
        lo, hi = float(a.min(initial=0.0)), float(a.max(initial=0.0))
        if lo < 0.0 or hi > 1.0:
            a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
        a = (a * 255.0 + 0.5).astype(np.uint8)
    elif a.dtype != np.uint8:
        if a.dtype.kind in "iu" and a.size and a.max() > 255:
            a = (a.astype(np.float64) * (255.0 / a.max())).astype(np.uint8)
        else:
            a = np.clip(a, 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(a))


def _from_figure(fig: Any, dpi: float | None = None) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi or fig.dpi, bbox_inches="tight",
                facecolor="white" if fig.get_facecolor()[3] == 0 else fig.get_facecolor())
    return buf.getvalue()


def _is_figure(x: Any) -> bool:
    return hasattr(x, "savefig") and hasattr(x, "axes")


def _raw(x: Any) -> Any:
    """Reduce any accepted input to bytes or a PIL image (no conversion, no scaling)."""
    Image = _pil()
    if isinstance(x, Image.Image):
        return x
    if isinstance(x, (bytes, bytearray, memoryview)):
        return bytes(x)
    if isinstance(x, Path):
        return _read_file(x)
    if isinstance(x, str):
        s = x.strip()
        if s.startswith("data:") or (len(s) > 256 and "\n" not in s[:256] and "/" not in s[:8]):
            return _decode_base64(s)
        p = Path(s).expanduser()
        if len(s) < 4096 and p.is_file():
            return _read_file(p)
        # A file name (base64 never has a dot): a mistyped path, not image data.
        if len(s) < 4096 and re.search(r"\.(png|jpe?g|gif|webp|bmp|tiff?)$", s, re.I):
            raise ImageError(f"{s}: no such image file")
        return _decode_base64(s)
    if _is_figure(x):
        return _from_figure(x)
    if hasattr(x, "figure") and _is_figure(x.figure):  # an Axes: take its figure
        return _from_figure(x.figure)
    if isinstance(x, Mapping):
        # A Jupyter output bundle: {"image/png": "<base64>", ...}
        for mime in ("image/png", "image/jpeg", "image/webp", "image/gif"):
            if mime in x:
                return _raw(x[mime])
        raise ImageError(f"no image in output bundle with keys {sorted(x)}")
    data = getattr(x, "data", None)  # IPython.display.Image
    if type(x).__name__ == "Image" and isinstance(data, (bytes, str)):
        return _raw(data)
    if hasattr(x, "__array__") or hasattr(x, "__array_interface__"):
        return _from_array(x)
    raise ImageError(f"cannot use a {type(x).__name__} as an image; pass PNG/JPEG bytes, base64, "
                     "a path, a PIL image, a numpy array or a matplotlib figure")


def _read_file(p: Path) -> bytes:
    try:
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise ImageError(f"{p}: {size / 2**20:.1f} MiB is over the {MAX_BYTES // 2**20} MiB limit")
        return p.read_bytes()
    except OSError as e:
        raise ImageError(f"{p}: cannot read ({e.strerror or e})") from e


def to_pil(x: Any, *, max_side: int | None = MAX_SIDE, mode: str = "RGB") -> Any:
    """Decode ``x`` into a PIL image: EXIF orientation applied, transparency flattened on
    white (plots saved with a transparent background would otherwise turn black), scaled down
    so that the long side is at most ``max_side`` (None: keep the size)."""
    Image = _pil()
    from PIL import ImageOps

    raw = _raw(x)
    img = _open_bytes(raw) if isinstance(raw, bytes) else raw
    _check_pixels(img.size, "image")
    try:
        if getattr(img, "is_animated", False):
            img.seek(0)  # first frame of a GIF/WebP animation
        img = ImageOps.exif_transpose(img) or img
    except Exception:  # noqa: BLE001 - a broken EXIF block must not lose the picture
        pass
    if mode == "RGB" and (img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    if img.mode != mode:
        img = img.convert(mode)
    if max_side and max(img.size) > max_side:
        scale = max_side / max(img.size)
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.LANCZOS)
    return img


def to_png_bytes(x: Any, *, max_side: int | None = MAX_SIDE) -> bytes:
    """PNG bytes of ``x`` after :func:`to_pil` (so always oriented, RGB and bounded)."""
    buf = io.BytesIO()
    to_pil(x, max_side=max_side).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def to_jpeg_bytes(x: Any, *, max_side: int | None = MAX_SIDE, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    to_pil(x, max_side=max_side).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def to_data_uri(x: Any, fmt: str = "png", *, max_side: int | None = MAX_SIDE) -> str:
    """``data:image/png;base64,…`` — the form llama-cpp-python's chat handlers and
    OpenAI-compatible servers take images in."""
    fmt = fmt.lower()
    if fmt == "png":
        data, mime = to_png_bytes(x, max_side=max_side), "image/png"
    elif fmt in ("jpeg", "jpg"):
        data, mime = to_jpeg_bytes(x, max_side=max_side), "image/jpeg"
    else:
        raise ValueError("fmt must be 'png' or 'jpeg'")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def to_base64(x: Any, *, max_side: int | None = MAX_SIDE) -> str:
    """Bare base64 PNG, as a Jupyter ``image/png`` output carries it."""
    return base64.b64encode(to_png_bytes(x, max_side=max_side)).decode("ascii")


def image_info(x: Any) -> dict[str, Any]:
    """Size and format without scaling: {'width', 'height', 'mode', 'format'}."""
    raw = _raw(x)
    img = _open_bytes(raw) if isinstance(raw, bytes) else raw
    return {"width": img.width, "height": img.height, "mode": img.mode,
            "format": img.format or (_sniff(raw) if isinstance(raw, bytes) else None)}


def is_image(x: Any) -> bool:
    """True when :func:`to_pil` would accept ``x`` (decodes it: not for hot paths)."""
    try:
        to_pil(x, max_side=64)
    except ImageError:
        return False
    return True
