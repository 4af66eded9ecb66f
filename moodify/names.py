"""How a name someone else chose (a file name, an upload's name) is shown: in a terminal, in a
CSV cell a spreadsheet will open, and in the web app's Markdown. One function each, used by
every command and the app, so a hostile name is harmless wherever it is shown.

- ``printable(text)``: control characters escaped (``\\x1b``, ``\\r``, ``\\n``, bidi overrides as
  ``\\u202e``), so a name cannot retitle, clear or rewrite the user's terminal, and a message
  stays one line.
- ``csv_cell(text)``: OWASP's advice for CSV outputs: a cell starting with ``=``, ``+``, ``-``,
  ``@``, a tab or a carriage return gets a leading ``'``, which spreadsheets show as text and
  never run as a formula (so does one starting with ``'``, which keeps it reversible:
  ``from_csv_cell`` gives the exact text back). JSONL and Parquet keep the exact text.
- ``markdown_text(text)``: every Markdown (and Streamlit directive) character backslash-escaped,
  so ``[click](http:host)`` or ``![x](http:host)`` shows as those characters, not a link or an
  image the browser would fetch.
"""

from __future__ import annotations

import re
import unicodedata

# Bidirectional overrides and isolates ("Trojan Source"): not control characters to Unicode
# (category Cf), but they reorder what a terminal shows.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet may take for a formula
_QUOTED_STARTS = (*FORMULA_STARTS, "'")
# CommonMark lets any ASCII punctuation be backslash-escaped; these are the ones that mean
# something to Markdown, GitHub-flavoured autolinks ("http://...", "a@b.c") or Streamlit
# (":red[...]", ":smile:", "$x$"). A dot matters only in "www." (an autolink without a scheme);
# elsewhere it stays as it is, so "photo.jpg" reads the same in the page's source.
_MARKDOWN = frozenset("\\`*_{}[]()#+-!|<>~:$=&\"'@")
_WWW = re.compile(r"(www)\.", re.IGNORECASE)


def printable(text: str) -> str:
    """``text`` with control characters escaped, for a terminal (stdout, stderr, a log)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(c: str) -> str:
    if c in _NAMED:
        return _NAMED[c]
    if unicodedata.category(c) in ("Cc", "Cs") or c in _BIDI:  # Cs: a non-UTF-8 byte's surrogate
        code = ord(c)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return c  # printable to a terminal though not to str.isprintable (a zero-width joiner in an emoji name)


def csv_cell(text):
    """``text`` safe in a spreadsheet: a leading ``'`` where it could start a formula (anything
    but a str is given back as it is)."""
    return "'" + text if isinstance(text, str) and text.startswith(_QUOTED_STARTS) else text


def from_csv_cell(cell: str) -> str:
    """The exact text ``csv_cell`` was given (its leading ``'`` removed)."""
    return cell[1:] if cell.startswith("'") else cell


def markdown_text(text: str) -> str:
    """``text`` shown as itself in Markdown (Streamlit's labels, captions, errors): no link, no image."""
    return _WWW.sub(r"\1\\.", "".join("\\" + c if c in _MARKDOWN else c for c in printable(text)))
