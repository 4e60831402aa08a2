"""Reading the reference in docs/ from tests: sections and the reason-code table."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def section(page: str, heading: str) -> str:
    """The text of ``## heading`` in ``docs/page`` up to the next heading of the same level."""
    text = (DOCS / page).read_text()
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"docs/{page} has no section '## {heading}'"
    return match.group(1)


def documented_reasons() -> dict[str, tuple[str, int]]:
    """reason -> (error, HTTP status), from the table of docs/reasons.md#audit-reason-codes."""
    table = section("reasons.md", "Audit reason codes")
    rows = re.findall(r"^\| `([a-z_]+)` \| (`[a-z_]+`|—) \| (\d{3}) \|", table, re.M)
    return {reason: (error.strip("`").replace("—", ""), int(status)) for reason, error, status in rows}
