"""The revoke-older-sessions inline policy: AWS's documented pattern, the one permission policy
Rolegate writes (pure).

It denies every action on every resource to sessions of the role whose ``aws:TokenIssueTime`` is
before the cut-off; sessions issued later are untouched. Rolegate owns exactly the inline policy
named :data:`POLICY_NAME` and no other inline or attached policy of the role.

Reference: https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_revoke-sessions.html
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

POLICY_NAME = "RolegateRevokeOlderSessions"
_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def whole_second(moment: datetime) -> datetime:
    """``moment`` rounded up to the second: IAM's condition holds seconds, and a cut-off must
    never fall before the moment it stands for (a session of that same second is revoked too)."""
    rounded = moment.replace(microsecond=0)
    return rounded if rounded == moment else rounded + timedelta(seconds=1)


def cutoff_text(cutoff: datetime) -> str:
    """ISO 8601 in UTC to the second (rounded up), as IAM's date conditions read it."""
    return whole_second(cutoff).astimezone(UTC).strftime(_FORMAT)


def revoke_older_sessions(cutoff: datetime) -> dict[str, Any]:
    """Deny everything to sessions issued before ``cutoff``."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "RolegateRevokeOlderSessions",
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
                "Condition": {"DateLessThan": {"aws:TokenIssueTime": cutoff_text(cutoff)}},
            }
        ],
    }


def cutoff_of(document: object) -> datetime | None:
    """The cut-off of a revoke-older-sessions policy, or None when ``document`` is not one."""
    try:
        statements = document["Statement"]  # type: ignore[index]
        statements = statements if isinstance(statements, list) else [statements]
        values = [s["Condition"]["DateLessThan"]["aws:TokenIssueTime"] for s in statements if s.get("Effect") == "Deny"]
        return max(datetime.strptime(str(v), _FORMAT).replace(tzinfo=UTC) for v in values)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
