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
from mappings.matching import Rule
from mappings.selectors import build_rule

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

    Rules are in file order; a rule's ``id`` is its mapping's position in the file, from 1 (there
    is no database id). Raises :class:`ConfigError` listing every problem with its path.
    """
    document = parse_document(text)
    rules = []
    for position, item in enumerate(document.mappings.values(), start=1):
        mapping = item.values
        role = document.roles[mapping["role"]].values
        account = document.accounts[role["account"]].values
        rules.append(
            build_rule(
                id=position,
                name=mapping["name"],
                issuer=mapping["issuer"],
                role_name=role["name"],
                account_name=account["name"],
                account_id=account["account_id"],
                account_mode=account["mode"],
                account_audience=account["audience"],
                max_session_seconds=role["max_session_seconds"],
                session_tags=role["session_tags"],
                project=mapping["project"],
                ref=mapping["ref"],
                ref_type=mapping["ref_type"],
                protected=mapping["protected"],
                environment=mapping["environment"],
                pipeline_sources=mapping["pipeline_sources"],
                expires_at=mapping["expires_at"],
                enabled=mapping["enabled"],
                ci_config_ref_uri=mapping["ci_config_ref_uri"],
                environment_protected=mapping["environment_protected"],
                deployment_tiers=mapping["deployment_tiers"],
                runner_environment=mapping["runner_environment"],
                account_source_identity=account["source_identity"],
                pin_identity=mapping["pin_identity"],
                project_id=mapping["project_id"],
                namespace_id=mapping["namespace_id"],
            )
        )
    return rules
