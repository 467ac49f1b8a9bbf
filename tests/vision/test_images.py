"""Image preparation: every input kind, EXIF orientation, scaling, broken and oversized input."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from minicpm import images
from minicpm.errors import ImageError


def _png(w: int = 40, h: int = 20, color: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg_with_orientation(w: int, h: int, orientation: int) -> bytes:
    img = Image.new("RGB", (w, h), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, w // 4, h // 4))  # red marker in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    return buf.getvalue()


def test_png_bytes_base64_data_uri_path_and_pil(tmp_path):
    data = _png()
    p = tmp_path / "a.png"
    p.write_bytes(data)
    b64 = base64.b64encode(data).decode()
    for x in (data, bytearray(data), b64, "data:image/png;base64," + b64, str(p), p,
              Image.open(io.BytesIO(data)), {"image/png": b64, "text/plain": "<Figure>"}):
        img = images.to_pil(x)
        assert img.size == (40, 20) and img.mode == "RGB"
        assert img.getpixel((0, 0)) == (255, 0, 0)


def test_ipython_image():
    from IPython.display import Image as IPyImage

    img = images.to_pil(IPyImage(data=_png(8, 6)))
    assert img.size == (8, 6)


@pytest.mark.parametrize("arr,expect", [
    (np.zeros((5, 7, 3), np.uint8), (7, 5)),
    (np.ones((5, 7), np.float32), (7, 5)),          # grayscale floats in [0, 1]
    (np.random.rand(3, 5, 7), (7, 5)),               # CHW torch layout
    (np.full((4, 4, 4), 200, np.uint8), (4, 4)),     # RGBA
    (np.arange(20, dtype=np.int64).reshape(4, 5) * 1000, (5, 4)),  # out-of-range ints
    (np.array([[True, False]]), (2, 1)),
])
def test_numpy_arrays(arr, expect):
    img = images.to_pil(arr)
    assert img.size == expect and img.mode == "RGB"


def test_float_array_out_of_range_is_stretched():
    a = np.linspace(-5, 5, 16, dtype=np.float64).reshape(4, 4)
    img = np.asarray(images.to_pil(a))
    assert img.min() == 0 and img.max() == 255


def test_transparent_png_flattened_on_white():
    buf = io.BytesIO()
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(buf, format="PNG")
    assert images.to_pil(buf.getvalue()).getpixel((1, 1)) == (255, 255, 255)


@pytest.mark.parametrize("orientation,size", [(1, (60, 30)), (3, (60, 30)), (6, (30, 60)),
                                              (8, (30, 60))])
def test_exif_orientation(orientation, size):
    img = images.to_pil(_jpeg_with_orientation(60, 30, orientation))
    assert img.size == size
    # The stored top-left red marker moves where the orientation tag says.
    corners = {"tl": (2, 2), "tr": (img.width - 3, 2), "bl": (2, img.height - 3),
               "br": (img.width - 3, img.height - 3)}
    red = [k for k, xy in corners.items() if img.getpixel(xy)[0] > 200 and img.getpixel(xy)[2] < 80]
    assert red == [{1: "tl", 3: "br", 6: "tr", 8: "bl"}[orientation]]


def test_huge_image_scaled_down():
    img = images.to_pil(_png(5000, 1000))
    assert img.size == (images.MAX_SIDE, 410)
    assert images.to_pil(_png(5000, 1000), max_side=None).size == (5000, 1000)
    assert images.image_info(_png(5000, 1000))["width"] == 5000


def test_matplotlib_figure_and_axes():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2), dpi=50)
    ax.plot([1, 2, 3])
    for x in (fig, ax):
        img = images.to_pil(x)
        assert 50 < img.width <= 150 and img.mode == "RGB"
    assert images.to_data_uri(fig).startswith("data:image/png;base64,")
    assert images.to_data_uri(fig, "jpeg").startswith("data:image/jpeg;base64,")
    plt.close(fig)


def test_round_trip_helpers():
    data = _png(10, 10, (0, 255, 0))
    png = images.to_png_bytes(data)
    assert png.startswith(b"\x89PNG")
    assert images.to_pil(images.to_base64(data)).getpixel((5, 5)) == (0, 255, 0)
    assert images.is_image(data) and not images.is_image(b"nope")


@pytest.mark.parametrize("bad,reason", [
    (b"", "empty"),
    (b"hello world, not an image", "not a recognised image format"),
    (_png()[:60], "cannot decode PNG"),                      # truncated
    (b"\xff\xd8\xff\xe0" + b"\x00" * 40, "cannot decode JPEG"),
    ("data:image/png,rawtext", "not base64"),
    ("%%%not-base64%%%" * 30, "not valid base64"),
    (np.zeros((2, 3, 7)), "not an image"),
    (np.zeros((0, 5)), "empty image"),
    (object(), "cannot use a object"),
    ({"text/plain": "x"}, "no image in output bundle"),
])
def test_broken_input_is_refused_clearly(bad, reason):
    with pytest.raises(ImageError, match=reason):
        images.to_pil(bad)


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="cannot read"):
        images.to_pil(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="no such image file"):
        images.to_pil(str(tmp_path / "nope.png"))
    with pytest.raises(ImageError, match="no such image file"):
        images.to_pil("plot.PNG")


def test_pixel_and_byte_guards(monkeypatch):
    # A 20000×20000 PNG compresses to ~1 MB; the pixel guard must refuse it before decoding.
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    with pytest.raises(ImageError, match="megapixels"):
        images.to_pil(_png(100, 100))
    monkeypatch.setattr(images, "MAX_PIXELS", 64_000_000)
    monkeypatch.setattr(images, "MAX_BYTES", 100)
    with pytest.raises(ImageError, match="limit"):
        images.to_pil(_png(100, 100) + b"\x00" * 200)


def test_decompression_bomb_header_refused_without_decoding():
    # PNG header claiming 100000×100000 pixels, no data: refused on the header alone.
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    def chunk_bytes(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    data = (b"\x89PNG\r\n\x1a\n" + chunk_bytes(b"IHDR", ihdr)
            + chunk_bytes(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk_bytes(b"IEND", b""))
    with pytest.raises(ImageError, match="megapixels|limit|exceeds"):
        images.to_pil(data)
