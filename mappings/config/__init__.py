"""Configuration as code (docs/configuration.md): parse and validate a YAML file, plan and apply it against
the registry, export the registry, and turn a file into matcher rules without a database.

- :func:`parse_document` — validated contents, or :class:`ConfigError` with every ``(path, message)``.
- :func:`compute_plan` / :func:`apply_document` — what would change / change it, all-or-nothing.
- :func:`export_document` — the registry as YAML that re-applies as a no-op.
- :func:`rules_from_document` — a proposed configuration as :class:`mappings.matching.Rule` objects.
"""

from __future__ import annotations

from mappings.config.document import ConfigError, Document, parse_document
from mappings.config.export import export_document
from mappings.config.plan import Plan, apply_document, compute_plan
from mappings.matching import Rule, RuleAccount
from mappings.selectors import RULE_FIELDS, build_role, build_rule

__all__ = [
    "ConfigError",
    "Document",
    "Plan",
    "apply_document",
    "compute_plan",
    "export_document",
    "parse_document",
    "rules_from_document",
]


def rules_from_document(text: str) -> list[Rule]:
    """The matcher rules a configuration file would produce, without touching the database.

    Rules are in file order; a rule's ``id`` is its mapping's position in the file, from 1, and
    its role's ``id`` the role's position (there are no database ids). Raises
    :class:`ConfigError` listing every problem with its path.
    """
    document = parse_document(text)
    accounts = {
        key: RuleAccount(
            name=item.values["name"],
            account_id=item.values["account_id"],
            mode=item.values["mode"],
            audience=item.values["audience"],
            source_identity=item.values["source_identity"],
        )
        for key, item in document.accounts.items()
    }
    # Each role once, shared by its mappings' rules.
    roles = {
        key: build_role(
            id=position,
            name=item.values["name"],
            max_session_seconds=item.values["max_session_seconds"],
            session_tags=item.values["session_tags"],
            account=accounts[item.values["account"]],
        )
        for position, (key, item) in enumerate(document.roles.items(), start=1)
    }
    return [
        build_rule(
            **{name: item.values[name] for name in RULE_FIELDS if name != "id"},
            id=position,  # no database id in a file: the mapping's position
            role=roles[item.values["role"]],
        )
        for position, item in enumerate(document.mappings.values(), start=1)
    ]
