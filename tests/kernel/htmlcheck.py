"""Checking that HTML is inert: every tag and attribute from the short list our renderer (and
Pygments, inline styles) writes; links only http(s); no url() in styles."""

from __future__ import annotations

from html.parser import HTMLParser

ALLOWED = {  # tag → attributes our renderer (and Pygments, inline styles) may write
    "p": set(), "em": set(), "strong": set(), "code": set(), "pre": {"style"},
    "h1": set(), "h2": set(), "h3": set(), "h4": set(), "h5": set(), "h6": set(),
    "ul": set(), "ol": {"start"}, "li": set(), "blockquote": set(), "hr": set(), "br": set(),
    "table": set(), "thead": set(), "tbody": set(), "tr": set(), "th": {"style"},
    "td": {"style"}, "del": set(), "sub": set(), "div": {"class", "style"},
    "span": {"class", "style"}, "a": {"href", "title", "target", "rel"},
    "b": set(),  # the chat widget's "MiniCPM:" label
}


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags_of(html: str) -> list[tuple[str, dict[str, str | None]]]:
    p = Tags()
    p.feed(html)
    p.close()
    return p.tags


def assert_inert(html: str) -> None:
    for tag, attrs in tags_of(html):
        assert tag in ALLOWED, (tag, html)
        assert set(attrs) <= ALLOWED[tag], (tag, attrs, html)
        if tag == "a":
            assert (attrs["href"] or "").startswith(("http://", "https://")), html
            assert attrs.get("rel") == "noopener noreferrer nofollow"
        for name, value in attrs.items():
            if name == "style":  # only Pygments' own colours: no url(), no expression()
                assert "url(" not in (value or "") and "leak" not in (value or ""), html
