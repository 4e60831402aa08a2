"""Would IAM accept the minted token under the role's generated trust policy? (explain/simulate)

Defence in depth made visible: Rolegate's matcher decides, and the trust policy the IAM sync
generates for the role must agree. Uses the IAM sync's generator and evaluator
(``mappings.policies``, ``mappings.iam_eval``); without them there is no verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings

from console.explain import Explanation
from mappings.matching import Rule
from mappings.models import Issuer, Role


@dataclass(frozen=True)
class IamVerdict:
    role_arn: str
    mapping: str
    allowed: bool | None  # None: could not be evaluated (see detail)
    detail: str


def _role(rule: Rule) -> Role | None:
    return (
        Role.objects.select_related("account").filter(account__account_id=rule.account_id, name=rule.role_name).first()
    )


def _verdict(rule: Rule, *, issuer: Issuer, claims: Mapping[str, object], modules) -> IamVerdict:
    policies, iam_eval, sync = modules
    role = _role(rule)
    if role is None:
        return IamVerdict(rule.role_arn, rule.name, None, "The role is not in the registry.")
    missing = [name for name in ("project_path", "ref_type", "ref") if not isinstance(claims.get(name), str)]
    if missing:
        return IamVerdict(rule.role_arn, rule.name, False, f"The token lacks {', '.join(missing)}.")
    result = policies.generate(sync.role_policy_input(role))
    if not result.fits:
        return IamVerdict(rule.role_arn, rule.name, None, result.message)
    try:
        if rule.account_mode == policies.DIRECT:
            allowed = iam_eval.gitlab_token_allowed(
                result.document,
                issuer_url=issuer.url,
                account_id=rule.account_id,
                aud=rule.account_audience,
                claims=claims,
            )
            how = "a GitLab token sent to STS directly (direct-mode account)"
        else:
            allowed = iam_eval.minted_token_allowed(
                result.document,
                rolegate_issuer=settings.ROLEGATE_ISSUER,
                account_id=rule.account_id,
                audience=rule.account_audience,
                issuer_name=issuer.name,
                claims=claims,
                mapping_name=rule.name,
                session_tags=rule.session_tags,
            )
            how = "the token Rolegate would mint"
    except iam_eval.UnsupportedPolicy as exc:
        return IamVerdict(rule.role_arn, rule.name, None, f"The evaluator cannot judge this policy: {exc}")
    verb = "allows" if allowed else "denies"
    return IamVerdict(rule.role_arn, rule.name, allowed, f"The generated trust policy {verb} {how}.")


def trust_policy_verdicts(
    *, issuer: Issuer, claims: Mapping[str, object], explanation: Explanation, now: datetime
) -> list[IamVerdict] | None:
    """A verdict for each matching mapping (and, when the requested role has none, for that role
    under its first mapping), or ``None`` when the IAM sync's generator is not installed."""
    try:
        from mappings import iam_eval, policies, sync
    except ImportError:
        return None
    if not hasattr(sync, "role_policy_input"):
        return None
    rules = [e.rule for e in explanation.evaluations if e.matched]
    requested = explanation.requested_role_arn
    if requested and not any(rule.role_arn == requested for rule in rules):
        rules += [e.rule for e in explanation.evaluations if e.rule.role_arn == requested][:1]
    return [_verdict(rule, issuer=issuer, claims=claims, modules=(policies, iam_eval, sync)) for rule in rules]
