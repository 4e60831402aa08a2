"""The registry as a configuration document (``manage.py export``, docs/configuration.md#export);
re-applying it is a no-op."""

from __future__ import annotations

from typing import Any

import yaml

from mappings.config.document import FIELDS, PINS, SECTIONS
from mappings.config.plan import current_values, format_datetime, load_state

HEADER = "# Rolegate configuration (python manage.py export). Apply with: python manage.py apply FILE\n"


class _Dumper(yaml.SafeDumper):
    """Block-style YAML whose nested lists are indented under their key."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)


def export_data() -> dict[str, list[dict[str, Any]]]:
    state = load_state()
    data: dict[str, list[dict[str, Any]]] = {}
    for section in SECTIONS:
        items = []
        for key in sorted(state[section]):
            values = current_values(section, state[section][key])
            if section == "mappings" and values["expires_at"] is not None:
                values["expires_at"] = format_datetime(values["expires_at"])
            items.append({name: values[name] for name in FIELDS[section]})
        data[section] = items
    data[PINS] = [
        {
            "issuer": issuer,
            "kind": kind,
            "path": path,
            "id": pin.gitlab_id,
            "pinned_at": format_datetime(pin.pinned_at),
            "pinned_by": pin.pinned_by or None,
        }
        for (issuer, kind, path), pin in sorted(state[PINS].items())
    ]
    return data


def export_document() -> str:
    """Every issuer, account, role and mapping, with every field, and every identity pin, as YAML text."""
    body = yaml.dump(export_data(), Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return HEADER + body
