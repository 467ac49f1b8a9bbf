"""The one context-length rule (minicpm.errors.check_context): every engine path calls it."""

from __future__ import annotations

import pytest

from minicpm.errors import ContextOverflowError, check_context, context_room, fits_context


def test_the_rule() -> None:
    assert context_room(100, 128, reserve=16) == 12
    assert fits_context(127, 128) and not fits_context(128, 128)  # one token to generate
    assert fits_context(128, 128, reserve=0)  # the KV level: exactly full is allowed
    check_context(112, 128, reserve=16)
    with pytest.raises(ContextOverflowError) as e:
        check_context(113, 128, reserve=16)
    assert (e.value.prompt_tokens, e.value.context_length, e.value.reserve) == (113, 128, 16)
    assert "113 tokens but the context holds 128 with 16 tokens left to answer" in str(e.value)
    with pytest.raises(ContextOverflowError, match="with 1 token left to answer"):
        check_context(128, 128)
