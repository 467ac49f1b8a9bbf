"""The sidebar's view of the kernel's variables (comm ``minicpm.variables`` and the silent
``user_expressions`` entry point) in a real kernel: right answers, and the user's session is
left exactly as it was (globals, ``_``, ``Out``, execution count)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from kernelharness import TIMEOUT, Kernel, kernel_env, running_kernel

TARGET = "minicpm.variables"
STATE = {  # evaluated silently: no names are created by these expressions
    "names": "sorted(globals())",
    "under": "repr(_)",
    "out": "sorted(Out)",
    "count": "get_ipython().execution_count",
    "hist": "len(In)",
}


def state(k: Kernel) -> dict[str, Any]:
    res = k.expressions(STATE)
    assert all(v["status"] == "ok" for v in res.values()), res
    return {name: v["data"]["text/plain"] for name, v in res.items()}


def comm_exchange(k: Kernel, first: dict[str, Any], then: list[dict[str, Any]] = ()
                  ) -> list[dict[str, Any]]:
    """Open a comm with ``first`` as its data, send each of ``then`` on it, close it; the
    answers in order."""
    comm_id = uuid.uuid4().hex
    session, shell = k.kc.session, k.kc.shell_channel
    sent = [session.msg("comm_open", {"comm_id": comm_id, "target_name": TARGET,
                                      "data": first})]
    sent += [session.msg("comm_msg", {"comm_id": comm_id, "data": d}) for d in then]
    answers: list[dict[str, Any]] = []
    for msg in sent:
        shell.send(msg)
        while True:
            m = k.kc.get_iopub_msg(timeout=TIMEOUT)
            if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == comm_id:
                answers.append(m["content"]["data"])
                break
    shell.send(session.msg("comm_close", {"comm_id": comm_id, "data": {}}))
    return answers


@pytest.fixture(scope="module")
def data_kernel(kernel: Kernel) -> Kernel:
    kernel.ok("import pandas as pd, numpy as np\n"
              "df = pd.DataFrame({'city': ['Oslo', 'Lima'], 'temp': [3.5, 19.0]})\n"
              "arr = np.arange(6).reshape(2, 3)\nlimit = 10\n"
              "def clean(frame, drop_na=True):\n    return frame\n")
    kernel.ok("41 + 1")  # so _ and Out have something to keep
    return kernel


def test_comm_lists_describes_and_finds_used_names(data_kernel: Kernel) -> None:
    before = state(data_kernel)
    listed, described, used, bad = comm_exchange(
        data_kernel, {"request": "list", "id": 1},
        [{"request": "describe", "names": ["df", "arr", "nope"], "id": 2},
         {"request": "used", "code": "%matplotlib inline\nx = clean(df)[df.temp > limit]\nprint(z)", "id": 3},
         {"request": "frobnicate"}])
    assert listed["id"] == 1
    rows = {r["name"]: r for r in listed["variables"]}
    assert set(rows) == {"df", "arr", "limit", "clean"}  # no modules, In/Out/Err, _private
    assert rows["df"]["summary"] == "pandas DataFrame, 2 rows × 2 columns"
    assert rows["clean"]["summary"] == "function clean(frame, drop_na=True)"

    assert described["id"] == 2 and described["missing"] == ["nope"]
    texts = {d["name"]: d["text"] for d in described["descriptions"]}
    assert texts["arr"] == "arr: numpy ndarray, shape (2, 3), dtype int64, min 0, max 5"
    assert texts["df"].splitlines()[1].endswith("temp (float64)")
    assert all(d["tokens"] > 0 for d in described["descriptions"])

    assert used == {"id": 3, "names": ["clean", "df", "limit"]}  # z is not defined: left out
    assert "unknown request" in bad["error"]
    assert state(data_kernel) == before  # nothing in the user's session moved


def test_silent_execute_entry_point(data_kernel: Kernel) -> None:
    before = state(data_kernel)
    req = json.dumps({"request": "describe", "names": ["limit"]})
    res = data_kernel.expressions(
        {"r": f"__import__('minicpm_magics').kernel_request({req!r})"})
    assert res["r"]["data"]["application/json"] == {
        "descriptions": [{"name": "limit", "text": "limit: int = 10", "tokens": 5}],
        "missing": []}
    assert state(data_kernel) == before


def test_entry_point_without_the_extension_loaded() -> None:
    with running_kernel(kernel_env(), "rows = [1, 2, 3]") as k:
        before = state(k)
        res = k.expressions({"r": "__import__('minicpm_magics').kernel_request("
                                  "'{\"request\": \"list\"}')"})
        assert res["r"]["data"]["application/json"] == {"variables": [
            {"name": "rows", "type": "list", "summary": "list, 3 items of int = [1, 2, 3]"}]}
        assert state(k) == before
