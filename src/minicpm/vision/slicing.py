"""LLaVA-UHD image slicing as MiniCPM-V 2.0 does it (its image processing, rule for rule).

An image of area A is compared with 448² (``scale_resolution``): at most one 448² worth of
pixels → no slicing, the whole image resized (up or down) to ~448² with sides multiples of 14.
Otherwise the image is cut into ``multiple = min(ceil(A / 448²), 9)`` slices (±1), on the grid
(cols × rows) whose aspect ratio is closest in log space to the image's; the source image
(downscaled to ~448²) goes first, then the slices row by row. Every picture the vision tower
sees has sides that are multiples of the 14 px patch.

Each picture becomes 64 query tokens between ``<image>`` and ``</image>``; the slices' are
wrapped in ``<slice>`` … ``</slice>`` with a newline between grid rows:

    <image>{unk×64}</image><slice><image>…</image><image>…</image>\n<image>…</image>…</slice>
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

IM_START, IM_END = "<image>", "</image>"
SLICE_START, SLICE_END = "<slice>", "</slice>"
UNK = "<unk>"


def ensure_divide(length: float, patch_size: int) -> int:
    """Round to the nearest multiple of patch_size, never below one patch."""
    return max(round(length / patch_size) * patch_size, patch_size)


def find_best_resize(size: tuple[float, float], scale_resolution: int, patch_size: int,
                     allow_upscale: bool = False) -> tuple[int, int]:
    """(w, h) with about scale_resolution² pixels and the same aspect ratio (only when the
    image is larger, or allow_upscale), sides rounded to multiples of patch_size."""
    width, height = size
    if width * height > scale_resolution * scale_resolution or allow_upscale:
        r = width / height
        height = int(scale_resolution / math.sqrt(r))
        width = int(height * r)
    return ensure_divide(width, patch_size), ensure_divide(height, patch_size)


def get_refine_size(size: tuple[int, int], grid: tuple[int, int], scale_resolution: int,
                    patch_size: int, allow_upscale: bool = False) -> tuple[int, int]:
    """The size the whole image is resized to before it is cut on ``grid`` (cols, rows): each
    cell gets the best ~scale_resolution² size for its own aspect ratio."""
    width, height = size
    grid_x, grid_y = grid
    refine_width = ensure_divide(width, grid_x)
    refine_height = ensure_divide(height, grid_y)
    cell = find_best_resize((refine_width / grid_x, refine_height / grid_y), scale_resolution,
                            patch_size, allow_upscale=allow_upscale)
    return cell[0] * grid_x, cell[1] * grid_y


def candidate_grids(multiple: int, max_slice_nums: int) -> list[tuple[int, int]]:
    """Every (cols, rows) factorisation of multiple-1, multiple and multiple+1 (skipping 1 and
    anything over max_slice_nums), in the order the published code tries them."""
    grids: list[tuple[int, int]] = []
    for n in (multiple - 1, multiple, multiple + 1):
        if n == 1 or n > max_slice_nums:
            continue
        grids += [(m, n // m) for m in range(1, n + 1) if n % m == 0]
    return grids


def best_grid(size: tuple[int, int], max_slice_nums: int = 9,
              scale_resolution: int = 448) -> tuple[int, int] | None:
    """(cols, rows) for an image of size (w, h), or None when it is not sliced."""
    w, h = size
    multiple = min(math.ceil(w * h / (scale_resolution * scale_resolution)), max_slice_nums)
    if multiple <= 1:
        return None
    log_ratio = math.log(w / h)
    best, min_error = (1, 1), float("inf")
    for g in candidate_grids(multiple, max_slice_nums):
        error = abs(log_ratio - math.log(g[0] / g[1]))
        if error < min_error:  # strict: the first of equal candidates wins, as published
            best, min_error = g, error
    return best


@dataclass
class SliceLayout:
    """Geometry of one image: what the vision tower will see, before any pixel is touched."""

    size: tuple[int, int]  # the original (w, h)
    source_size: tuple[int, int]  # the overview image's (w, h)
    grid: tuple[int, int] | None = None  # (cols, rows); None: not sliced
    refine_size: tuple[int, int] | None = None  # the whole image's size before cutting
    slice_size: tuple[int, int] | None = None  # each slice's (w, h)

    @property
    def num_slices(self) -> int:
        return 0 if self.grid is None else self.grid[0] * self.grid[1]

    @property
    def num_images(self) -> int:
        """Pictures through the tower: the source, plus every slice."""
        return 1 + self.num_slices

    def patch_grids(self, patch_size: int = 14) -> list[tuple[int, int]]:
        """(rows, cols) of 14-px patches for each picture, source first (the resampler's
        tgt_size)."""
        out = [(self.source_size[1] // patch_size, self.source_size[0] // patch_size)]
        if self.slice_size is not None:
            out += [(self.slice_size[1] // patch_size, self.slice_size[0] // patch_size)] * \
                self.num_slices
        return out


def layout(size: tuple[int, int], max_slice_nums: int = 9, scale_resolution: int = 448,
           patch_size: int = 14, never_split: bool = False) -> SliceLayout:
    """The slicing decision for an image of size (w, h), exactly as MiniCPM-V 2.0 makes it."""
    w, h = size
    if w <= 0 or h <= 0:
        raise ValueError(f"image size must be positive, got {size}")
    grid = None if never_split else best_grid(size, max_slice_nums, scale_resolution)
    if grid is None:
        # Small images are upsampled to ~448²: the tower sees at least one full tile.
        src = find_best_resize(size, scale_resolution, patch_size, allow_upscale=True)
        return SliceLayout(size, src)
    src = find_best_resize(size, scale_resolution, patch_size)
    refine = get_refine_size(size, grid, scale_resolution, patch_size, allow_upscale=True)
    return SliceLayout(size, src, grid, refine, (refine[0] // grid[0], refine[1] // grid[1]))


@dataclass
class SlicedImage:
    layout: SliceLayout
    images: list[Any] = field(default_factory=list)  # PIL: source first, then row by row


def slice_image(image: Any, max_slice_nums: int = 9, scale_resolution: int = 448,
                patch_size: int = 14, never_split: bool = False) -> SlicedImage:
    """Cut a PIL image: bicubic resizes, as the published processor does."""
    from PIL import Image

    lay = layout(image.size, max_slice_nums, scale_resolution, patch_size, never_split)
    bicubic = Image.Resampling.BICUBIC
    out = [image.resize(lay.source_size, bicubic)]
    if lay.grid is not None and lay.refine_size is not None and lay.slice_size is not None:
        refined = image.resize(lay.refine_size, bicubic)
        sw, sh = lay.slice_size
        for r in range(lay.grid[1]):
            for c in range(lay.grid[0]):
                out.append(refined.crop((c * sw, r * sh, (c + 1) * sw, (r + 1) * sh)))
    return SlicedImage(lay, out)


def image_placeholder(query_num: int = 64, unk: str = UNK) -> str:
    return IM_START + unk * query_num + IM_END


def placeholder(lay: SliceLayout, query_num: int = 64, unk: str = UNK) -> str:
    """The text that stands for one image in the prompt (the source, then the slice grid)."""
    one = image_placeholder(query_num, unk)
    if lay.grid is None:
        return one
    cols, rows = lay.grid
    return one + SLICE_START + "\n".join(one * cols for _ in range(rows)) + SLICE_END
