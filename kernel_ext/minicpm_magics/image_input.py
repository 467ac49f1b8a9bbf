"""``%minicpm image [expr]``: find the picture the user means and turn it into a context part."""

from __future__ import annotations

import base64
from typing import Any

from minicpm.errors import ImageError

from .context import ImageLog
from .options import MagicUsageError

EXPECTED = ("a matplotlib Figure, a PIL image, a numpy array, PNG/JPEG bytes or an "
            "IPython Image")


def _summary(obj: Any) -> str | None:
    """A text description for models that cannot see (minicpm.figures, when available)."""
    try:
        from minicpm.figures import summarize_figure
    except ImportError:
        return None
    try:
        from matplotlib.figure import Figure

        if isinstance(obj, Figure):
            return summarize_figure(obj)
    except Exception:  # a summary is a bonus; the image still goes
        return None
    return None


def _current_figure() -> Any:
    """The open matplotlib figure, if pyplot is in use and one is open."""
    import sys

    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None and plt.get_fignums():
        return plt.gcf()
    return None


def resolve_image(expr: str, namespace: dict[str, Any], images: ImageLog
                  ) -> tuple[dict[str, Any], str]:
    """(context part with base64 PNG, label) for ``expr``; '' means the last figure drawn.
    Raises MagicUsageError with a short reason for anything that is not an image."""
    from minicpm.images import to_png_bytes

    label = expr or "the last figure"
    obj: Any = None
    raw: bytes | None = None
    if not expr:
        obj = _current_figure()
        if obj is None:
            last = images.last()
            if last is None:
                raise MagicUsageError("no figure to explain yet: draw one, or name it "
                                      "(%minicpm image fig)")
            raw = last[1]
    else:
        try:
            obj = eval(expr, namespace)  # noqa: S307 - the user's own kernel
        except Exception as e:
            raise MagicUsageError(f"image {expr}: {type(e).__name__}: {e}") from None
        out = namespace.get("Out", {})
        # Out[n] of a cell that only displayed a plot is missing/None: use its displayed image.
        if obj is None and expr.startswith("Out["):
            try:
                n = int(expr[4:-1])
            except ValueError:
                n = None
            shown = images.get(n) if n is not None and n not in out else None
            if shown is None:
                raise MagicUsageError(f"{expr} holds no image") from None
            raw = shown[1]
        if isinstance(obj, str):  # paths and base64 text are images for minicpm.images, but
            # a string in a notebook is almost always a mistake here
            raise MagicUsageError(f"{expr} is a str, not an image (expected {EXPECTED})")
    try:
        png = to_png_bytes(raw if raw is not None else obj)
    except ImageError as e:
        raise MagicUsageError(f"{expr or 'that'} is not an image: {e}") from None
    except Exception as e:  # an object minicpm.images does not know at all
        kind = type(obj).__name__
        raise MagicUsageError(f"{expr} is a {kind}, not an image (expected {EXPECTED}): "
                              f"{e}") from None
    part: dict[str, Any] = {"kind": "image", "label": label, "mime": "image/png",
                            "data": base64.b64encode(png).decode()}
    summary = _summary(obj)
    if summary:
        part["summary"] = summary
    return part, label
