"""A matplotlib figure described in words, for text-only models ("explain this plot" on a laptop).

``summarize_figure(fig)`` reads the figure's artists — not its pixels — and writes what a reader
would look for: title, axis labels, limits and scales, legend, each artist's kind and size,
per-series min/max/mean and trend, image shapes and colour ranges. With a vision model the
summary is sent beside the pixels: exact numbers are what small vision models get wrong.

    summarize_figure(fig, max_series=12) -> str
    figure_facts(fig) -> dict              # the same, structured (for the server / tests)
    last_figure() -> Figure | None         # the current pyplot figure, if pyplot has one
    is_figure(x) -> bool                   # a Figure or an Axes
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

MAX_SERIES = 12  # per axes; the rest are counted, not described (keeps prompts short)


# --- numbers ---------------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    """Short, stable number formatting: 4 significant digits, no trailing noise."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isnan(f):
        return "nan"
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    if f == 0:
        return "0"
    if f == int(f) and abs(f) < 1e7:
        return str(int(f))
    return f"{f:.4g}"


def _finite(a: Any) -> np.ndarray:
    try:
        arr = np.ma.filled(np.ma.asarray(a, dtype=float).ravel(), np.nan)
    except (TypeError, ValueError):
        return np.array([], dtype=float)
    return arr[np.isfinite(arr)]


def _stats(y: Any) -> dict[str, Any]:
    v = _finite(y)
    if v.size == 0:
        return {"n": 0}
    return {"n": int(v.size), "min": float(v.min()), "max": float(v.max()),
            "mean": float(v.mean())}


def trend(x: Any, y: Any) -> str:
    """'rising', 'falling', 'flat' or 'no clear trend', from a least-squares line judged
    against the spread of y (R² and total change), plus where the extremes sit."""
    xa = np.ma.filled(np.ma.asarray(x, dtype=float).ravel(), np.nan)
    ya = np.ma.filled(np.ma.asarray(y, dtype=float).ravel(), np.nan)
    n = min(xa.size, ya.size)
    xa, ya = xa[:n], ya[:n]
    ok = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[ok], ya[ok]
    if xa.size < 3:
        return "too few points for a trend"
    span = float(ya.max() - ya.min())
    if span == 0 or float(xa.max() - xa.min()) == 0:
        return "flat" if span == 0 else "no clear trend"
    slope, icpt = np.polyfit(xa, ya, 1)
    fit = slope * xa + icpt
    ss_res = float(((ya - fit) ** 2).sum())
    ss_tot = float(((ya - ya.mean()) ** 2).sum())
    r2 = 1 - ss_res / ss_tot if ss_tot > 0 else 0.0
    change = slope * float(xa.max() - xa.min())
    if r2 >= 0.5 and abs(change) >= 0.1 * span:
        word = "rising" if slope > 0 else "falling"
        monotone = np.all(np.diff(ya[np.argsort(xa, kind="stable")]) * np.sign(slope) >= 0)
        out = f"{word}{' monotonically' if monotone else ''} (slope {_fmt(slope)}, R²={r2:.2f})"
    else:
        out = f"no clear linear trend (R²={r2:.2f})"
        # Name the shape when the extreme is inside the range: a peak or a dip.
        i_max, i_min = int(np.argmax(ya)), int(np.argmin(ya))
        order = np.argsort(xa, kind="stable")
        pos_max = int(np.where(order == i_max)[0][0])
        pos_min = int(np.where(order == i_min)[0][0])
        inner = range(max(1, n // 10), xa.size - max(1, n // 10))
        if pos_max in inner and pos_min not in inner:
            out += f"; peaks at x={_fmt(xa[i_max])}"
        elif pos_min in inner and pos_max not in inner:
            out += f"; dips at x={_fmt(xa[i_min])}"
        elif _is_periodic(ya[order]):
            out += "; oscillating"
    return out


def _is_periodic(y: np.ndarray) -> bool:
    d = np.sign(np.diff(y))
    d = d[d != 0]
    return d.size > 4 and int((np.diff(d) != 0).sum()) >= 3


# --- artists ---------------------------------------------------------------------------------
def _label(artist: Any) -> str | None:
    lab = artist.get_label() if hasattr(artist, "get_label") else None
    if not lab or str(lab).startswith("_"):  # matplotlib's "_child0", "_nolegend_"
        return None
    return str(lab)


def _color(artist: Any) -> str | None:
    from matplotlib.colors import to_hex

    for getter in ("get_color", "get_facecolor"):
        fn = getattr(artist, getter, None)
        if fn is None:
            continue
        try:
            c = fn()
            c = np.asarray(c)
            if c.ndim == 2:
                if c.shape[0] == 0:
                    continue
                c = c[0]
            return to_hex(c)
        except (ValueError, TypeError):
            continue
    return None


def _line_facts(line: Any) -> dict[str, Any]:
    x = np.ma.filled(np.ma.asarray(line.get_xdata(), dtype=float), np.nan)
    y = np.ma.filled(np.ma.asarray(line.get_ydata(), dtype=float), np.nan)
    return {"kind": "line", "label": _label(line), "color": _color(line), "points": int(y.size),
            "x": _stats(x), "y": _stats(y), "trend": trend(x, y),
            "style": line.get_linestyle() if line.get_linestyle() not in ("None", "") else
            f"markers {line.get_marker()}"}


def _scatter_facts(coll: Any) -> dict[str, Any]:
    off = np.asarray(coll.get_offsets(), dtype=float)
    if off.ndim != 2 or off.shape[1] != 2:
        off = np.zeros((0, 2))
    facts: dict[str, Any] = {"kind": "scatter", "label": _label(coll), "points": int(len(off)),
                             "x": _stats(off[:, 0]), "y": _stats(off[:, 1])}
    ok = np.isfinite(off).all(axis=1)
    if ok.sum() >= 3 and off[ok, 0].std() > 0 and off[ok, 1].std() > 0:
        facts["correlation"] = float(np.corrcoef(off[ok, 0], off[ok, 1])[0, 1])
        facts["trend"] = trend(off[ok, 0], off[ok, 1])
    arr = coll.get_array()
    if arr is not None and np.size(arr):
        facts["color_values"] = _stats(arr)
    sizes = coll.get_sizes()
    if sizes is not None and np.size(sizes) > 1 and np.ptp(sizes) > 0:
        facts["marker_sizes"] = _stats(sizes)
    return facts


def _bars_facts(container: Any, ax: Any) -> dict[str, Any]:
    patches = list(container.patches)
    horizontal = getattr(container, "orientation", "vertical") == "horizontal"
    if horizontal:
        pos = np.array([p.get_y() + p.get_height() / 2 for p in patches])
        val = np.array([p.get_width() for p in patches])
        widths = np.array([p.get_height() for p in patches])
        starts = np.array([p.get_y() for p in patches])
    else:
        pos = np.array([p.get_x() + p.get_width() / 2 for p in patches])
        val = np.array([p.get_height() for p in patches])
        widths = np.array([p.get_width() for p in patches])
        starts = np.array([p.get_x() for p in patches])
    # A histogram is a bar container whose bars touch: edges line up with the next start.
    contiguous = len(patches) > 1 and np.allclose(starts[:-1] + widths[:-1], starts[1:],
                                                  rtol=1e-6, atol=1e-9 * max(1.0, np.ptp(starts)))
    kind = "histogram" if contiguous else ("barh" if horizontal else "bar")
    facts: dict[str, Any] = {"kind": kind, "label": _label(container), "bars": len(patches),
                             "values": _stats(val), "color": _color(patches[0]) if patches else None}
    if kind == "histogram":
        facts["bin_range"] = [float(starts[0]), float(starts[-1] + widths[-1])]
        facts["total_count"] = float(val.sum())
        facts["mode_bin_center"] = float(pos[int(np.argmax(val))]) if val.size else None
    else:
        names = _tick_names(ax, pos, "y" if horizontal else "x")
        facts["items"] = [(n, float(v)) for n, v in zip(names, val, strict=True)][:24]
    return facts


def _tick_names(ax: Any, pos: np.ndarray, which: str) -> list[str]:
    axis = ax.yaxis if which == "y" else ax.xaxis
    ticks = {round(float(t), 6): lab.get_text() for t, lab in
             zip(axis.get_ticklocs(), axis.get_ticklabels(), strict=False) if lab.get_text()}
    return [ticks.get(round(float(p), 6)) or _fmt(p) for p in pos]


def _image_facts(im: Any) -> dict[str, Any]:
    arr = im.get_array()
    shape = tuple(int(s) for s in np.shape(arr)) if arr is not None else ()
    facts: dict[str, Any] = {"kind": "image", "shape": list(shape)}
    if arr is not None and len(shape) == 2:
        facts["values"] = _stats(arr)
        facts["cmap"] = im.get_cmap().name
        lo, hi = im.get_clim()
        facts["clim"] = [float(lo), float(hi)] if lo is not None and hi is not None else None
        a = np.ma.filled(np.ma.asarray(arr, dtype=float), np.nan)
        if np.isfinite(a).any():
            r, c = np.unravel_index(int(np.nanargmax(a)), a.shape)
            facts["argmax_row_col"] = [int(r), int(c)]
    elif len(shape) == 3:
        facts["channels"] = shape[2]
    ext = getattr(im, "get_extent", None)
    if ext is not None:
        facts["extent"] = [float(e) for e in ext()]
    return facts


def _mesh_facts(coll: Any, kind: str) -> dict[str, Any]:
    arr = coll.get_array()
    return {"kind": kind, "shape": list(np.shape(arr)) if arr is not None else [],
            "values": _stats(arr) if arr is not None else {"n": 0},
            "cmap": coll.get_cmap().name if hasattr(coll, "get_cmap") else None}


def _axes_facts(ax: Any, max_series: int) -> dict[str, Any]:
    from matplotlib.collections import LineCollection, PathCollection, PolyCollection, QuadMesh
    from matplotlib.container import BarContainer, ErrorbarContainer
    from matplotlib.image import AxesImage

    facts: dict[str, Any] = {
        "title": ax.get_title() or ax.get_title("left") or ax.get_title("right") or None,
        "xlabel": ax.get_xlabel() or None, "ylabel": ax.get_ylabel() or None,
        "xlim": [float(v) for v in ax.get_xlim()], "ylim": [float(v) for v in ax.get_ylim()],
        "xscale": ax.get_xscale(), "yscale": ax.get_yscale(),
        "grid": any(gl.get_visible() for gl in ax.xaxis.get_gridlines() + ax.yaxis.get_gridlines()),
        "artists": [],
    }
    if ax.xaxis_inverted():
        facts["x_inverted"] = True
    if ax.yaxis_inverted() and not ax.images:  # imshow inverts y by design; not news
        facts["y_inverted"] = True
    leg = ax.get_legend()
    if leg is not None:
        facts["legend"] = [t.get_text() for t in leg.get_texts()]
    artists: list[dict[str, Any]] = []
    in_container: set[int] = set()
    for c in ax.containers:
        if isinstance(c, BarContainer):
            artists.append(_bars_facts(c, ax))
            in_container.update(id(p) for p in c.patches)
        elif isinstance(c, ErrorbarContainer):
            line = c.lines[0]
            if line is not None:
                f = _line_facts(line)
                f["kind"] = "errorbar"
                f["label"] = _label(c) or f["label"]  # the label sits on the container
                artists.append(f)
                in_container.add(id(line))
            for part in (*c.lines[1], *c.lines[2]):
                in_container.add(id(part))
    for line in ax.lines:
        if id(line) not in in_container:
            artists.append(_line_facts(line))
    for coll in ax.collections:
        if id(coll) in in_container:
            continue
        if isinstance(coll, PathCollection):
            artists.append(_scatter_facts(coll))
        elif isinstance(coll, QuadMesh):
            artists.append(_mesh_facts(coll, "pcolormesh"))
        elif type(coll).__name__ in ("FillBetweenPolyCollection",) or (
                isinstance(coll, PolyCollection) and _label(coll)):
            artists.append({"kind": "filled area", "label": _label(coll)})
        elif isinstance(coll, LineCollection):
            artists.append({"kind": "line segments", "label": _label(coll),
                            "segments": len(coll.get_segments())})
        elif type(coll).__name__ in ("QuadContourSet", "ContourSet"):
            levels = getattr(coll, "levels", [])
            artists.append({"kind": "contour", "levels": len(levels),
                            "range": _stats(levels)})
        else:
            artists.append({"kind": type(coll).__name__})
    for im in ax.images:
        if isinstance(im, AxesImage):
            artists.append(_image_facts(im))
    pies = [p for p in ax.patches if type(p).__name__ == "Wedge" and id(p) not in in_container]
    if pies:
        angles = [(p.theta2 - p.theta1) / 360.0 for p in pies]
        names = [t.get_text() for t in ax.texts][: len(pies)]
        artists.append({"kind": "pie", "wedges": len(pies),
                        "shares": [(n or f"#{i}", a) for i, (n, a) in
                                   enumerate(zip(names + [""] * len(pies), angles, strict=False))]})
    texts = [t.get_text() for t in ax.texts if t.get_text().strip()]
    if texts and not pies:
        facts["annotations"] = texts[:10]
    facts["n_artists"] = len(artists)
    facts["artists"] = artists[:max_series]
    return facts


def _is_colorbar(ax: Any) -> bool:
    return hasattr(ax, "_colorbar") or getattr(ax, "get_label", lambda: "")() == "<colorbar>"


def figure_facts(fig: Any, max_series: int = MAX_SERIES) -> dict[str, Any]:
    """Everything :func:`summarize_figure` says, as plain data (JSON-serialisable)."""
    w, h = fig.get_size_inches()
    sup = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) else None
    axes = [ax for ax in fig.axes if ax.get_visible()]
    colorbars = [ax for ax in axes if _is_colorbar(ax)]
    plots = [ax for ax in axes if not _is_colorbar(ax)]
    facts: dict[str, Any] = {
        "suptitle": sup or None,
        "size_inches": [round(float(w), 2), round(float(h), 2)],
        "dpi": float(fig.dpi),
        "axes": [_axes_facts(ax, max_series) for ax in plots],
        "colorbars": [ax.get_ylabel() or ax.get_xlabel() or None for ax in colorbars],
    }
    geo = _grid_shape(plots)
    if geo:
        facts["grid"] = list(geo)
    return facts


def _grid_shape(axes: list[Any]) -> tuple[int, int] | None:
    for ax in axes:
        ss = ax.get_subplotspec() if hasattr(ax, "get_subplotspec") else None
        if ss is not None:
            rows, cols = ss.get_gridspec().get_geometry()
            return int(rows), int(cols)
    return None


# --- text --------------------------------------------------------------------------------------
def _range(s: dict[str, Any]) -> str:
    if not s or s.get("n", 0) == 0:
        return "no finite values"
    return f"min {_fmt(s['min'])}, max {_fmt(s['max'])}, mean {_fmt(s['mean'])}"


def _artist_line(a: dict[str, Any]) -> str:
    kind = a["kind"]
    name = f" '{a['label']}'" if a.get("label") else ""
    if kind in ("line", "errorbar"):
        x = a["x"]
        xr = f"x from {_fmt(x['min'])} to {_fmt(x['max'])}" if x.get("n") else "no x"
        return (f"{kind}{name}: {a['points']} points, {xr}; y {_range(a['y'])}; "
                f"{a['trend']}")
    if kind == "scatter":
        s = (f"scatter{name}: {a['points']} points; x {_range(a['x'])}; y {_range(a['y'])}")
        if "correlation" in a:
            s += f"; correlation {a['correlation']:.2f}, {a['trend']}"
        if "color_values" in a:
            s += f"; colour encodes values {_range(a['color_values'])}"
        if "marker_sizes" in a:
            s += "; marker size varies"
        return s
    if kind == "histogram":
        lo, hi = a["bin_range"]
        return (f"histogram{name}: {a['bars']} bins over [{_fmt(lo)}, {_fmt(hi)}], total "
                f"{_fmt(a['total_count'])}; bin heights {_range(a['values'])}; tallest bin "
                f"centred at {_fmt(a['mode_bin_center'])}")
    if kind in ("bar", "barh"):
        items = ", ".join(f"{n}={_fmt(v)}" for n, v in a["items"])
        more = f" (first {len(a['items'])} shown)" if a["bars"] > len(a["items"]) else ""
        return f"{'horizontal ' if kind == 'barh' else ''}bar chart{name}: {a['bars']} bars{more}: {items}"
    if kind == "image":
        shp = "×".join(str(s) for s in a["shape"])
        s = f"image {shp}"
        if "values" in a:
            s += f", values {_range(a['values'])}, colormap {a['cmap']}"
            if a.get("clim"):
                s += f", colour limits [{_fmt(a['clim'][0])}, {_fmt(a['clim'][1])}]"
            if a.get("argmax_row_col"):
                r, c = a["argmax_row_col"]
                s += f", largest value at row {r}, column {c}"
        elif "channels" in a:
            s += f" ({'RGB' if a['channels'] == 3 else 'RGBA' if a['channels'] == 4 else a['channels']} colour)"
        return s
    if kind == "pcolormesh":
        return f"pcolormesh {'×'.join(map(str, a['shape']))}, values {_range(a['values'])}, colormap {a['cmap']}"
    if kind == "contour":
        return f"contour plot with {a['levels']} levels, {_range(a['range'])}"
    if kind == "pie":
        return "pie chart: " + ", ".join(f"{n} {v:.0%}" for n, v in a["shares"])
    if kind == "line segments":
        return f"line segments{name}: {a['segments']}"
    return f"{kind}{name}"


def summarize_figure(fig: Any = None, max_series: int = MAX_SERIES) -> str:
    """A plain-text description of a matplotlib Figure (or Axes; None: the current figure)."""
    if fig is None:
        fig = last_figure()
        if fig is None:
            return "No matplotlib figure is open."
    if not hasattr(fig, "get_size_inches") and hasattr(fig, "figure"):
        fig = fig.figure  # an Axes: describe its whole figure
    f = figure_facts(fig, max_series)
    lines: list[str] = []
    n = len(f["axes"])
    head = f"Matplotlib figure, {f['size_inches'][0]}×{f['size_inches'][1]} in"
    if n == 0:
        head += ", with no axes"
    elif n == 1:
        head += ", one plot"
    else:
        grid = f" in a {f['grid'][0]}×{f['grid'][1]} grid" if f.get("grid") else ""
        head += f", {n} subplots{grid}"
    if f["suptitle"]:
        head += f", titled '{f['suptitle']}'"
    lines.append(head + ".")
    for i, ax in enumerate(f["axes"]):
        title = f" '{ax['title']}'" if ax["title"] else ""
        prefix = f"Subplot {i + 1}{title}" if n > 1 else (f"Plot{title}")
        lines.append(f"{prefix}:")
        for which in ("x", "y"):
            lab = ax[f"{which}label"]
            lo, hi = ax[f"{which}lim"]
            scale = ax[f"{which}scale"]
            scale_txt = "" if scale == "linear" else f", {scale} scale"
            inv = ", inverted" if ax.get(f"{which}_inverted") else ""
            lines.append(f"  {which}-axis: {repr(lab) if lab else 'unlabelled'}, "
                         f"from {_fmt(lo)} to {_fmt(hi)}{scale_txt}{inv}")
        if ax.get("legend"):
            lines.append("  legend: " + ", ".join(ax["legend"]))
        if not ax["artists"]:
            lines.append("  (empty: nothing drawn)")
        for a in ax["artists"]:
            lines.append("  - " + _artist_line(a))
        if ax["n_artists"] > len(ax["artists"]):
            lines.append(f"  … and {ax['n_artists'] - len(ax['artists'])} more artists")
        if ax.get("annotations"):
            lines.append("  text on the plot: " + "; ".join(repr(t) for t in ax["annotations"]))
    for cb in f["colorbars"]:
        lines.append(f"Colour bar{': ' + repr(cb) if cb else ''}.")
    return "\n".join(lines)


def is_figure(x: Any) -> bool:
    """A matplotlib Figure or Axes (duck-typed: matplotlib need not be imported)."""
    return (hasattr(x, "savefig") and hasattr(x, "axes")) or hasattr(
        getattr(x, "figure", None), "savefig")


def last_figure() -> Any:
    """The current pyplot figure, or None when pyplot is not in use or has no figure open.
    Never creates a figure (``plt.gcf()`` would), and never imports pyplot itself."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None or not plt.get_fignums():
        return None
    return plt.gcf()
