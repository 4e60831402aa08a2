"""The identity pins in the admin (docs/console.md#identity-pins): read-only, except the one
action that accepts an identity change (recorded, with who, when and why), and the record of
accepted changes."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse

from mappings import pins
from mappings.models import IdentityChange, IdentityPin, validate_pin_id
from portal.admin import ReadOnlyAdmin


class PinIdentitySelect(forms.NullBooleanSelect):
    """A mapping's ``pin_identity``: the registry default, on, or off."""

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs)
        default = "on" if settings.ROLEGATE_PIN_IDENTITY else "off"
        self.choices = [
            ("unknown", f"registry default (ROLEGATE_PIN_IDENTITY: {default})"),
            ("true", "pin on first use"),
            ("false", "never pin"),
        ]


class AcceptIdentityChangeForm(forms.Form):
    new_id = forms.CharField(
        label="New GitLab id",
        max_length=64,
        validators=[validate_pin_id],
        help_text="The project_id (or namespace_id) that now legitimately lives at this path: the audit event of "
        "the refusal (reason identity_changed) names it.",
    )
    note = forms.CharField(
        max_length=pins.NOTE_MAX,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Why the change is legitimate (a rename, a transfer, ...): recorded with the change.",
    )


@admin.register(IdentityPin)
class IdentityPinAdmin(ReadOnlyAdmin):
    """The GitLab ids pinned on first use, by path. Read-only: a pin moves to a new id only through
    the action below (or ``manage.py accept_identity_change``), and every move is recorded."""

    list_display = ("path", "kind", "gitlab_id", "issuer", "pinned_at", "pinned_by")
    list_filter = ("issuer", "kind")
    list_select_related = ("issuer",)
    search_fields = ("=path", "=gitlab_id")
    search_help_text = "Exact path or GitLab id."
    actions = ("accept_identity_change",)

    def has_accept_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("mappings.change_identitypin"))

    @admin.action(description="Accept an identity change of the selected pin", permissions=["accept"])
    def accept_identity_change(self, request: HttpRequest, queryset: QuerySet[IdentityPin]) -> TemplateResponse | None:
        selected = list(queryset.select_related("issuer")[:2])
        if len(selected) != 1:
            self.message_user(request, "Select exactly one pin to accept an identity change.", messages.WARNING)
            return None
        pin = selected[0]
        form = AcceptIdentityChangeForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            try:
                change = pins.identity_change_accept(
                    issuer=pin.issuer.name,
                    kind=pin.kind,
                    path=pin.path,
                    new_id=form.cleaned_data["new_id"],
                    actor=f"admin:{request.user.get_username()}",
                    note=form.cleaned_data["note"],
                )
            except pins.IdentityChangeRefused as exc:
                form.add_error(None, str(exc))
            else:
                self.message_user(
                    request,
                    f"Accepted: {change.kind} {change.path} of issuer {change.issuer_name} is pinned to "
                    f"{change.new_id} (was {change.old_id}).",
                    messages.SUCCESS,
                )
                return None
        refusals = {"reason": "identity_changed", "issuer": pin.issuer.name}
        if pin.kind == IdentityPin.Kind.PROJECT:
            refusals["project_path"] = pin.path
        return TemplateResponse(
            request,
            "admin/mappings/identitypin/accept_identity_change.html",
            {
                **self.admin_site.each_context(request),
                "title": f"Accept an identity change of {pin.kind} {pin.path}",
                "opts": self.model._meta,
                "pin": pin,
                "form": form,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "refusals_url": f"{reverse('admin:exchange_auditevent_changelist')}?{urlencode(refusals)}",
            },
        )


@admin.register(IdentityChange)
class IdentityChangeAdmin(ReadOnlyAdmin):
    """Every accepted identity change: who, when, which path, the old and new ids, and why."""

    list_display = ("accepted_at", "issuer_name", "kind", "path", "old_id", "new_id", "actor", "note")
    list_filter = ("issuer_name", "kind")
    search_fields = ("=path", "=old_id", "=new_id", "actor")
