"""The engine contract on the real embedded stand-in model (SmolLM2-135M, llama.cpp)."""

import re
import socket
import subprocess
import sys
import threading

import pytest

import minicpm

Q = [{"role": "system", "content": "You are a helpful assistant."},
     {"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def standin_options():
    return {"n_ctx": 512}


@pytest.fixture(scope="module")
def engine(standin):
    return standin


def test_default_is_the_labelled_stand_in(engine):
    info = engine.info
    assert info.stand_in and info.label.endswith("(stand-in)")
    assert info.backend == "llama.cpp" and info.architecture == "llama"
    assert info.quantization == "Q4_1" and info.context_length == 512
    assert "minicpm download" in info.hint


def test_answers_a_plain_question(engine):
    # What the stand-in knows differs between CPUs (greedy numerics), so this checks the
    # shape of an answer, not a fact: words, no template markers, stopped or cut at the limit.
    g = engine.chat(Q, temperature=0, max_tokens=16)
    text = g.read()
    assert re.search(r"[A-Za-z]{2,}", text), text
    assert text == text.lstrip()  # the reply's leading space is dropped
    for marker in ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "assistant\n"):
        assert marker not in text
    assert g.usage.finish_reason in ("stop", "length")
    assert 0 < g.usage.completion_tokens <= 16


def test_streaming_deltas_join_to_the_full_text(engine):
    g = engine.chat(Q, temperature=0, max_tokens=24)
    deltas = list(g)
    assert len(deltas) > 1
    assert "".join(deltas) == g.text
    again = engine.chat(Q, temperature=0, max_tokens=24).read()
    assert again == g.text  # greedy is deterministic
    assert g.usage.completion_tokens >= len(deltas) - 1
    assert g.usage.finish_reason in ("stop", "length")
    assert g.usage.prompt_tokens > 5 and g.usage.time_to_first_token > 0


def test_cancel_stops_within_one_token(engine):
    g = engine.complete("Count from one to one hundred: one, two, three,", temperature=0,
                        max_tokens=200, ignore_eos=True)
    it = iter(g)
    next(it)
    tokens_at_cancel = g.usage.completion_tokens
    threading.Thread(target=g.cancel).start()
    rest = list(it)
    assert g.usage.finish_reason == "cancelled"
    assert g.usage.completion_tokens - tokens_at_cancel <= 1
    assert len(rest) <= 2  # at most the token in flight (plus a flushed held-back tail)


def test_cancel_from_another_thread_while_generating(engine):
    g = engine.complete("Once upon a time", temperature=0.8, max_tokens=400, ignore_eos=True, seed=1)
    seen = []
    five = threading.Event()

    def consume():
        try:
            for d in g:
                seen.append(d)
                if g.usage.completion_tokens >= 5:
                    five.set()
        finally:
            five.set()

    t = threading.Thread(target=consume)
    t.start()
    # Cancel from this thread once 5 tokens are out (an event, not a polling window).
    five.wait()
    assert g.usage.completion_tokens >= 5, "generation ended before 5 tokens"
    g.cancel()
    n = g.usage.completion_tokens
    t.join()  # ends either way (at the latest after 400 tokens): the count shows the cancel
    assert g.usage.finish_reason == "cancelled" and g.usage.completion_tokens <= n + 1


def test_seed_makes_sampling_reproducible(engine):
    kw = dict(temperature=1.0, top_p=0.95, top_k=50, max_tokens=24, ignore_eos=True)
    a = engine.complete("My favourite animal is", seed=1234, **kw).read()
    b = engine.complete("My favourite animal is", seed=1234, **kw).read()
    c = [engine.complete("My favourite animal is", seed=s, **kw).read() for s in (1, 2, 3)]
    assert a == b
    assert len(set(c)) > 1


def test_max_tokens_and_stop_strings(engine):
    g = engine.complete("1, 2, 3, 4, 5,", temperature=0, max_tokens=3, ignore_eos=True)
    g.read()
    assert g.usage.completion_tokens == 3 and g.usage.finish_reason == "length"
    s = engine.complete("1, 2, 3, 4, 5,", temperature=0, max_tokens=30, stop=["8"]).read()
    assert "8" not in s and "6" in s


def test_prompt_longer_than_context_is_refused_with_numbers(engine):
    long = "word " * 2000
    with pytest.raises(minicpm.ContextOverflowError) as e:
        engine.chat([{"role": "user", "content": long}], max_tokens=8).read()
    assert e.value.context_length == 512 and e.value.prompt_tokens > 512
    with pytest.raises(minicpm.ContextOverflowError):
        engine.complete(long, max_tokens=8).read()
    # The engine keeps serving afterwards.
    assert engine.chat(Q, temperature=0, max_tokens=8).read()


def test_truncate_left_drops_oldest_turns_and_says_so(engine):
    history = []
    for i in range(12):
        history += [{"role": "user", "content": f"Fact {i}: " + "blah " * 40},
                    {"role": "assistant", "content": "Noted."}]
    history.append(Q[1])
    g = engine.chat(history, truncate="left", temperature=0, max_tokens=8)
    g.read()
    # truncated_tokens counts prompt tokens (as in complete()), not messages.
    full = engine.count_tokens(engine.render(history), add_bos=True)
    assert full > 512
    assert g.usage.truncated_tokens == full - g.usage.prompt_tokens
    assert g.usage.prompt_tokens + 8 <= 512
    # The oldest turns went, the question stayed.
    assert g.usage.truncated_tokens > 12 * 40 // 2


def test_render_shows_the_exact_prompt(engine):
    text = engine.render(Q)
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")


def test_no_network_connection_during_inference(engine, monkeypatch):
    attempts = []
    real_connect = socket.socket.connect

    def guarded(self, address):
        attempts.append(address)
        raise OSError("network disabled by test")

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket, "create_connection",
                        lambda *a, **k: guarded(None, a[0] if a else None))
    e2 = minicpm.load(n_ctx=256, n_threads=2)  # loading, too, stays offline
    assert e2.chat(Q, temperature=0, max_tokens=8).read()
    assert engine.chat(Q, temperature=0, max_tokens=8).read()
    e2.close()
    assert attempts == []
    monkeypatch.setattr(socket.socket, "connect", real_connect)


def test_cli_generate_answers_sensibly_on_stdout_only():
    r = subprocess.run([sys.executable, "-m", "minicpm", "generate", "--prompt",
                        "What is 2+2?", "--temperature", "0",
                        "--max-tokens", "24"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "4" in r.stdout
    assert "stand-in" in r.stderr and "stand-in" not in r.stdout


def test_cli_raw_mode_continues_text():
    r = subprocess.run([sys.executable, "-m", "minicpm", "generate", "--raw", "--prompt",
                        "1, 2, 3, 4,", "--temperature", "0", "--max-tokens", "6"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "5" in r.stdout


def test_cli_chat_repl_keeps_the_conversation():
    # -v logs each turn's prompt size: the second turn's prompt carries the first turn, and
    # after /reset the same message starts from an empty conversation again.
    r = subprocess.run([sys.executable, "-m", "minicpm", "-v", "chat", "--temperature", "0",
                        "--max-tokens", "12", "--system", "You are a helpful assistant."],
                       input="My name is Ada.\nWhat is my name?\n/reset\nMy name is Ada.\n/exit\n",
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "[conversation cleared]" in r.stderr
    turns = [(int(p), int(c)) for p, c in
             re.findall(r"(\d+) prompt \+ (\d+) generated tokens", r.stderr)]
    assert len(turns) == 3, r.stderr
    (p1, c1), (p2, _), (p3, _) = turns
    assert p2 > p1 + c1  # the first question and its answer are in the second prompt
    assert p3 == p1  # cleared: the same message alone again
    assert r.stdout.strip()


def test_cli_models_lists_catalogue_and_stand_in():
    r = subprocess.run([sys.executable, "-m", "minicpm", "models"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0
    for name in ("MiniCPM-2B-sft-bf16", "MiniCPM-2B-dpo-int4", "MiniCPM-2B-128k", "MiniCPM-1B-sft-bf16",
                 "MiniCPM-MoE-8x2B", "MiniCPM-V-2", "MiniCPM-2B-dpo-Q4_K_M", "MiniCPM-V-2_6-gguf",
                 "SmolLM2-135M-Instruct (stand-in)"):
        assert name in r.stdout


def test_download_offline_fails_at_once_with_where_to_put_files(tmp_path):
    env = {"PATH": "", "HF_ENDPOINT": "http://127.0.0.1:9", "MINICPM_CACHE": str(tmp_path),
           "HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "minicpm", "download", "MiniCPM-2B-dpo-Q4_K_M"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 2
    # "At once": refused by the reachability check, before huggingface_hub and its retries.
    assert "cannot reach 127.0.0.1:9" in r.stderr and "download of" not in r.stderr
    assert "cannot download" in r.stderr and str(tmp_path) in r.stderr
    assert "MiniCPM-2B-dpo-q4km-gguf.gguf" in r.stderr
