"""Slicing geometry vs MiniCPM-V 2.0's published rules, and the placeholder layout."""

from __future__ import annotations

import math

import pytest
from PIL import Image

from minicpm.vision import slicing
from minicpm.vision.slicing import layout, placeholder, slice_image


# --- an independent transcription of the published processor (MiniCPM-V 2.0), for sizes only --
def _ref_divide(length: float, p: int) -> int:
    return max(round(length / p) * p, p)


def _ref_resize(size, s, p, up=False):
    w, h = size
    if w * h > s * s or up:
        r = w / h
        h = int(s / math.sqrt(r))
        w = int(h * r)
    return _ref_divide(w, p), _ref_divide(h, p)


def _ref(size, max_n=9, s=448, p=14):
    w, h = size
    log_ratio = math.log(w / h)
    multiple = min(math.ceil(w * h / (s * s)), max_n)
    if multiple <= 1:
        return _ref_resize(size, s, p, True), None, None
    nums = [i for i in (multiple - 1, multiple, multiple + 1) if i != 1 and i <= max_n]
    grids = [[m, n // m] for n in nums for m in range(1, n + 1) if n % m == 0]
    best, err = [1, 1], float("inf")
    for g in grids:
        e = abs(log_ratio - math.log(g[0] / g[1]))
        if e < err:
            best, err = g, e
    rw, rh = _ref_divide(w, best[0]), _ref_divide(h, best[1])
    cell = _ref_resize((rw / best[0], rh / best[1]), s, p, True)
    return _ref_resize(size, s, p), tuple(best), (cell[0] * best[0], cell[1] * best[1])


# Hand-checked rows (worked through in docs/vision.md), then a sweep against the transcription.
TABLE = [
    # (w, h) → source size, grid (cols, rows), refined size
    ((448, 448), (448, 448), None, None),
    ((100, 50), (630, 322), None, None),          # small: upscaled, not sliced
    ((1000, 600), (574, 350), (2, 1), (812, 490)),
    ((1344, 1344), (448, 448), (3, 3), (1344, 1344)),
    ((2000, 500), (896, 224), (4, 1), (1792, 448)),
    ((500, 2000), (224, 896), (1, 4), (448, 1792)),
    ((4000, 3000), (518, 392), (3, 3), (1554, 1176)),  # capped at 9 slices
]


@pytest.mark.parametrize("size,src,grid,refine", TABLE)
def test_table(size, src, grid, refine):
    lay = layout(size)
    assert lay.source_size == src
    assert lay.grid == grid
    assert lay.refine_size == refine
    assert _ref(size) == (src, grid, refine)


SWEEP = [(w, h) for w in (1, 14, 99, 300, 447, 449, 640, 800, 1024, 1280, 1920, 3000, 4096)
         for h in (1, 13, 200, 448, 480, 720, 1080, 2160, 3000)]


@pytest.mark.parametrize("size", SWEEP)
def test_sweep_matches_published_rules(size):
    lay = layout(size)
    src, grid, refine = _ref(size)
    assert (lay.source_size, lay.grid, lay.refine_size) == (src, grid, refine)
    assert lay.source_size[0] % 14 == 0 and lay.source_size[1] % 14 == 0
    if grid:
        assert 2 <= lay.num_slices <= 9
        assert lay.slice_size[0] % 14 == 0 and lay.slice_size[1] % 14 == 0
        assert lay.slice_size[0] * grid[0] == refine[0]


def test_grid_follows_aspect_ratio():
    assert layout((3000, 1000)).grid[0] > layout((3000, 1000)).grid[1]
    assert layout((1000, 3000)).grid[1] > layout((1000, 3000)).grid[0]
    assert layout((1500, 1500)).grid in ((3, 3), (2, 2))


def test_never_split_and_max_slices():
    assert layout((4000, 3000), never_split=True).grid is None
    assert layout((4000, 3000), max_slice_nums=4).num_slices <= 4
    with pytest.raises(ValueError):
        layout((0, 10))


def test_slice_image_pixels_row_major():
    img = Image.new("RGB", (1000, 600))
    # left half red, right half blue: with a (2, 1) grid slice 1 is red, slice 2 blue
    img.paste((255, 0, 0), (0, 0, 500, 600))
    img.paste((0, 0, 255), (500, 0, 1000, 600))
    s = slice_image(img)
    assert s.layout.grid == (2, 1)
    assert [im.size for im in s.images] == [(574, 350), (406, 490), (406, 490)]
    assert s.images[1].getpixel((200, 200))[0] > 200 and s.images[2].getpixel((200, 200))[2] > 200
    tall = Image.new("RGB", (500, 2000))
    tall.paste((0, 255, 0), (0, 1500, 500, 2000))  # bottom quarter green → last row
    t = slice_image(tall)
    assert t.layout.grid == (1, 4) and len(t.images) == 5
    assert t.images[4].getpixel((100, 200))[1] > 200 and t.images[1].getpixel((100, 200))[1] < 50


def test_placeholder_layout():
    one = "<image>" + "<unk>" * 64 + "</image>"
    assert placeholder(layout((448, 448))) == one
    p = placeholder(layout((1344, 1344)))
    rows = p[len(one):].removeprefix("<slice>").removesuffix("</slice>").split("\n")
    assert p.startswith(one + "<slice>") and p.endswith("</slice>")
    assert rows == [one * 3] * 3
    p2 = placeholder(layout((2000, 500)), query_num=2, unk="U")
    assert p2 == "<image>UU</image><slice>" + "<image>UU</image>" * 4 + "</slice>"
    assert p.count("<image>") == layout((1344, 1344)).num_images == 10


def test_patch_grids_for_the_resampler():
    lay = layout((1000, 600))
    assert lay.patch_grids() == [(25, 41), (35, 29), (35, 29)]
    assert slicing.layout((448, 448)).patch_grids() == [(32, 32)]
