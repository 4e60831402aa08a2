"""API authentication for the platform-team API (docs/api.md#authentication): ``Authorization: Bearer <token>``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.utils import timezone
from rest_framework import authentication, exceptions, permissions

from console.models import ApiToken
from console.services import api_token_hash, api_token_still_valid, api_token_touch
from console.throttling import api_auth_failure_record, api_auth_retry_after
from exchange.apis import client_ip

if TYPE_CHECKING:
    from rest_framework.permissions import _PermissionClass


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """A personal API token; missing or invalid is 401 (the permission decides about staff).

    Failed tokens are counted per client address: beyond ``ROLEGATE_API_AUTH_FAILURE_LIMIT`` in
    a window every bearer request from that address is 429 with Retry-After, a right token too
    (otherwise guessing could go on). A token whose user changed password or was deactivated
    is revoked (:func:`console.services.api_token_still_valid`).
    """

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        ip = client_ip(request.META) or "unknown"
        retry_after = api_auth_retry_after(ip=ip)
        if retry_after is not None:
            raise exceptions.Throttled(
                wait=retry_after,
                detail=f"Too many failed API tokens from {ip}; retry after {retry_after} seconds.",
            )
        try:
            return self._authenticate(header)
        except exceptions.AuthenticationFailed:
            api_auth_failure_record(ip=ip)
            raise

    def _authenticate(self, header: list[bytes]):
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("The Authorization header must be 'Bearer <token>'.")
        try:
            raw = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("The API token is invalid.") from None
        now = timezone.now()
        token = ApiToken.objects.usable(now).select_related("user").filter(token_sha256=api_token_hash(raw)).first()
        if token is None or not api_token_still_valid(token=token):
            raise exceptions.AuthenticationFailed("The API token is invalid, expired or revoked.")
        api_token_touch(token=token, now=now)
        return token.user, token

    def authenticate_header(self, request):
        return f'{self.keyword} realm="rolegate"'


class IsStaff(permissions.BasePermission):
    """Staff users only; an unauthenticated request is 401 (DRF raises NotAuthenticated)."""

    message = "This API is for staff users; your account is not staff."

    def has_permission(self, request, view):
        return bool(request.user is not None and request.user.is_staff)


class HasViewPermissions(permissions.BasePermission):
    """The Django model permissions the matching console page requires (``view.required_permissions``):
    a staff user the page refuses is refused here too (403)."""

    def has_permission(self, request, view):
        required = tuple(getattr(view, "required_permissions", ()))
        if request.user.has_perms(required):
            return True
        self.message = "Your account lacks the permission this API needs: " + ", ".join(
            perm for perm in required if not request.user.has_perm(perm)
        )
        return False


class StaffApiMixin:
    """Staff users with the permissions in ``required_permissions`` (no default: each view says)."""

    authentication_classes: Sequence[type[authentication.BaseAuthentication]] = [BearerTokenAuthentication]
    permission_classes: Sequence[_PermissionClass] = [IsStaff, HasViewPermissions]
    required_permissions: tuple[str, ...]
