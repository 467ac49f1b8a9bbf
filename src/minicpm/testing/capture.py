"""What a CUDA-graph capture forbids, checked on CPU.

While a CUDA stream captures, the work it records must be device-only: no host data copied in
(``torch.tensor(3.0, device="cuda")`` is a host-to-device copy), no value read back to the host
(``.item()``, ``.tolist()``, ``.cpu()``), no op whose output size depends on the data (it
syncs: ``nonzero``, ``masked_select``) and no random draw (captured RNG replays the same
numbers unless registered). On CUDA any of these fails the capture, or silently freezes a
value. ``CaptureGuard`` records them on any device, so a CPU test can run exactly the region a
CUDA graph captures (minicpm.torch.generate.DecodeStep.run) and fail where a GPU would.

    with CaptureGuard() as guard:
        step.run()
    assert not guard.violations, guard.violations
"""

from __future__ import annotations

from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

#: Python-level calls: tensors made from host data, and host reads.
HOST_FUNCTIONS = {
    "tensor": "tensor from host data (a host-to-device copy on CUDA)",
    "as_tensor": "tensor from host data (a host-to-device copy on CUDA)",
    "from_numpy": "tensor from host data (a host-to-device copy on CUDA)",
    "item": "host read (device sync)",
    "tolist": "host read (device sync)",
    "cpu": "copy to the host (device sync)",
    "numpy": "host read (device sync)",
    "__bool__": "host read of a tensor's truth value (device sync)",
    "__int__": "host read (device sync)",
    "__float__": "host read (device sync)",
    "__index__": "host read (device sync)",
}

#: aten ops: the same things seen below the Python layer, plus syncing ops.
SYNCING_OPS = {
    "lift_fresh": "tensor from host data (a host-to-device copy on CUDA)",
    "_local_scalar_dense": "host read (device sync)",
    "nonzero": "data-dependent output size (device sync)",
    "masked_select": "data-dependent output size (device sync)",
    "unique": "data-dependent output size (device sync)",
    "_unique2": "data-dependent output size (device sync)",
    "is_nonzero": "host read (device sync)",
    "equal": "host read (device sync)",
    "item": "host read (device sync)",
    "_assert_async": "device assert (sync)",
}


class _Functions(TorchFunctionMode):
    def __init__(self, out: list[str]):
        super().__init__()
        self.out = out

    def __torch_function__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        name = getattr(func, "__name__", "")
        if name in HOST_FUNCTIONS:
            self.out.append(f"{name}: {HOST_FUNCTIONS[name]}")
        return func(*args, **(kwargs or {}))


class _Dispatch(TorchDispatchMode):
    def __init__(self, out: list[str]):
        super().__init__()
        self.out = out

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        base = func.overloadpacket.__name__
        if base in SYNCING_OPS:
            self.out.append(f"aten.{base}: {SYNCING_OPS[base]}")
        elif torch.Tag.nondeterministic_seeded in func.tags and _draws(func, args, kwargs):
            self.out.append(f"aten.{base}: random-number op")
        return func(*args, **(kwargs or {}))


def _draws(func: Any, args: tuple, kwargs: dict | None) -> bool:
    """Seeded ops draw random numbers, except attention with dropout_p == 0 (its tag covers the
    dropout it can do)."""
    names = [a.name for a in func._schema.arguments]
    if "dropout_p" not in names:
        return True
    i = names.index("dropout_p")
    p = (kwargs or {}).get("dropout_p", args[i] if i < len(args) else 0.0)
    return float(p) > 0.0


class CaptureGuard:
    """Context manager recording every capture-illegal call made inside it (``violations``,
    one line each, in order). ``strict=True`` raises at exit if there were any."""

    def __init__(self, strict: bool = False):
        self.strict = strict
        self.violations: list[str] = []
        self._modes = (_Functions(self.violations), _Dispatch(self.violations))

    def __enter__(self) -> CaptureGuard:
        for m in self._modes:
            m.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        for m in reversed(self._modes):
            m.__exit__(*exc)
        if self.strict and self.violations and exc[0] is None:
            raise AssertionError("not capture-safe:\n  " + "\n  ".join(self.violations))
