"""Today's MiniCPM through llama.cpp: tiny minicpm3 and MiniCPM5 (Llama + the minicpm5
pre-tokenizer) GGUFs written by the project's own writer load and generate on CPU, with the chat
template their files carry."""

import pytest

import minicpm
from minicpm import templates
from minicpm.catalogue import BY_NAME
from minicpm.gguf_check import read_gguf
from minicpm.testing.gguf_writer import CHATML_TEMPLATE, write_minicpm3_gguf, write_minicpm5_gguf


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("new-archs")
    return {"minicpm3": write_minicpm3_gguf(d / "tiny-minicpm3.gguf"),
            "minicpm5": write_minicpm5_gguf(d / "tiny-minicpm5.gguf")}


def test_headers_say_what_llama_cpp_reads(files):
    m3 = read_gguf(files["minicpm3"])
    assert m3.architecture == "minicpm3"
    assert m3.arch_key("attention.key_length") == 24 and m3.arch_key("rope.dimension_count") == 8
    assert {"blk.0.attn_q_a.weight", "blk.0.attn_kv_a_mqa.weight", "blk.1.attn_kv_b.weight"} \
        <= set(m3.tensors)
    m5 = read_gguf(files["minicpm5"])
    assert m5.architecture == "llama" and m5.get("tokenizer.ggml.pre") == "minicpm5"
    assert m5.get("tokenizer.ggml.model") == "gpt2" and m5.chat_template == CHATML_TEMPLATE


@pytest.mark.parametrize("arch", ["minicpm3", "minicpm5"])
def test_load_and_generate_on_cpu(files, arch):
    engine = minicpm.load(str(files[arch]), n_ctx=128, n_threads=1)
    try:
        assert engine.info.architecture == ("minicpm3" if arch == "minicpm3" else "llama")
        gen = engine.complete("hello world", max_tokens=6, temperature=0)
        "".join(gen)
        assert gen.usage.completion_tokens >= 1
        chat = engine.chat([{"role": "user", "content": "what is python"}], max_tokens=6,
                           temperature=0)
        "".join(chat)
        assert chat.usage.completion_tokens >= 1 and chat.usage.prompt_tokens > 4
        # the file's ChatML template, not MiniCPM-1/2's <用户> turns
        assert "<|im_start|>user" in engine.render([{"role": "user", "content": "hi"}])
    finally:
        engine.close()


def test_the_template_comes_from_the_file_when_it_speaks_chatml():
    assert templates.choose_template("minicpm", CHATML_TEMPLATE) == CHATML_TEMPLATE  # MiniCPM 4
    assert templates.choose_template("minicpm3", CHATML_TEMPLATE) == CHATML_TEMPLATE
    assert templates.choose_template("minicpm", None) == templates.MINICPM  # MiniCPM-1/2


def test_catalogue_names_todays_family():
    for name, repo, fname in [
        ("MiniCPM3-4B-Q4_K_M", "openbmb/MiniCPM3-4B-GGUF", "minicpm3-4b-q4_k_m.gguf"),
        ("MiniCPM4-8B-Q4_K_M", "openbmb/MiniCPM4-8B-GGUF", "MiniCPM4-8B-Q4_K_M.gguf"),
        ("MiniCPM5-1B-Q4_K_M", "openbmb/MiniCPM5-1B-GGUF", "MiniCPM5-1B-Q4_K_M.gguf"),
        ("MiniCPM-V-4-gguf", "openbmb/MiniCPM-V-4-gguf", "ggml-model-Q4_K_M.gguf"),
        ("MiniCPM-V-4_5-gguf", "openbmb/MiniCPM-V-4_5-gguf", "ggml-model-Q4_K_M.gguf"),
    ]:
        e = BY_NAME[name.lower()]
        assert (e.hub_id, e.filename, e.format, e.template) == (repo, fname, "gguf", "file")
    assert BY_NAME["minicpm-v-4_5-gguf"].mmproj == "mmproj-model-f16.gguf"
    assert BY_NAME["minicpm5-1b-q4_k_m"].context_length == 131072
