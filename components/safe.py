"""Text from data or the URL, made safe to show: `md()` before any Streamlit markdown
(st.markdown, captions, alerts, titles, metric labels and help, button labels) and
`html_label()` before any Plotly text (labels, hover text, legend names, titles), which
Plotly renders as a subset of HTML (links included)."""

from __future__ import annotations

import html
import re

# Backslash-escaped (CommonMark allows it before any ASCII punctuation): everything that
# makes a link, image, emphasis, code, heading, HTML, entity, table, math or a Streamlit
# directive (:red[...], :icon:).
# - ' " , ; / ? % = @ stay as they are: alone they make no markup, and names are full of them.
_MARKUP = re.compile(r"([\\`*_{}\[\]()<>#+!|~$&:.^])")
# A list item at the start of the text ("- x"); other block starts (# > 1.) are escaped above.
_LEADING_DASH = re.compile(r"^(\s*)-")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")
# Streamlit's markdown (remark-gfm) turns URLs and www. names into links by searching the
# text after escapes are resolved, so escaping cannot stop it: an invisible word joiner
# (U+2060) inside "://" and "www." does. E-mail addresses stay as they are (they become
# mailto: links, which open nothing but a mail draft): people copy them from the page.
JOINER = "\u2060"
_AUTOLINK = re.compile(r"(?<=:)(?=//)|(?i:(?<=\bwww)(?=\.))")


def md(text: object) -> str:
    """Escape user text for markdown (names, notes, URL values): shown as text, never as markup
    or a link. Line breaks become spaces, so a value cannot start a block (heading, code, quote)."""
    s = _AUTOLINK.sub(JOINER, _LINE_BREAKS.sub(" ", "" if text is None else str(text)))
    return _LEADING_DASH.sub(r"\1\\-", _MARKUP.sub(r"\\\1", s))


def html_label(text: object) -> str:
    """Escape text for a Plotly label, hover text, legend name or title: `<`, `>` and `&`
    are shown as themselves, so a value can carry no tag (`<a href>`, `<img>`) or entity."""
    return html.escape("" if text is None else str(text), quote=False)
