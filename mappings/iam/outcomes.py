"""What a sync reports: one :class:`SyncLine` per OIDC provider, role or retired role."""

from __future__ import annotations

from dataclasses import asdict, dataclass

UNCHANGED = "unchanged"
CREATED = "created"
UPDATED = "updated"
FAILED = "failed"
DIFFERS = "differs"  # a dry run (``sync_iam --check``): writing would change IAM
# A requested sync handed to a worker instead of run here (admin, with a broker).
QUEUED = "queued"
ALREADY_QUEUED = "already queued"


@dataclass(frozen=True, slots=True)
class SyncLine:
    """One line of a sync report: ``<label>: <outcome>[: <reason>]`` (JSON-friendly)."""

    label: str
    outcome: str
    reason: str = ""
    diff: str = ""

    def text(self) -> str:
        return f"{self.label}: {self.outcome}" + (f": {self.reason}" if self.reason else "")

    def as_dict(self) -> dict[str, str]:
        return asdict(self)
