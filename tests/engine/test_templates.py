"""Chat templates, byte-exact."""

import pytest

from minicpm import templates

CONVO = [
    {"role": "system", "content": "  You are terse.  "},
    {"role": "user", "content": " 你好 "},
    {"role": "assistant", "content": "Hi!\n"},
    {"role": "user", "content": "2+2?"},
]


def test_minicpm_template_is_byte_exact_for_system_and_multi_turn():
    text = templates.render(templates.MINICPM, CONVO)
    expected = "You are terse.<用户>你好<AI>Hi!<用户>2+2?<AI>"
    assert text == expected
    assert text.encode("utf-8") == expected.encode("utf-8")


def test_minicpm_template_single_user_turn():
    assert templates.render_minicpm([{"role": "user", "content": "hi"}]) == "<用户>hi<AI>"


def test_minicpm_is_chosen_for_minicpm_files_even_with_a_generic_template():
    assert templates.choose_template("minicpm", None) == templates.MINICPM
    assert templates.choose_template("minicpm", "{{ messages }}") == templates.MINICPM
    assert templates.choose_template("llama", "{{'<用户>'}}") == templates.MINICPM
    assert templates.choose_template("llama", None) == templates.CHATML_JINJA


SMOL = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\nYou are SmolLM<|im_end|>\n' }}{% endif %}"
        "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def test_file_jinja_template_renders_with_generation_prompt():
    text = templates.render(SMOL, [{"role": "user", "content": "hi"}], bos_token="<|im_start|>",
                            tokenizer_adds_bos=False)
    assert text == ("<|im_start|>system\nYou are SmolLM<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
                    "<|im_start|>assistant\n")


def test_bos_text_is_stripped_only_when_the_tokenizer_adds_bos():
    tmpl = "{{ bos_token }}{% for m in messages %}[{{ m['content'] }}]{% endfor %}"
    msgs = [{"role": "user", "content": "x"}]
    assert templates.render(tmpl, msgs, bos_token="<s>", tokenizer_adds_bos=True) == "[x]"
    assert templates.render(tmpl, msgs, bos_token="<s>", tokenizer_adds_bos=False) == "<s>[x]"


def test_openai_style_content_parts_are_flattened():
    msgs = [{"role": "user", "content": [{"type": "text", "text": "a"},
                                         {"type": "image_url", "image_url": {"url": "data:"}},
                                         {"type": "text", "text": "b"}]}]
    assert templates.render_minicpm(msgs) == "<用户>a\nb<AI>"


@pytest.mark.parametrize("bad", [[], "hello", [{"content": "x"}], [{"role": "robot", "content": "x"}],
                                 [{"role": "user", "content": 5}]])
def test_malformed_conversations_are_refused(bad):
    with pytest.raises(ValueError):
        templates.normalize_messages(bad)


def test_stop_strings_follow_the_template():
    assert templates.stop_strings(templates.MINICPM) == ("<用户>",)
    assert "<|im_end|>" in templates.stop_strings(SMOL)
