"""Would IAM accept the minted token under the role's generated trust policy? (explain/simulate)

Uses the IAM sync's policy generator and evaluator (``mappings.policies``, ``mappings.iam_eval``)
when they exist; until then there is no verdict.
"""

from __future__ import annotations


def trust_policy_verdicts(*, issuer, claims, explanation, now) -> list[dict] | None:
    """One verdict per matched mapping's role, or ``None`` when the generator is not available."""
    return None
