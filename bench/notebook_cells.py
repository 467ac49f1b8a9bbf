"""The synthetic notebook both variable benchmarks scan (bench/inspect_vars.py, its def-use
half in the browser code, and bench/sidebar_vars.py): four kinds of cell, repeated, as
JavaScript for node (``kinds[i % 4](i)`` is cell i's source)."""

CELL_KINDS_JS = r"""
const kinds = [
  i => `import pandas as pd\nimport numpy as np\ndf${i} = pd.read_csv("f${i}.csv")`,
  i => `df${i} = df${i-1}.dropna()\ndf${i}["total"] = df${i}.price * df${i}.qty\n` +
       `summary${i} = df${i}.groupby("region")["total"].sum()`,
  i => `def clean${i}(frame, cols=None):\n    out = frame.copy()\n    for c in cols or frame.columns:\n` +
       `        out[c] = out[c].fillna(0)\n    return out\nclean_df${i} = clean${i}(df${i-2})`,
  i => `fig, ax = plt.subplots()\nax.plot(summary${i-2}.index, summary${i-2}.values)\n` +
       `ax.set_title(f"Revenue {year}")\nplt.show()`,
];
"""
