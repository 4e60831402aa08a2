"""Scheduling of IAM trust-policy syncs (the IAM sync issue fills in the tasks).

``schedule_role_sync`` is called inside the transaction that changed the registry; it queues the
sync of each touched role once, after commit.
"""

from __future__ import annotations

from collections.abc import Iterable


def schedule_role_sync(*, role_ids: Iterable[int]) -> None:
    """Queue a trust-policy sync for each role after the current transaction commits."""
    # The IAM sync is not built yet: nothing to schedule.
    return None
