"""Model output shown by %minicpm and the chat widget: hostile payloads never become live HTML.

The check is structural: the rendered HTML is parsed, and every tag and attribute must come from
the short list our renderer writes; no URL may be in a place a browser fetches from."""

from __future__ import annotations

import pytest
from htmlcheck import assert_inert, tags_of
from minicpm_magics.safe_markdown import SafeMarkdown, to_html

LEAK = "http://127.0.0.1:8999/leak"
PAYLOADS = {
    "img_onerror": f'<img src="{LEAK}?img" onerror="window.__pwned=1">',
    "script": "<script>window.__pwned=1</script>",
    "svg_image": f'<svg><image href="{LEAK}?svg"/></svg>',
    "markdown_image": f"![chart]({LEAK}?md)",
    "javascript_link": "[click me](javascript:window.__pwned=1)",
    "commandlinker": '<button data-commandlinker-command="terminal:create-new">go</button>',
    "data_link": "[x](data:text/html;base64,PHNjcmlwdD4=)",
    "iframe": f'<iframe src="{LEAK}?iframe"></iframe>',
    "style_url": f'<div style="background:url({LEAK}?css)">x</div>',
    "reference_image": f"![alt][r]\n\n[r]: {LEAK}?ref",
    "autolink_js": "<javascript:alert(1)>",
    "entity_js": "[e](&#106;avascript:alert(1))",
    "image_in_link": f"[![a]({LEAK}?nested)](https://example.com)",
}

@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_hostile_payload_is_inert(name: str) -> None:
    html = to_html(f"Answer:\n\n{PAYLOADS[name]}\n\nDone.")
    assert_inert(html)
    assert "Answer:" in html and "Done." in html  # the rest of the answer is still shown


def test_all_payloads_together_leave_no_live_markup() -> None:
    html = to_html("\n\n".join(PAYLOADS.values()))
    assert_inert(html)
    tags = [t for t, _ in tags_of(html)]
    assert not {"img", "script", "svg", "image", "iframe", "button", "object"} & set(tags)
    assert "data-commandlinker" not in "".join(str(a) for _, a in tags_of(html))
    # what the payloads said is still readable as text
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
    assert f"[image: chart ({LEAK}?md)]" in html  # alt text and URL, as text
    assert "click me" in html and "javascript" not in [a.get("href") for _, a in tags_of(html)]


def test_markdown_tables_and_highlighted_code_are_kept() -> None:
    md = ("# Title\n\nSome **bold** and `code` and [docs](https://docs.python.org/3/).\n\n"
          "| a | b |\n|---|---|\n| 1 | 2 |\n\n```python\ndef f(x):\n    return x  # <b>\n```\n")
    html = to_html(md)
    assert_inert(html)
    tags = [t for t, _ in tags_of(html)]
    assert {"h1", "strong", "code", "table", "td", "a", "pre"} <= set(tags)
    assert '<a href="https://docs.python.org/3/"' in html
    assert html.count('<span style="color') >= 3  # Pygments coloured the tokens
    assert "# &lt;b&gt;" in html  # code stays code


def test_display_object_has_html_and_plain_twin_but_no_markdown() -> None:
    bundle = SafeMarkdown(PAYLOADS["img_onerror"], footer="model <b>x</b>")._repr_mimebundle_()
    assert set(bundle) == {"text/html", "text/plain"}  # text/markdown would render unsanitized
    assert_inert(bundle["text/html"])
    assert "model &lt;b&gt;x&lt;/b&gt;" in bundle["text/html"]
    assert bundle["text/plain"] == PAYLOADS["img_onerror"] + "\n\n[model <b>x</b>]"


def test_chat_widget_bubbles_are_inert() -> None:
    from minicpm_magics.widget import _bubble

    html = _bubble("assistant", "\n\n".join(PAYLOADS.values()))
    assert_inert(html)
    assert "<img" not in html and "<script" not in html and "&lt;script&gt;" in html
