"""What a token minted by Rolegate says about a job and the role it is for (docs/api.md#the-minted-token,
docs/trust-model.md#one-token-one-role).

Shared by the exchange, which mints the token, and the trust-policy generator, which must accept
exactly it: the ``sub`` formats, the session tags (exact values or none), the role session name.
Pure functions, no Django.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

from mappings.claims import SESSION_TAGS

MAX_SUB_LENGTH = 255
TAGS_CLAIM = "https://aws.amazon.com/tags"
SOURCE_IDENTITY_CLAIM = "https://aws.amazon.com/source_identity"
# STS's SourceIdentity: 2-64 of [\w+=,.@-] (ASCII word characters).
# https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html (SourceIdentity)
_SOURCE_IDENTITY = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)
MAPPING_CLAIM = "rolegate_mapping"
# Principal tag keys, in the order they are written: the catalogue's session-tag claims, then the
# mapping's name.
PRINCIPAL_TAG_KEYS = (*SESSION_TAGS, "mapping")
MAX_TAG_VALUE_LENGTH = 256
# AWS tag values: [\p{L}\p{Z}\p{N}_.:/=+\-@]*, at most 256 characters. Unicode letters, separators
# (spaces) and numbers, by general category: NOT Python's \s, which also holds TAB, LF, VT, FF, CR,
# U+001C-U+001F and U+0085 (category Cc), all of which STS refuses.
# https://docs.aws.amazon.com/IAM/latest/UserGuide/id_session-tags.html
# https://docs.aws.amazon.com/STS/latest/APIReference/API_Tag.html
TAG_VALUE_SYMBOLS = frozenset("_.:/=+-@")
_TAG_VALUE_CATEGORIES = frozenset("LZN")
# STS's RoleSessionName: [\w+=,.@-]{2,64} with ASCII word characters, like SourceIdentity above.
_SESSION_NAME_DISALLOWED = re.compile(r"[^\w+=,.@-]", re.ASCII)
ROLE_MARKER = ":role:"


def role_binding(account_id: str, role_name: str) -> str:
    r"""The last field of a minted ``sub``: the one role the token is for. Neither an account id
    (12 digits) nor an IAM role name (``[\w+=,.@-]``) holds ``:``, ``*`` or ``?``, so a trust
    policy pattern ending in ``:role:<this>`` admits no token minted for another role, whatever
    wildcards come before it (docs/trust-model.md, "Role-bound tokens and session tags")."""
    return f"{ROLE_MARKER}{account_id}/{role_name}"


def minted_sub(issuer_name: str, project_path: str, ref_type: str, ref: str, *, account_id: str, role_name: str) -> str:
    """``sub`` of a token Rolegate mints for the role ``role_name`` in ``account_id``; trust
    policies of brokered accounts match on it. The role is always the last field."""
    return (
        f"{issuer_name}:project_path:{project_path}:ref_type:{ref_type}:ref:{ref}{role_binding(account_id, role_name)}"
    )


def gitlab_sub(project_path: str, ref_type: str, ref: str) -> str:
    """GitLab's default ``sub``; trust policies of direct-mode accounts match on it."""
    return f"project_path:{project_path}:ref_type:{ref_type}:ref:{ref}"


def tag_char(char: str) -> bool:
    """Whether ``char`` may appear in an AWS tag value."""
    return char in TAG_VALUE_SYMBOLS or unicodedata.category(char)[0] in _TAG_VALUE_CATEGORIES


# The tag character set's ASCII part, derived from tag_char (letters, digits, the space and the
# symbols): one regex for the usual, ASCII, value or pattern instead of a loop per character.
_ASCII_TAG_CHARS = "".join(c for c in map(chr, range(128)) if tag_char(c))
_ASCII_TAG_VALUE = re.compile(f"[{re.escape(_ASCII_TAG_CHARS)}]*")
_ASCII_TAG_PATTERN = re.compile(f"[{re.escape(_ASCII_TAG_CHARS + '*?')}]*")


def taggable(value: object) -> bool:
    """Whether ``value`` can be an AWS tag value exactly as it is: a string of at most 256
    characters, each in the tag character set (:func:`tag_char`). Anything else is carried as no
    tag at all: a rewritten stand-in could equal another job's value (``prod{eu`` and ``prod_eu``)."""
    if not isinstance(value, str) or len(value) > MAX_TAG_VALUE_LENGTH:
        return False
    if value.isascii():
        return _ASCII_TAG_VALUE.fullmatch(value) is not None
    return all(tag_char(c) for c in value)


def untaggable_pattern_chars(pattern: str) -> str:
    """The characters of a pattern on a tagged claim that no tag value can hold (wildcards
    aside), each once, in order; empty when IAM can compare the pattern with the tag as written.
    Checked for every tag condition of every candidate rule on every exchange: ASCII patterns
    take one regex."""
    if pattern.isascii() and _ASCII_TAG_PATTERN.fullmatch(pattern):
        return ""
    seen: dict[str, None] = {}
    for char in pattern:
        if char not in "*?" and not tag_char(char):
            seen.setdefault(char)
    return "".join(seen)


def principal_tags(claims: Mapping[str, object], mapping_name: str) -> dict[str, list[str]]:
    """The ``principal_tags`` of the session-tags claim: each a single-element string array
    holding the claim's exact value; a claim that is absent or not :func:`taggable` has no tag."""
    values: dict[str, object] = {key: claims.get(key) for key in PRINCIPAL_TAG_KEYS if key != "mapping"}
    values["mapping"] = mapping_name
    return {key: [value] for key, value in values.items() if isinstance(value, str) and taggable(value)}


def session_tags_claim(claims: Mapping[str, object], mapping_name: str) -> dict[str, object]:
    """The ``https://aws.amazon.com/tags`` claim for a role with ``session_tags``."""
    tags = principal_tags(claims, mapping_name)
    return {"principal_tags": tags, "transitive_tag_keys": sorted(tags)}


def role_session_name(project_id: object, job_id: object) -> str:
    """``gl-<project_id>-<job_id>``, fitting STS's ``[\\w+=,.@-]{2,64}`` (``\\w`` ASCII)."""
    name = f"gl-{project_id}-{job_id}"
    return _SESSION_NAME_DISALLOWED.sub("_", name)[:64]


def source_identity(claims: Mapping[str, object]) -> str | None:
    """The source identity of a token minted for an account with ``source_identity`` on:
    ``gl-<project_id>-<job_id>``, the job that started the session (docs/trust-model.md,
    "Source identity"). Built from verified claims only and never rewritten: when the ids do not
    make a valid source identity as they are (GitLab's are digits, so they always do), ``None``,
    and the token carries none rather than a stand-in that could name another job."""
    project_id, job_id = claims.get("project_id"), claims.get("job_id")
    if not isinstance(project_id, str) or not isinstance(job_id, str):
        return None
    value = f"gl-{project_id}-{job_id}"
    return value if _SOURCE_IDENTITY.fullmatch(value) else None
