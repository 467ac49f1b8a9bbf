"""The variable inspector on real pandas and numpy objects: exact descriptions, truncation,
names a cell reads, budgets, and that it imports nothing heavy itself."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
from minicpm_magics.cell_names import names_used
from minicpm_magics.inspect_vars import (
    approx_tokens,
    describe,
    list_variables,
    names_in_text,
    variable_context,
)


def sales() -> pd.DataFrame:
    return pd.DataFrame({
        "region": ["north", "south", "east", "west", "north"],
        "revenue": [1.5, 2.0, 3.25, 4.0, 5.0],
        "units": np.array([3, 4, 5, 6, 7], dtype="int64"),
    })


def test_dataframe_columns_dtypes_rows_and_head() -> None:
    text = describe("df", sales())
    lines = text.splitlines()
    assert lines[0] == "df: pandas DataFrame, 5 rows × 3 columns"
    dtype = str(sales()["region"].dtype)  # object (pandas 2) or str (pandas 3)
    assert lines[1] == f"  columns: region ({dtype}), revenue (float64), units (int64)"
    assert lines[2] == "  head(3):"
    assert lines[3].split() == ["region", "revenue", "units"]
    assert lines[4].split() == ["0", "north", "1.5", "3"]
    assert lines[6].split() == ["2", "east", "3.25", "5"]
    assert len(lines) == 7  # three rows of head, not five


def test_series_array_containers_functions() -> None:
    s = sales()["revenue"]
    assert describe("s", s) == "s: pandas Series 'revenue', 5 values, dtype float64; head: [1.5, 2.0, 3.25]"
    a = np.arange(12, dtype="float32").reshape(3, 4)
    assert describe("a", a) == "a: numpy ndarray, shape (3, 4), dtype float32, min 0.0, max 11.0"
    assert describe("d", {"a": 1, "b": [1, 2]}) == "d: dict, 2 keys = {'a': 1, 'b': [1, 2]}"
    assert describe("xs", list(range(1000))) == "xs: list, 1000 items of int = [0, 1, 2, 3, 4, 5, ...]"
    assert describe("n", 42) == "n: int = 42"

    def area(r: float, pi: float = 3.14) -> float:
        """Area of a circle.

        More text."""
        return pi * r * r

    assert describe("area", area) == "area: function area(r: float, pi: float = 3.14) -> float — Area of a circle."
    import json

    assert describe("json", json) is None  # modules are never context


def test_every_repr_is_truncated() -> None:
    long = "x" * 10_000
    assert len(describe("t", long)) < 160
    wide = pd.DataFrame({f"column_{i}": [i] for i in range(200)})
    text = describe("wide", wide)
    assert "… 160 more" in text
    assert max(len(line) for line in text.splitlines()) <= 160

    class Loud:
        def __repr__(self) -> str:
            return "L" * 5000

    assert len(describe("o", Loud())) < 200

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert describe("b", Broken()).startswith("b: test_inspect_vars Broken = <Broken instance")


def test_huge_array_skips_min_max_but_keeps_shape() -> None:
    big = np.zeros((3000, 1000), dtype="uint8")
    assert describe("big", big) == "big: numpy ndarray, shape (3000, 1000), dtype uint8"


def test_names_used_by_a_cell() -> None:
    code = textwrap.dedent("""\
        import numpy as np
        total = df.groupby(key)["revenue"].sum()
        rows = [r for r in records if r > limit]
        def scale(x, factor=default_factor):
            return x * factor * GLOBAL
        %matplotlib inline
        """)
    from IPython.core.inputtransformer2 import TransformerManager

    names = names_used(code, TransformerManager().transform_cell)
    assert names[:5] == ["df", "key", "records", "limit", "default_factor"]
    assert "GLOBAL" in names and "r" not in names and "x" not in names and "factor" not in names
    assert "np" not in names  # imported here, not read before


def test_names_in_a_question() -> None:
    ns = {"df": sales(), "x": 1, "model": object(), "np": np}
    assert names_in_text("Why does df have NaNs after merging with model?", ns) == ["df", "model"]
    assert names_in_text("is x a list", ns) == []  # a one-letter word is prose...
    assert names_in_text("is `x` a list", ns) == ["x"]  # ...unless it is marked as code
    assert names_in_text("what does np do", ns) == []  # modules are not variables


def test_budgets() -> None:
    ns = {"df": pd.DataFrame({f"c{i}": range(100) for i in range(30)}), "n": 1, "s": "hi"}
    found, left = variable_context(["df", "n", "missing"], ns, each_tokens=512, total_tokens=4096)
    assert [v.name for v in found] == ["df", "n"] and left == ["missing"]
    assert all(v.tokens <= 512 and v.tokens == approx_tokens(v.text) for v in found)
    small, _ = variable_context(["df"], ns, each_tokens=60, total_tokens=60)
    assert small[0].tokens <= 60 and small[0].text.startswith("df: pandas DataFrame, 100 rows")
    tight, left = variable_context(["df", "n", "s"], ns, each_tokens=512, total_tokens=120)
    assert sum(v.tokens for v in tight) <= 120


def test_listing_hides_modules_privates_and_ipython_names() -> None:
    ns = {"df": sales(), "np": np, "_hidden": 1, "In": [], "Out": {}, "count": 3}
    rows = list_variables(ns)
    assert [r["name"] for r in rows] == ["count", "df"]
    assert rows[1] == {"name": "df", "type": "pandas DataFrame",
                       "summary": "pandas DataFrame, 5 rows × 3 columns"}


def test_inspector_imports_nothing_heavy() -> None:
    code = ("import sys\nfrom minicpm_magics.inspect_vars import describe, list_variables\n"
            "print(describe('d', {'a': [1, 2]}), list_variables({'x': 1}))\n"
            "print(sorted(m for m in ('pandas', 'numpy', 'torch', 'IPython') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[-1] == "[]", out.stdout
