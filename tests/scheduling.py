"""How ``pytest -n N`` shares the suite between its workers (docs/architecture.md#tests).

xdist's default (``--dist load``) hands out single tests in collection order: both workers then
start the per-worker live servers (``tests/contract``, ``tests/ci``: gunicorn, moto, a stand-in
GitLab each) and Chromium, and the slowest modules, collected last, can end up queued behind
each other on one worker while the other idles. ``--dist loadgroup`` would fix the first, but
its group marks are lost with pytest 9.2 (pytest-xdist issue #1386: the nodeid suffix it relies
on no longer takes effect), so the suite schedules for itself through xdist's documented hook:

- a *unit* is a package whose tests share a per-worker server (:data:`PACKAGES`), or else one
  test module (its module-scoped fixtures then start once, on one worker);
- units are handed out longest first (:data:`LONGEST_FIRST`, measured with ``--durations``; a
  stale entry only costs balance, never a test), then the rest, most tests first.

Every collected test still runs exactly once; ``-p no:xdist`` or ``-n 0`` bypass all of this.
"""

from __future__ import annotations

from xdist.scheduler import LoadScopeScheduling

# Packages run whole on one worker: their tests share session-scoped servers.
PACKAGES = ("tests/contract/", "tests/ci/", "tests/browser/", "tests/chaos/")

# The longest units, longest first (seconds on 2 cores, `pytest -n 2 --durations=0`, summed per unit).
LONGEST_FIRST = (
    "tests/chaos/",
    "tests/ci/",
    "tests/contract/",
    "tests/browser/",
)


def unit_of(nodeid: str) -> str:
    """The work unit of a test: its package in :data:`PACKAGES`, else its module."""
    for package in PACKAGES:
        if nodeid.startswith(package):
            return package
    return nodeid.split("::", 1)[0]


class LongestFirstScheduling(LoadScopeScheduling):
    """xdist's ``loadscope`` with :func:`unit_of` as the scope and :data:`LONGEST_FIRST` order."""

    def _split_scope(self, nodeid: str) -> str:
        return unit_of(nodeid)

    def _assign_work_unit(self, node) -> None:
        if not getattr(self, "_ordered", False):
            # The queue holds the units in collection order: longest first instead, then most tests
            # (sorted() is stable: equal units keep their collection order).
            rank = {unit: i for i, unit in enumerate(LONGEST_FIRST)}
            units = sorted(self.workqueue.items(), key=lambda item: (rank.get(item[0], len(rank)), -len(item[1])))
            self.workqueue.clear()
            self.workqueue.update(units)
            self._ordered = True
        super()._assign_work_unit(node)
