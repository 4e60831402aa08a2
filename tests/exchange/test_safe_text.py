"""Claim text made safe to export and show (found in review: ``ok;=6*7;x`` computed 42 when opened
with ``;`` as separator; ESC sequences reached the terminal of ``audit_export --format csv``)."""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.core.management import call_command
from hypothesis import given
from hypothesis import strategies as st

from exchange.audit import AUDIT_FIELDS, write_csv
from exchange.safe_text import csv_cell, visible
from tests.console.factories import AuditEventFactory

TRIGGERS = "=+-@\t\r\uff1d\uff0b\uff0d\uff20"
SEPARATORS = ",;\t|"
# What must never appear raw: C0, DEL, C1, bidi embeddings/overrides/isolates and marks.
RAW_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
ESC_SEQUENCE = "\x1b[2J\x1b]0;pwned\x07red"


def naive_cells(line: str) -> list[str]:
    """The cells a spreadsheet sees when it splits on any separator, ignoring quotes."""
    return [piece.strip().strip('"').strip() for piece in re.split("[,;\t|]", line)]


def computes(cell: str) -> bool:
    return cell[:1] in TRIGGERS if cell else False


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("ok;=6*7;x", "ok;'=6*7;x"),
        ("=cmd()", "'=cmd()"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("a|=1", "a|'=1"),
        ("a, +b", "a, '+b"),
        ('a;"=1', "a;\"'=1"),
        ("platform/web", "platform/web"),
        (None, ""),
        (3.5, "3.5"),
        ("\tx", "\\x09x"),
        (ESC_SEQUENCE, "\\x1b[2J\\x1b]0;pwned\\x07red"),
        ("evil/\u202egol", "evil/\\u202egol"),
        ("\x9b31m", "\\x9b31m"),
        ("\u2066x\u2069", "\\u2066x\\u2069"),
    ],
)
def test_csv_cell(value, cell):
    assert csv_cell(value) == cell


@given(st.text())
def test_no_exported_cell_computes_or_carries_a_control_character(text):
    cell = csv_cell(text)
    assert not RAW_FORBIDDEN.search(cell)
    stream = io.StringIO()
    csv.writer(stream, quoting=csv.QUOTE_ALL).writerow([cell, cell])
    line = stream.getvalue()
    assert line.endswith("\r\n") and "\n" not in line[:-2] and "\r" not in line[:-2]
    assert not any(computes(piece) for piece in naive_cells(line[:-2])), line


@given(st.text())
def test_visible_keeps_ordinary_text_and_escapes_the_rest(text):
    shown = visible(text)
    assert not RAW_FORBIDDEN.search(shown)
    if not RAW_FORBIDDEN.search(text) and not re.search("[\u200b-\u200d\u2028\u2029\u2060-\u2065\ufeff]", text):
        assert shown == text


@pytest.fixture
def hostile_event(db):
    return AuditEventFactory(
        project_path="ok;=6*7;x", ref=ESC_SEQUENCE, user_login="evil/\u202egol", pipeline_source="\x9b6n"
    )


def test_audit_export_csv_quotes_every_cell_and_escapes_controls(hostile_event):
    out = io.StringIO()
    call_command("audit_export", "--format", "csv", stdout=out)
    text = out.getvalue()
    assert not RAW_FORBIDDEN.search(text.replace("\r\n", ""))
    header, row, _ = text.split("\r\n")
    assert header == ",".join(f'"{name}"' for name in AUDIT_FIELDS)
    assert row.startswith('"') and row.count('","') == len(AUDIT_FIELDS) - 1
    assert not any(computes(piece) for piece in naive_cells(row))
    record = next(csv.DictReader(io.StringIO(text)))
    assert record["project_path"] == "ok;'=6*7;x"
    assert record["ref"] == "\\x1b[2J\\x1b]0;pwned\\x07red"
    assert record["user_login"] == "evil/\\u202egol"
    assert record["pipeline_source"] == "\\x9b6n"


def test_write_csv_semicolon_reading_never_computes(hostile_event):
    stream = io.StringIO()
    write_csv([hostile_event], stream)
    for delimiter in SEPARATORS:
        for row in csv.reader(io.StringIO(stream.getvalue()), delimiter=delimiter):
            assert not any(computes(cell.strip()) for cell in row), (delimiter, row)


def test_audit_export_jsonl_keeps_text_exact_with_json_escapes(hostile_event):
    out = io.StringIO()
    call_command("audit_export", stdout=out)
    assert "\x1b" not in out.getvalue() and "\u202e" not in out.getvalue()
    assert "\\u001b[2J" in out.getvalue()
