"""Vision tests run headless and single-threaded (the machine is shared)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass
