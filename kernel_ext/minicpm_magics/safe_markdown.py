"""Model output → HTML that can never run code or fetch anything.

Why here and not in the frontend: JupyterLab trusts the outputs of a cell the user just ran, so
``text/markdown`` / ``text/html`` from ``%minicpm`` is rendered unsanitized, and the ipywidgets
``HTML`` widget sets ``innerHTML`` as is. Model output is untrusted data (prompt injection through
the user's own files is enough), so the safety must come from what the kernel emits.

Rules: Markdown, tables and code blocks (highlighted with Pygments, inline styles) are kept; raw
HTML in the answer is shown as text; images never load (their alt text and URL are shown as
text); links other than ``http(s)://`` are dropped (their text stays); the only attributes in
the output are the ones written below, so nothing like ``data-commandlinker-command`` or
``onerror`` can appear."""

from __future__ import annotations

import html
import re
from typing import Any

import mistune
from mistune import HTMLRenderer

_SAFE_LINK = re.compile(r"^https?://[^\s\x00-\x1f]+$", re.I)
_TAGS = re.compile(r"<[^>]*>")


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _plain(rendered: str) -> str:
    """Text of an already rendered (hence escaped) fragment, unescaped once: to re-escape."""
    return html.unescape(_TAGS.sub("", rendered))


class SafeRenderer(HTMLRenderer):
    """mistune's HTML renderer with escaping on and the dangerous nodes rewritten."""

    def __init__(self) -> None:
        super().__init__(escape=True)

    def link(self, text: str, url: str, title: str | None = None) -> str:
        url = url.strip()
        if not _SAFE_LINK.match(url):
            return text  # javascript:, data:, file:, relative, command links: text only
        attrs = f' title="{_esc(title)}"' if title else ""
        return (f'<a href="{_esc(url)}"{attrs} target="_blank" '
                f'rel="noopener noreferrer nofollow">{text}</a>')

    def image(self, text: str, url: str, title: str | None = None) -> str:
        alt = _plain(text).strip()
        shown = f"{alt} ({url})" if alt else url
        return f'<span class="minicpm-image">[image: {_esc(shown)}]</span>'

    def inline_html(self, html_text: str) -> str:
        return _esc(html_text)

    def block_html(self, html_text: str) -> str:
        return f"<p>{_esc(html_text.strip())}</p>\n"

    def block_code(self, code: str, info: str | None = None) -> str:
        lang = (info or "").strip().split(None, 1)[0] if info and info.strip() else ""
        return highlight(code, lang)


def highlight(code: str, lang: str) -> str:
    """Pygments with inline styles (no stylesheet to load; no class names from the model)."""
    try:
        from pygments import highlight as _hl
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import get_lexer_by_name
        from pygments.util import ClassNotFound

        try:
            lexer = get_lexer_by_name(lang or "text")
        except ClassNotFound:
            lexer = get_lexer_by_name("text")
        return str(_hl(code, lexer, HtmlFormatter(noclasses=True, nowrap=False)))
    except ImportError:  # pygments comes with IPython; be robust anyway
        return f"<pre><code>{_esc(code)}</code></pre>\n"


_markdown: Any = None


def to_html(text: str) -> str:
    """Safe HTML for a Markdown answer (see the module docstring)."""
    global _markdown
    if _markdown is None:
        _markdown = mistune.create_markdown(
            renderer=SafeRenderer(), plugins=["table", "strikethrough", "url"])
    return str(_markdown(text))


def footer_html(footer: str) -> str:
    return f"<p><sub>{_esc(footer)}</sub></p>" if footer else ""


class SafeMarkdown:
    """A display object: safe ``text/html`` plus the raw ``text/plain`` twin (no
    ``text/markdown``: JupyterLab would render that unsanitized)."""

    def __init__(self, text: str, footer: str = ""):
        self.text, self.footer = text, footer

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        plain = self.text + (f"\n\n[{self.footer}]" if self.footer else "")
        body = f'<div class="minicpm-answer">{to_html(self.text)}{footer_html(self.footer)}</div>'
        return {"text/html": body, "text/plain": plain}
