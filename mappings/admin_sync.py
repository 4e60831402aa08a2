"""IAM sync state in the admin: mixins the registry admin puts first in its bases.

``RoleSyncAdminMixin`` adds an "IAM sync" section (state, the desired policy pretty-printed, its
size against the quota, a diff against the policy last seen in IAM, warnings) and a "sync now"
action; ``AccountSyncAdminMixin`` does the same for the account's OIDC provider(s). Both combine
with whatever ``readonly_fields``, ``fieldsets`` and ``actions`` the ModelAdmin declares.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from mappings import policies
from mappings.iam import outcomes, revocations, scheduling
from mappings.iam.selectors import account_providers, policy_diff, role_desired_policy, role_label
from mappings.models import Account, Role

SECTION = "IAM sync"
SECTION_HELP = {
    "role": (
        "What Rolegate last wrote to this role's trust policy in IAM. 'pending' means the current "
        "mappings are not in IAM yet: a worker syncs them after every change (with a broker); "
        "without one, select the role in the list and run the 'Sync IAM now' action, or "
        "<code>python manage.py sync_iam</code>. The worker's drift scan repairs hand edits every 15 minutes."
    ),
    "account": (
        "The account's IAM OIDC provider(s) the roles' trust policies point at; "
        "'Sync IAM now' in the list, or <code>python manage.py sync_iam --account NAME</code>, creates or updates them."
    ),
}


_Synced = TypeVar("_Synced", bound=Role | Account)


class _SyncAdminMixin(admin.ModelAdmin[_Synced], Generic[_Synced]):
    sync_fields: tuple[str, ...] = ()
    sync_help: str = ""
    # Model fields a sync field shows in a friendlier form (kept out of the other sections).
    shown_as: tuple[str, ...] = ()

    def get_readonly_fields(self, request: HttpRequest, obj: _Synced | None = None) -> list[str] | tuple[str, ...]:
        fields = list(super().get_readonly_fields(request, obj))
        return fields + [name for name in self.sync_fields if name not in fields]

    def get_fieldsets(self, request: HttpRequest, obj: _Synced | None = None) -> list[Any]:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:  # nothing synced yet on the add form
            return [(name, {**opts, "fields": self._without_sync(opts["fields"])}) for name, opts in fieldsets]
        cleaned = [(name, {**opts, "fields": self._without_sync(opts["fields"])}) for name, opts in fieldsets]
        return [*cleaned, (SECTION, {"fields": self.sync_fields, "description": self.sync_help})]

    def _without_sync(self, fields: Sequence[Any]) -> list[Any]:
        return [f for f in fields if f not in self.sync_fields and f not in self.shown_as]

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if self.has_change_permission(request):
            # django-stubs types a Django 5 action as returning str; Django lets it return None.
            actions["sync_iam_now"] = (type(self).sync_iam_now, "sync_iam_now", "Sync IAM now")  # type: ignore[assignment]
        return actions

    def sync_iam_now(self, request: HttpRequest, queryset: QuerySet[_Synced]) -> None:
        """The "Sync IAM now" action (each admin below says what it syncs)."""
        raise NotImplementedError

    def _request_sync(self, request: HttpRequest, target: Role | Account) -> None:
        """Queue (with a broker) or run (without) the sync of ``target``, and say what happened."""
        for line in scheduling.sync_request(target):
            if line.outcome == outcomes.FAILED:
                level = messages.ERROR
            elif line.outcome in (outcomes.QUEUED, outcomes.ALREADY_QUEUED):
                level = messages.INFO
            else:
                level = messages.SUCCESS
            self.message_user(request, line.text(), level)


class RoleSyncAdminMixin(_SyncAdminMixin[Role]):
    """Sync state, policy preview, diff and "sync now" on the role admin."""

    sync_fields = (
        "sync_status",
        "synced_at",
        "drift_state",
        "shrink_only_state",
        "last_error",
        "live_policy_sha256",
        "policy_size_vs_quota",
        "iam_warnings",
        "desired_policy",
        "policy_diff",
        "session_revocation",
    )
    sync_help = SECTION_HELP["role"]
    shown_as = ("drift", "missing_mappings", "sessions_revoked_before")

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if self.has_change_permission(request):
            actions["revoke_sessions_now"] = (
                type(self).revoke_sessions_now,
                "revoke_sessions_now",
                "Revoke live sessions now (deny every session issued before now)",
            )
        return actions

    def revoke_sessions_now(self, request: HttpRequest, queryset: QuerySet[Role]) -> None:
        """Record a revocation of every session issued before now on the selected roles, then
        queue (with a broker) or run (without) their sync, which writes it to IAM."""
        now = timezone.now()
        for role in queryset.select_related("account"):
            revocations.session_revoke(role=role, actor=request.user.get_username(), reason="admin action", cutoff=now)
            self._request_sync(request, role)

    @admin.display(description="shrink-only")
    def shrink_only_state(self, obj: Role) -> str:
        if obj.sync_status != obj.SyncStatus.SHRINK_ONLY:
            return "no"
        missing = ", ".join(obj.missing_mappings) or "nothing"
        return format_html(
            "<strong>yes</strong>: IAM holds the live trust minus every trust no longer desired; "
            "missing: {}. Why the full policy could not be written: see the last error. Every sync "
            "(registry change, drift scan, 'Sync IAM now') tries the full policy again.",
            missing,
        )

    @admin.display(description="live session revocation")
    def session_revocation(self, obj: Role) -> str:
        if obj.pk is None:
            return "—"
        rows = [
            (
                r.requested_at.strftime("%Y-%m-%d %H:%M:%S"),
                r.actor,
                r.reason,
                r.cutoff.strftime("%Y-%m-%dT%H:%M:%SZ") if r.cutoff else "the next trust-policy write",
                "in IAM" if r.applied_at else f"pending {r.last_error}".strip(),
            )
            for r in obj.revocations.all()[:10]
        ]
        head = (
            f"Sessions issued before {obj.sessions_revoked_before:%Y-%m-%dT%H:%M:%SZ} are denied everything "
            "(inline policy RolegateRevokeOlderSessions)."
            if obj.sessions_revoked_before
            else "No revocation in IAM."
        )
        if not rows:
            return head
        return format_html(
            "{}<ul>{}</ul>",
            head,
            format_html_join("", "<li>{} by {} ({}): sessions before {}, {}</li>", rows),
        )

    def sync_iam_now(self, request: HttpRequest, queryset: QuerySet[Role]) -> None:
        """Queue (with a broker) or run (without) the trust-policy sync of the selected roles."""
        for role in queryset.select_related("account"):
            self._request_sync(request, role)

    @admin.display(description="drift")
    def drift_state(self, obj: Role) -> str:
        if obj.drift:
            return format_html("<strong>{}</strong>", "yes: the live trust policy in IAM differs from the desired one")
        return "no" if obj.live_policy else "— (not synced yet)"

    @admin.display(description="desired trust policy")
    def desired_policy(self, obj: Role) -> SafeString:
        result = role_desired_policy(obj)
        return format_html("<pre>{}</pre>", policies.pretty(result.document))

    @admin.display(description="size / quota")
    def policy_size_vs_quota(self, obj: Role) -> str:
        result = role_desired_policy(obj)
        text = f"{result.size} / {result.limit} characters"
        if not result.fits:
            return format_html("<strong>{}</strong> — {}", text, result.message)
        return text

    @admin.display(description="warnings")
    def iam_warnings(self, obj: Role) -> str:
        warnings = role_desired_policy(obj).warnings
        if not warnings:
            return "—"
        return format_html("<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((w,) for w in warnings)))

    @admin.display(description="diff against the policy last seen in IAM")
    def policy_diff(self, obj: Role) -> str:
        if not obj.live_policy:
            return "— (not synced yet)"
        live = json.loads(obj.live_policy)
        desired = role_desired_policy(obj).document
        if policies.same_policy(live, desired):
            return "— (no difference)"
        return format_html("<pre>{}</pre>", policy_diff(live, desired, label=role_label(obj)))


class AccountSyncAdminMixin(_SyncAdminMixin[Account]):
    """OIDC provider sync state and "sync now" on the account admin."""

    sync_fields = ("provider_status", "provider_synced_at", "provider_error", "oidc_providers")
    sync_help = SECTION_HELP["account"]

    def sync_iam_now(self, request: HttpRequest, queryset: QuerySet[Account]) -> None:
        """Queue (with a broker) or run (without) the sync of the selected accounts' providers and roles."""
        for account in queryset:
            self._request_sync(request, account)

    @admin.display(description="OIDC providers")
    def oidc_providers(self, obj: Account) -> str:
        rows = [
            (policies.provider_arn(obj.account_id, url), ", ".join(client_ids))
            for url, client_ids in account_providers(obj)
        ]
        if not rows:
            return "—"
        return format_html("<ul>{}</ul>", format_html_join("", "<li>{} (client ids: {})</li>", rows))
