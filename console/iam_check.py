"""Would IAM accept the token under the role's generated trust policy? (explain/simulate)

Defence in depth made visible: Rolegate's matcher decides, and the trust policy the IAM sync
generates for the role (``mappings.iam.selectors.role_desired_policy``) must agree; the IAM sync's
evaluator (``mappings.iam_eval``) answers for IAM.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from django.conf import settings

from console.explain import Explanation
from mappings import iam_eval, policies
from mappings.claims import IN_SUB
from mappings.iam.selectors import role_desired_policy
from mappings.matching import Rule
from mappings.models import Issuer, Role


@dataclass(frozen=True)
class IamVerdict:
    role_arn: str
    mapping: str
    allowed: bool | None  # None: cannot tell (see detail)
    detail: str
    unchecked: tuple[str, ...] = ()  # the mapping's conditions IAM cannot check (the matcher does)


def _role(rule: Rule) -> Role | None:
    roles = Role.objects.select_related("account")
    return roles.filter(account__account_id=rule.account_id, name=rule.role_name).first()


def iam_verdict(rule: Rule, *, issuer: Issuer, claims: Mapping[str, object]) -> IamVerdict:
    """IAM's answer for ``claims`` under ``rule``'s role's generated trust policy: the token
    Rolegate would mint (brokered account) or the GitLab token itself (direct account)."""
    role = _role(rule)
    if role is None:
        return IamVerdict(rule.role_arn, rule.name, None, "The role is not in the registry.")
    missing = [name for name in IN_SUB if not isinstance(claims.get(name), str)]
    if missing:
        return IamVerdict(rule.role_arn, rule.name, False, f"The token lacks {', '.join(missing)}.")
    result = role_desired_policy(role)
    if not result.fits:
        return IamVerdict(rule.role_arn, rule.name, None, result.message)
    try:
        if rule.account_mode == policies.DIRECT:
            # The job's own token reaches STS: its aud is the job's id_tokens aud.
            token_aud = claims.get("aud")
            aud = token_aud if isinstance(token_aud, str) else (issuer.audiences or [""])[0]
            allowed = iam_eval.gitlab_token_allowed(
                result.document,
                issuer_url=issuer.url,
                account_id=rule.account_id,
                aud=aud,
                claims=claims,
            )
            how = "the GitLab token sent to STS directly (direct-mode account)"
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
                role_name=rule.role_name,
                source_identity=rule.account_source_identity,
            )
            how = "the token Rolegate would mint"
    except iam_eval.UnsupportedPolicy as exc:
        return IamVerdict(rule.role_arn, rule.name, None, f"The evaluator cannot judge this policy: {exc}")
    detail = f"The generated trust policy {'allows' if allowed else 'denies'} {how}."
    unchecked = result.mapping_warnings.get(rule.name, ())
    if unchecked:
        detail += " IAM cannot check: " + "; ".join(unchecked) + " (Rolegate's matcher does)."
    return IamVerdict(rule.role_arn, rule.name, allowed, detail, tuple(unchecked))


def trust_policy_verdicts(
    *, issuer: Issuer, claims: Mapping[str, object], explanation: Explanation
) -> list[IamVerdict]:
    """A verdict for each matching mapping and, when the requested role has none, for that role
    under its first mapping."""
    rules = [e.rule for e in explanation.evaluations if e.matched]
    requested = explanation.requested_role_arn
    if requested and not any(rule.role_arn == requested for rule in rules):
        rules += [e.rule for e in explanation.evaluations if e.rule.role_arn == requested][:1]
    return [iam_verdict(rule, issuer=issuer, claims=claims) for rule in rules]


def decision_verdict(*, issuer: Issuer, claims: Mapping[str, object], explanation: Explanation) -> IamVerdict | None:
    """IAM's answer for the role explain decided about: the granting mapping's role, or when
    denied, the requested role under its first mapping; ``None`` when no managed role is in question."""
    rule = explanation.decision.rule
    requested = explanation.requested_role_arn
    if rule is None and requested:
        rule = next((e.rule for e in explanation.evaluations if e.rule.role_arn == requested), None)
    return iam_verdict(rule, issuer=issuer, claims=claims) if rule is not None else None
