"""Sampling options, the numpy reference sampler and stop strings."""

import numpy as np
import pytest

from minicpm.sampling import SamplingParams, StopMatcher, apply_repetition_penalty, sample_token


def test_defaults_and_overrides():
    p = SamplingParams.from_kwargs(temperature=0, max_tokens=5, stop="END")
    assert p.greedy and p.max_tokens == 5 and p.stop == ("END",)


@pytest.mark.parametrize("kw", [{"temperature": -1}, {"top_p": 0}, {"top_k": -2},
                                {"max_tokens": 0}, {"repetition_penalty": 0}, {"stop": [""]},
                                {"bogus": 1}])
def test_bad_options_are_refused(kw):
    with pytest.raises(ValueError):
        SamplingParams.from_kwargs(**kw)


def test_greedy_picks_argmax_and_seed_reproduces_draws():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=100)
    assert sample_token(logits, SamplingParams(temperature=0), rng) == int(np.argmax(logits))
    p = SamplingParams(temperature=1.0, top_k=50, top_p=0.9)
    a = [sample_token(logits, p, np.random.default_rng(7)) for _ in range(5)]
    b = [sample_token(logits, p, np.random.default_rng(7)) for _ in range(5)]
    assert a == b


def test_top_k_one_is_greedy_and_top_p_restricts_support():
    logits = np.array([0.0, 5.0, 1.0, 4.9])
    rng = np.random.default_rng(1)
    assert {sample_token(logits, SamplingParams(temperature=1, top_k=1), rng) for _ in range(20)} == {1}
    draws = {sample_token(logits, SamplingParams(temperature=1, top_k=0, top_p=0.5), rng)
             for _ in range(50)}
    assert draws <= {1, 3}


def test_repetition_penalty_divides_positive_and_multiplies_negative():
    out = apply_repetition_penalty(np.array([2.0, -2.0, 1.0]), [0, 1], 2.0)
    assert out.tolist() == [1.0, -4.0, 1.0]


def test_stop_matcher_holds_back_partial_matches_and_never_emits_the_stop():
    m = StopMatcher(["<用户>"])
    out = [m.feed(x) for x in ["Hello", " <", "用", "户>", "more"]]
    assert "".join(out) == "Hello "
    assert m.stopped
    m2 = StopMatcher(["###"])
    assert m2.feed("a#") == "a"
    assert m2.feed("b") == "#b"
    assert m2.feed("##") == ""
    assert m2.flush() == "##"
