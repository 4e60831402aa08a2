"""The GitLab CI ID token claims Rolegate knows: the one catalogue.

Each claim says its JSON type in GitLab's tokens and what Rolegate does with it: whether a token
without it is refused, how it is checked, whether a minted token carries it (with Rolegate's own
value or copied unchanged), whether it becomes a session tag, whether the audit event keeps it,
whether the console's explain page shows it. Every list of claim names in Rolegate is derived
here: the verification in ``exchange.gitlab``, the minted token and its session tags in
``mappings.minted``, the audit event in ``exchange.audit``, discovery's ``claims_supported``,
the console's explain page and replay. See ``docs/api.md`` ("The minted token") and
``docs/trust-model.md``.

Pure data, no Django.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum


class JsonType(Enum):
    STRING = "string"
    NUMBER = "number"
    AUDIENCE = "string or array of strings"


class Minted(Enum):
    """What a token minted by Rolegate does with the claim."""

    NO = "no"  # not in minted tokens
    OWN = "own"  # present with Rolegate's own value (iss, aud, sub, ...)
    COPIED = "copied"  # copied from the GitLab token unchanged, JSON type included


@dataclass(frozen=True)
class Claim:
    name: str
    json_type: JsonType
    required: bool = False  # a token without it is refused (missing_claim)
    # Checked by PyJWT (signature-time RFC 7519 checks: iss, aud, exp, iat, nbf) rather than by
    # Rolegate's own string checks.
    registered: bool = False
    max_length: int = 255  # strings checked by Rolegate: longer is invalid_claim
    values: tuple[str, ...] = ()  # when given, the only values accepted
    in_sub: bool = False  # part of the minted sub (and of GitLab's default sub)
    no_colon: bool = False  # free text in the sub, where ':' would make it ambiguous
    minted: Minted = Minted.NO
    session_tag: bool = False  # a principal session tag of minted tokens (roles with session_tags)
    audited: bool = False  # kept in the audit event: enough to re-decide the request later
    audit_filter: bool = False  # an exact-match filter of the audit API
    explained: bool = False  # shown on the console's explain page

    @property
    def checked_string(self) -> bool:
        """A string claim that Rolegate checks itself (type, length, values) once verified."""
        return self.json_type is JsonType.STRING and not self.registered


# The range of a NUMBER claim (a NumericDate, RFC 7519 §2): 0 up to the last second of year
# 9999, the largest time Python's datetime and the database hold. Larger values (exp = 10**400),
# infinities and NaN are refused as invalid_claim before any time arithmetic is done with them.
NUMBER_RANGE = (0, 253_402_300_799)
# Characters a string checked by Rolegate never holds: NUL, which PostgreSQL text cannot store
# (such a jti could not be spent: a 503 without an audit event). Lone surrogates (a "\ud800" JSON
# escape) are refused too: not Unicode text. Other control characters are kept as the issuer
# signed them and shown escaped (exchange.safe_text).
FORBIDDEN_IN_STRINGS = frozenset({"\x00"})

_STRING = JsonType.STRING
_NUMBER = JsonType.NUMBER

# In checking order: the first failing check names the claim in the refusal.
CATALOGUE: tuple[Claim, ...] = (
    Claim("iss", _STRING, required=True, registered=True, minted=Minted.OWN, audited=True, explained=True),
    Claim("exp", _NUMBER, required=True, registered=True, minted=Minted.OWN),
    Claim("iat", _NUMBER, required=True, registered=True, minted=Minted.OWN),
    Claim("nbf", _NUMBER, registered=True, minted=Minted.OWN),
    Claim("aud", JsonType.AUDIENCE, required=True, registered=True, minted=Minted.OWN),
    Claim("jti", _STRING, required=True, minted=Minted.OWN, audited=True),
    Claim("sub", _STRING, required=True, minted=Minted.OWN, audited=True),
    Claim(
        "project_path",
        _STRING,
        required=True,
        in_sub=True,
        no_colon=True,
        minted=Minted.COPIED,
        session_tag=True,
        audited=True,
        audit_filter=True,
        explained=True,
    ),
    # GitLab's immutable ids (docs/trust-model.md, "Ids GitLab never reuses"): always sent, as JSON
    # strings of digits, so a session tag carries them exactly. A mapping may require them.
    Claim(
        "project_id",
        _STRING,
        required=True,
        max_length=64,
        minted=Minted.COPIED,
        session_tag=True,
        audited=True,
        explained=True,
    ),
    Claim(
        "namespace_path", _STRING, required=True, minted=Minted.COPIED, session_tag=True, audited=True, explained=True
    ),
    Claim(
        "ref",
        _STRING,
        required=True,
        in_sub=True,
        no_colon=True,
        minted=Minted.COPIED,
        session_tag=True,
        audited=True,
        explained=True,
    ),
    Claim(
        "ref_type",
        _STRING,
        required=True,
        values=("branch", "tag"),
        in_sub=True,
        minted=Minted.COPIED,
        session_tag=True,
        audited=True,
        explained=True,
    ),
    Claim(
        "ref_protected",
        _STRING,
        required=True,
        values=("true", "false"),
        minted=Minted.COPIED,
        session_tag=True,
        audited=True,
        explained=True,
    ),
    Claim("environment", _STRING, minted=Minted.COPIED, session_tag=True, audited=True, explained=True),
    Claim(
        "pipeline_source",
        _STRING,
        required=True,
        max_length=64,
        minted=Minted.COPIED,
        session_tag=True,
        audited=True,
        explained=True,
    ),
    Claim("pipeline_id", _STRING, required=True, max_length=64, minted=Minted.COPIED, audited=True, audit_filter=True),
    Claim(
        "job_id",
        _STRING,
        required=True,
        max_length=64,
        minted=Minted.COPIED,
        audited=True,
        audit_filter=True,
        explained=True,
    ),
    Claim("user_login", _STRING, minted=Minted.COPIED, audited=True, audit_filter=True, explained=True),
    # Conditions on the pipeline definition, the environment and the runner (docs/trust-model.md,
    # "Conditions and who enforces them"): GitLab sends each as a JSON string, only where it applies
    # (environment_protected and deployment_tier only for jobs with an environment). Their values are
    # not enumerated here: a value GitLab adds later fails the conditions that name others, it does
    # not refuse the token for every mapping. A wrong JSON type is refused (invalid_claim).
    Claim(
        "ci_config_ref_uri",
        _STRING,
        max_length=1024,
        minted=Minted.COPIED,
        session_tag=True,
        audited=True,
        explained=True,
    ),
    Claim(
        "environment_protected",
        _STRING,
        max_length=16,
        minted=Minted.COPIED,
        session_tag=True,
        audited=True,
        explained=True,
    ),
    Claim(
        "deployment_tier",
        _STRING,
        max_length=64,
        minted=Minted.COPIED,
        session_tag=True,
        audited=True,
        explained=True,
    ),
    Claim(
        "runner_environment",
        _STRING,
        max_length=64,
        minted=Minted.COPIED,
        session_tag=True,
        audited=True,
        explained=True,
    ),
    # The id of the project's namespace (group, subgroup or user), which GitLab never reuses: a
    # freed namespace path claimed by someone else gets a new id. GitLab sends it in every CI ID
    # token, as a JSON string of digits. Not required: only a mapping that names namespace_id needs
    # it, and such a mapping already fails on a token without it (an absent claim never matches,
    # in Rolegate or in IAM, where it is no tag); requiring it would refuse such a token for every
    # mapping instead. A wrong JSON type is refused (invalid_claim). Identity pins on the namespace
    # compare this verified string too (docs/trust-model.md, "Identity pins").
    Claim(
        "namespace_id",
        _STRING,
        max_length=64,
        minted=Minted.COPIED,
        session_tag=True,
        audited=True,
        explained=True,
    ),
)

BY_NAME: dict[str, Claim] = {claim.name: claim for claim in CATALOGUE}


def _names(*, where: Callable[[Claim], bool]) -> tuple[str, ...]:
    return tuple(claim.name for claim in CATALOGUE if where(claim))


# Derived lists, in catalogue order. Nothing else in Rolegate spells them out.
REQUIRED_BY_PYJWT = _names(where=lambda c: c.registered and c.required)
NUMBERS = _names(where=lambda c: c.json_type is JsonType.NUMBER)
# Rolegate's own string checks: the required ones first (a missing claim is named before a bad one).
REQUIRED_STRINGS = _names(where=lambda c: c.checked_string and c.required)
OPTIONAL_STRINGS = _names(where=lambda c: c.checked_string and not c.required)
ENUMERATED = _names(where=lambda c: bool(c.values))
IN_SUB = _names(where=lambda c: c.in_sub)
NO_COLON = _names(where=lambda c: c.no_colon)
COPIED = _names(where=lambda c: c.minted is Minted.COPIED)
IN_MINTED_TOKENS = _names(where=lambda c: c.minted is not Minted.NO)
SESSION_TAGS = _names(where=lambda c: c.session_tag)
AUDITED = _names(where=lambda c: c.audited)
AUDIT_FILTERS = _names(where=lambda c: c.audit_filter)
EXPLAINED = _names(where=lambda c: c.explained)
