"""What the admin's login page offers: GitLab, local passwords, or both."""

from __future__ import annotations

from django.conf import settings

from console.sso import provider


def login_options(request) -> dict:
    return {
        "rolegate_sso": provider.enabled(),
        "rolegate_local_login": settings.ROLEGATE_LOCAL_LOGIN or settings.ROLEGATE_BREAK_GLASS,
        "rolegate_break_glass": not settings.ROLEGATE_LOCAL_LOGIN and settings.ROLEGATE_BREAK_GLASS,
    }
