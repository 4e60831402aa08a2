"""Guardrails per account: limits every mapping and role of an account must keep (pure, no I/O).

A platform team running production accounts sets them once on the account; every write path
(admin, ``apply``, the registry services any API uses) refuses a mapping or role that breaks
them, with the field at fault and a sentence saying which guardrail and why. Documented in
docs/configuration.md, "Guardrails".

- ``require_protected``: every mapping requires ``protected: true``.
- ``forbid_pipeline_sources``: every mapping lists the pipeline sources it accepts, none of them
  forbidden (an empty list means any source, forbidden ones included).
- ``max_project_breadth``: ``any`` (no limit), ``namespace`` (a project pattern stays inside one
  top-level namespace: no ``*``, ``*/*`` or leading wildcard) or ``project`` (one exact project).
  In a brokered account a ``project_id`` makes a mapping one project and a ``namespace_id`` one
  namespace, whatever its pattern (IAM checks the ids there, or the mapping grants nothing).
- ``require_environment``: every mapping has an ``environment`` pattern.
- ``max_session_seconds``: no role of the account allows longer sessions.
- ``require_ci_config_ref_uri``: a pattern; every mapping has a ``ci_config_ref_uri`` pattern that
  it covers (``patterns.subsumes``), so the account's roles go only to jobs that ran a pipeline
  definition the platform team accepts (its own reviewed one, say).

One rule comes from the account's mode rather than a guardrail (``mode``): in a direct account
IAM checks GitLab's own token on its project path alone and cannot see ``project_id`` or
``namespace_id``, so a mapping there that names an id must still name its project path (a pattern
narrower than ``*``): bound by id alone, IAM would admit every project of the GitLab instance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mappings import patterns

ANY, NAMESPACE, PROJECT = "any", "namespace", "project"
MODE = "mode"  # the Violation.guardrail of the direct-mode rule above (an account field, not a guardrail)
_BREADTH_ORDER = {PROJECT: 0, NAMESPACE: 1, ANY: 2}

# The guardrails as they appear under ``accounts[].guardrails`` (and as Account fields), in order.
NAMES = (
    "require_protected",
    "forbid_pipeline_sources",
    "max_project_breadth",
    "require_environment",
    "max_session_seconds",
    "require_ci_config_ref_uri",
)
# The guardrails IAM can enforce only through session tags (brokered accounts).
TAG_CONDITIONS = ("require_protected", "forbid_pipeline_sources", "require_environment", "require_ci_config_ref_uri")


@dataclass(frozen=True, slots=True)
class Guardrails:
    require_protected: bool = False
    forbid_pipeline_sources: tuple[str, ...] = ()
    max_project_breadth: str = ANY
    require_environment: bool = False
    max_session_seconds: int | None = None
    require_ci_config_ref_uri: str | None = None

    @classmethod
    def of(cls, source: object) -> Guardrails:
        """The guardrails of an Account (or anything with the same attributes, or a dict)."""
        get = source.get if isinstance(source, Mapping) else lambda name, default=None: getattr(source, name, default)
        return cls(
            require_protected=bool(get("require_protected", False)),
            forbid_pipeline_sources=tuple(get("forbid_pipeline_sources", None) or ()),
            max_project_breadth=get("max_project_breadth", ANY) or ANY,
            require_environment=bool(get("require_environment", False)),
            max_session_seconds=get("max_session_seconds", None),
            require_ci_config_ref_uri=get("require_ci_config_ref_uri", None) or None,
        )

    @property
    def tag_conditions(self) -> list[str]:
        """The guardrails set here that need IAM to read session tags."""
        return [name for name in TAG_CONDITIONS if getattr(self, name)]


@dataclass(frozen=True, slots=True)
class Violation:
    """A field of a mapping or role that breaks the guardrail ``guardrail``."""

    field: str
    guardrail: str
    message: str


def project_breadth(pattern: str) -> str:
    """The narrowest breadth that contains every project ``pattern`` matches.

    ``project``: no wildcard, one project. ``namespace``: the characters before the first wildcard
    include a '/', so every match lies in that one top-level namespace (and its subgroups).
    ``any``: the pattern can match projects of several namespaces (``*``, ``*/web``, ``plat*``).
    """
    if not patterns.has_wildcards(pattern):
        return PROJECT
    return NAMESPACE if "/" in patterns.literal_prefix(pattern) else ANY


def allows_breadth(limit: str, breadth: str) -> bool:
    return _BREADTH_ORDER[breadth] <= _BREADTH_ORDER[limit]


def mapping_breadth(project: str, *, project_id: str | None, namespace_id: str | None, direct: bool) -> str:
    """The narrowest breadth containing every project a mapping grants to: its pattern's, narrowed
    by the ids it names where IAM checks them too (a brokered account)."""
    breadth = project_breadth(project)
    if direct:
        return breadth
    if project_id is not None:
        return PROJECT
    if namespace_id is not None and breadth == ANY:
        return NAMESPACE
    return breadth


def mapping_violations(
    guardrails: Guardrails,
    *,
    project: str | None,
    protected: bool,
    environment: str | None,
    pipeline_sources: Sequence[str],
    ci_config_ref_uri: str | None = None,
    project_id: str | None = None,
    namespace_id: str | None = None,
    direct: bool = False,
    account: str = "the account",
) -> list[Violation]:
    """What in a mapping with these fields breaks ``guardrails`` or the account's mode (empty when
    nothing does); ``direct``: the account is in direct mode."""
    found: list[Violation] = []
    ids = [name for name, value in (("project_id", project_id), ("namespace_id", namespace_id)) if value is not None]
    if direct and ids and project is not None and project_breadth(project) == ANY:
        found.append(
            Violation(
                "project",
                MODE,
                f"{account} is in direct mode: IAM checks GitLab's own token there, on the project path alone, and "
                f"cannot see {' or '.join(ids)}, so the project pattern {project!r} would let every project of the "
                "GitLab instance assume the role; give the project path (a pattern within one namespace, or the "
                "exact path)",
            )
        )
    if guardrails.require_protected and not protected:
        found.append(
            Violation(
                "protected",
                "require_protected",
                f"{account} requires protected: true on every mapping (guardrail require_protected), "
                "so only protected branches and tags get its roles",
            )
        )
    forbidden = guardrails.forbid_pipeline_sources
    if forbidden:
        if not pipeline_sources:
            found.append(
                Violation(
                    "pipeline_sources",
                    "forbid_pipeline_sources",
                    f"{account} forbids the pipeline sources {', '.join(forbidden)} (guardrail "
                    "forbid_pipeline_sources); an empty list means any source, so list the ones this mapping accepts",
                )
            )
        elif bad := [source for source in pipeline_sources if source in forbidden]:
            found.append(
                Violation(
                    "pipeline_sources",
                    "forbid_pipeline_sources",
                    f"{account} forbids the pipeline source(s) {', '.join(bad)} (guardrail forbid_pipeline_sources)",
                )
            )
    breadth = (
        None
        if project is None
        else mapping_breadth(project, project_id=project_id, namespace_id=namespace_id, direct=direct)
    )
    if breadth is not None and not allows_breadth(guardrails.max_project_breadth, breadth):
        if guardrails.max_project_breadth == PROJECT:
            why = "a single project without wildcards" + ("" if direct else ", or a project_id")
        else:
            why = "patterns inside one namespace, such as 'platform/*' (not '*', '*/*' or a leading wildcard)" + (
                "" if direct else ", or a namespace_id or project_id"
            )
        found.append(
            Violation(
                "project",
                "max_project_breadth",
                f"{account} allows only {why} (guardrail max_project_breadth: {guardrails.max_project_breadth})",
            )
        )
    if guardrails.require_environment and environment is None:
        found.append(
            Violation(
                "environment",
                "require_environment",
                f"{account} requires an environment pattern on every mapping (guardrail require_environment), "
                "so only deployment jobs get its roles",
            )
        )
    required = guardrails.require_ci_config_ref_uri
    if required is not None and (ci_config_ref_uri is None or not patterns.subsumes(required, ci_config_ref_uri)):
        found.append(
            Violation(
                "ci_config_ref_uri",
                "require_ci_config_ref_uri",
                f"{account} requires a ci_config_ref_uri pattern within {required!r} on every mapping (guardrail "
                "require_ci_config_ref_uri), so only jobs that ran an accepted pipeline definition get its roles"
                + ("" if ci_config_ref_uri is None else f"; {ci_config_ref_uri!r} is broader"),
            )
        )
    return found


def role_violations(
    guardrails: Guardrails, *, max_session_seconds: int | None, account: str = "the account"
) -> list[Violation]:
    cap = guardrails.max_session_seconds
    if cap is not None and max_session_seconds is not None and max_session_seconds > cap:
        return [
            Violation(
                "max_session_seconds",
                "max_session_seconds",
                f"{account} caps sessions at {cap} seconds (guardrail max_session_seconds); "
                f"{max_session_seconds} is longer",
            )
        ]
    return []
