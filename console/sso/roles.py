"""GitLab groups -> console roles -> Django groups and permissions, synced on every sign-in.

Two roles, each given by the GitLab groups configured for it:

- ``admins`` (``ROLEGATE_OIDC_ADMIN_GROUPS``): staff with every permission on the registry
  (issuers, accounts, roles, mappings), the audit trail (view) and API tokens;
- ``auditors`` (``ROLEGATE_OIDC_AUDITOR_GROUPS``): staff with the view permissions only.

A user signed in with GitLab gets exactly the roles of their current groups: nothing stays from a
previous sign-in, and nobody becomes a superuser this way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.db import transaction

# The apps whose permissions the roles hand out (not auth: users are managed by GitLab).
APPS = ("mappings", "exchange", "console")
DJANGO_GROUPS = {"admins": "Rolegate admins", "auditors": "Rolegate auditors"}


@dataclass(frozen=True)
class RoleConfig:
    role: str
    gitlab_groups: tuple[str, ...]


def configured_roles() -> list[RoleConfig]:
    return [
        RoleConfig("admins", tuple(settings.ROLEGATE_OIDC_ADMIN_GROUPS)),
        RoleConfig("auditors", tuple(settings.ROLEGATE_OIDC_AUDITOR_GROUPS)),
    ]


def accepted_groups() -> list[tuple[str, str]]:
    """(GitLab group, role) for every configured group, for the refusal page."""
    return [(group, config.role) for config in configured_roles() for group in config.gitlab_groups]


def roles_for_groups(gitlab_groups: Iterable[str]) -> set[str]:
    """The roles a member of ``gitlab_groups`` has. GitLab group paths are case-insensitive."""
    member_of = {group.strip().casefold() for group in gitlab_groups if isinstance(group, str)}
    return {
        config.role
        for config in configured_roles()
        if any(group.strip().casefold() in member_of for group in config.gitlab_groups)
    }


def role_permissions(role: str):
    permissions = Permission.objects.filter(content_type__app_label__in=APPS)
    if role == "auditors":
        permissions = permissions.filter(codename__startswith="view_")
    return permissions


@transaction.atomic
def console_roles_ensure() -> dict[str, Group]:
    """The Django group of each role, holding exactly the role's permissions."""
    groups = {}
    for role, name in DJANGO_GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set(role_permissions(role))
        groups[role] = group
    return groups


@transaction.atomic
def user_roles_sync(*, user, roles: set[str]) -> None:
    """Give ``user`` exactly ``roles`` (staff when any), taking away any other role group."""
    groups = console_roles_ensure()
    user.is_staff = bool(roles)
    user.is_superuser = False
    user.save(update_fields=["is_staff", "is_superuser"])
    user.groups.remove(*[group for role, group in groups.items() if role not in roles])
    user.groups.add(*[group for role, group in groups.items() if role in roles])
