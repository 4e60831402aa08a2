"""Authentication backends: GitLab (OpenID Connect) and local passwords.

:class:`GitLabBackend` is mozilla-django-oidc's backend with Rolegate's rules: endpoints from
discovery, the ID token's issuer and audience checked (the library checks neither), users keyed
by GitLab's ``sub`` (never by email, so a GitLab account cannot take over a local one), the
groups claim mapped to roles on every sign-in, and no user for someone outside every group.

:class:`LocalBackend` is Django's password login, off with ``ROLEGATE_LOCAL_LOGIN=0`` except
for superusers while ``ROLEGATE_BREAK_GLASS=1`` (the documented way in when GitLab is down).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import jwt
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied, SuspiciousOperation
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from console.sso import provider, roles

logger = logging.getLogger("rolegate.sso")

USERNAME_PREFIX = "gitlab:"
# Settings the library reads that come from the issuer's discovery document.
_DISCOVERED = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
}


def oidc_setting(attr, *args):
    """The library's settings: discovered endpoints, else Django's settings."""
    if attr in _DISCOVERED:
        return provider.endpoint(_DISCOVERED[attr])
    if args:
        return getattr(settings, attr, args[0])
    return getattr(settings, attr)


@dataclass(frozen=True)
class Refusal:
    """Why a GitLab user was not let in, for the refusal page."""

    username: str
    groups: tuple[str, ...]


class GitLabBackend(OIDCAuthenticationBackend):
    def __init__(self, *args, **kwargs):
        # The library's __init__ reads every endpoint; Django builds backends for each password
        # login too, so the endpoints are discovered only when a GitLab callback arrives.
        self.UserModel = get_user_model()

    get_settings = staticmethod(oidc_setting)

    def authenticate(self, request, **kwargs):
        if request is None or not provider.enabled() or "code" not in request.GET or "state" not in request.GET:
            return None
        try:
            self.OIDC_OP_TOKEN_ENDPOINT = provider.endpoint("token_endpoint")
            self.OIDC_OP_USER_ENDPOINT = provider.endpoint("userinfo_endpoint")
            self.OIDC_OP_JWKS_ENDPOINT = provider.endpoint("jwks_uri")
        except provider.ProviderUnavailable as exc:
            logger.warning("GitLab sign-in: the provider is unavailable: %s", exc)
            return None
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        self.OIDC_RP_CLIENT_SECRET = settings.OIDC_RP_CLIENT_SECRET
        self.OIDC_RP_SIGN_ALGO = settings.OIDC_RP_SIGN_ALGO
        self.OIDC_RP_IDP_SIGN_KEY = None
        return super().authenticate(request, **kwargs)

    def _verify_jws(self, payload, key):
        """The ID token: signature, ``iss`` = the issuer, ``aud`` = our client id, ``exp``, ``iat``."""
        try:
            return jwt.decode(
                payload,
                key,
                algorithms=[self.OIDC_RP_SIGN_ALGO],
                audience=self.OIDC_RP_CLIENT_ID,
                issuer=provider.endpoint("issuer"),
                options={"require": ["iss", "aud", "exp", "iat", "sub"]},
                leeway=settings.ROLEGATE_CLOCK_LEEWAY,
            )
        except jwt.PyJWTError as exc:
            raise SuspiciousOperation(f"ID token refused: {type(exc).__name__}: {exc}") from None

    def retrieve_matching_jwk(self, token):
        """The issuer's key for ``token``: by ``kid`` when the token names one (GitLab's do),
        else the only signing key for the algorithm; anything ambiguous is refused."""
        response = requests.get(self.OIDC_OP_JWKS_ENDPOINT, timeout=settings.ROLEGATE_OIDC_TIMEOUT)
        response.raise_for_status()
        header = jwt.get_unverified_header(token)
        kid = header.get("kid")
        keys = [
            key
            for key in response.json().get("keys", [])
            if isinstance(key, dict)
            and (kid is None or key.get("kid") == kid)
            and key.get("alg", header.get("alg")) == header.get("alg")
            and key.get("use", "sig") == "sig"
        ]
        if len(keys) != 1:
            raise SuspiciousOperation(f"no single key of the issuer matches the ID token (kid {kid!r})")
        return jwt.PyJWK(keys[0])

    def get_userinfo(self, access_token, id_token, payload):
        """The ID token's claims with the userinfo endpoint's on top (GitLab puts ``groups``
        and the role-specific group claims only there); both must be about the same ``sub``."""
        userinfo = super().get_userinfo(access_token, id_token, payload)
        if str(userinfo.get("sub")) != str(payload.get("sub")):
            raise SuspiciousOperation("userinfo is about another subject than the ID token")
        return {**payload, **userinfo}

    def verify_claims(self, claims):
        return bool(claims.get("sub"))

    def filter_users_by_claims(self, claims):
        return self.UserModel.objects.filter(username=self.get_username(claims))

    def get_username(self, claims):
        return f"{USERNAME_PREFIX}{claims['sub']}"[:150]

    def get_or_create_user(self, access_token, id_token, payload):
        claims = self.get_userinfo(access_token, id_token, payload)
        if not self.verify_claims(claims):
            raise SuspiciousOperation("Claims verification failed")
        groups = claims.get(settings.ROLEGATE_OIDC_GROUPS_CLAIM) or []
        groups = [g for g in groups if isinstance(g, str)] if isinstance(groups, list) else []
        granted = roles.roles_for_groups(groups)
        user = self.filter_users_by_claims(claims).first()
        shown_name = str(claims.get("nickname") or claims.get("preferred_username") or claims.get("email") or "")
        if not granted:
            if user is not None:  # left every group since last time: no role stays
                roles.user_roles_sync(user=user, roles=set())
            logger.warning(
                "GitLab sign-in refused: %s (sub %s) is in none of the configured groups", shown_name, claims["sub"]
            )
            self.request.rolegate_sso_refusal = Refusal(username=shown_name, groups=tuple(sorted(groups)))
            return None
        if user is None:
            user = self.UserModel(username=self.get_username(claims))
            user.set_unusable_password()
        user.email = str(claims.get("email") or "")[:254]
        user.first_name = str(claims.get("name") or shown_name)[:150]
        user.save()
        roles.user_roles_sync(user=user, roles=granted)
        logger.info("GitLab sign-in: %s (%s) as %s", shown_name, user.username, ", ".join(sorted(granted)))
        return user

    def get_user(self, user_id):
        # Django's rule (inactive users are logged out), not the library's.
        return ModelBackend.get_user(self, user_id)


def local_login_allowed(user) -> bool:
    if settings.ROLEGATE_LOCAL_LOGIN:
        return True
    return bool(settings.ROLEGATE_BREAK_GLASS and user is not None and user.is_superuser)


class LocalBackend(ModelBackend):
    """Username and password, unless ``ROLEGATE_LOCAL_LOGIN=0`` (break-glass superusers aside)."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            return None
        if not local_login_allowed(user):
            raise PermissionDenied("local password login is turned off")
        if not settings.ROLEGATE_LOCAL_LOGIN:
            logger.warning("break-glass: superuser %s signed in with a local password", user.get_username())
        return user

    def get_user(self, user_id):
        user = super().get_user(user_id)
        # A session opened with a password ends when local login is turned off.
        return user if user is not None and local_login_allowed(user) else None
