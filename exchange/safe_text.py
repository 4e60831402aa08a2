"""Attacker-chosen text (the claims of any presented token) made safe to show and to export.

Pure functions, used by the CSV exports (:func:`csv_cell`) and by every page that shows claim
text (:func:`visible`, the ``visible`` template filter). The stored audit event keeps the text as
it came; only what is shown or exported is changed. See docs/operations.md "Security controls".
"""

from __future__ import annotations

import re
from typing import overload

# Characters that must never reach a terminal or a reader's eyes as themselves:
# C0 controls and DEL (ESC starts terminal escape sequences), C1 controls (U+009B is a one-byte
# CSI), bidirectional embeddings, overrides and isolates and the directional marks (U+202E made
# "evil/..." read as "live/..."), zero-width characters, line/paragraph separators and the BOM.
_INVISIBLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]",
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


@overload
def visible(text: str) -> str: ...
@overload
def visible(text: object) -> object: ...
def visible(text: object) -> object:
    r"""``text`` with every control, bidi and invisible character written as an escape
    (``\x1b``, ``\u202e``); anything that is not a string is returned as is."""
    if not isinstance(text, str):
        return text
    return _INVISIBLE.sub(_escape, text)


# OWASP CSV injection: a cell a spreadsheet reads as a formula starts with one of these (after
# optional spaces). Full-width forms are included: some spreadsheets normalise them.
_TRIGGERS = "=+-@\t\r\uff1d\uff0b\uff0d\uff20"
# The separators a spreadsheet may split a line on (comma; semicolon in many European locales;
# tab; pipe): a trigger right after one starts a new cell when the file is opened with it.
_SEPARATORS = ",;\t|"
# Spaces and double quotes between a separator and a trigger do not stop a spreadsheet that
# splits the line without honouring quotes.
_EMBEDDED_FORMULA = re.compile(f'([{re.escape(_SEPARATORS)}][\\s"]*)(?=[{re.escape(_TRIGGERS)}])')
_LEADING_FORMULA = re.compile(f'^[\\s"]*[{re.escape(_TRIGGERS)}]')


def csv_cell(value: object) -> str:
    """One CSV cell: controls escaped (:func:`visible`), then neutralised per OWASP's CSV
    injection guidance: a cell starting with a formula trigger gets a leading ``'``, and so does
    every trigger right after a separator (``ok;=6*7;x`` -> ``ok;'=6*7;x``), so no cell computes
    whichever separator the spreadsheet splits on. Write with ``csv.QUOTE_ALL``."""
    if value is None:
        return ""
    text = visible(value if isinstance(value, str) else str(value))
    text = _EMBEDDED_FORMULA.sub(r"\1'", text)
    if _LEADING_FORMULA.match(text):
        text = "'" + text
    return text
