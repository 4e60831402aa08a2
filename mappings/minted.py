"""What a token minted by Rolegate says about a job (docs/api.md#the-minted-token).

Shared by the exchange, which mints the token, and the trust-policy generator, which must accept
exactly it: the ``sub`` formats, the session tags and their sanitising, the role session name.
Pure functions, no Django.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from mappings.claims import SESSION_TAGS

MAX_SUB_LENGTH = 255
TAGS_CLAIM = "https://aws.amazon.com/tags"
MAPPING_CLAIM = "rolegate_mapping"
# Principal tag keys, in the order they are written: the catalogue's session-tag claims, then the
# mapping's name.
PRINCIPAL_TAG_KEYS = (*SESSION_TAGS, "mapping")
MAX_TAG_VALUE_LENGTH = 256
# AWS tag values: Unicode letters, digits, whitespace and _ . : / = + - @
# https://docs.aws.amazon.com/IAM/latest/UserGuide/id_session-tags.html
_TAG_VALUE_DISALLOWED = re.compile(r"[^\w\s.:/=+\-@]", re.UNICODE)
_SESSION_NAME_DISALLOWED = re.compile(r"[^\w+=,.@-]")


def minted_sub(issuer_name: str, project_path: str, ref_type: str, ref: str) -> str:
    """``sub`` of a token Rolegate mints; trust policies of brokered accounts match on it."""
    return f"{issuer_name}:project_path:{project_path}:ref_type:{ref_type}:ref:{ref}"


def gitlab_sub(project_path: str, ref_type: str, ref: str) -> str:
    """GitLab's default ``sub``; trust policies of direct-mode accounts match on it."""
    return f"project_path:{project_path}:ref_type:{ref_type}:ref:{ref}"


def sanitize_tag_value(value: str) -> str:
    """A claim value made acceptable as an AWS tag value: other characters become ``_``, and the
    value is cut to 256 characters. The policy generator applies the same to literal patterns."""
    return _TAG_VALUE_DISALLOWED.sub("_", value)[:MAX_TAG_VALUE_LENGTH]


def principal_tags(claims: Mapping[str, object], mapping_name: str) -> dict[str, list[str]]:
    """The ``principal_tags`` of the session-tags claim: each a single-element string array."""
    values: dict[str, object] = {key: claims.get(key) for key in PRINCIPAL_TAG_KEYS if key != "mapping"}
    values["mapping"] = mapping_name
    return {key: [sanitize_tag_value(value)] for key, value in values.items() if isinstance(value, str)}


def session_tags_claim(claims: Mapping[str, object], mapping_name: str) -> dict[str, object]:
    """The ``https://aws.amazon.com/tags`` claim for a role with ``session_tags``."""
    tags = principal_tags(claims, mapping_name)
    return {"principal_tags": tags, "transitive_tag_keys": sorted(tags)}


def role_session_name(project_id: object, job_id: object) -> str:
    """``gl-<project_id>-<job_id>``, fitting STS's ``[\\w+=,.@-]{2,64}``."""
    name = f"gl-{project_id}-{job_id}"
    return _SESSION_NAME_DISALLOWED.sub("_", name)[:64]
