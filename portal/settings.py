"""Rolegate settings, read from the environment (docs/environment.md).

Everything has a safe default for local development except secrets: outside explicit development
mode (``DJANGO_DEBUG=1``) a missing ``DJANGO_SECRET_KEY`` stops every process that serves or acts
(portal/startup.py); only commands that inspect the code run without it.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
import django_stubs_ext
from celery.schedules import crontab
from csp import constants as csp
from django.core.exceptions import ImproperlyConfigured

from portal.log_context import logging_config

# Django's generic classes (ModelAdmin[Role], ModelForm[Issuer], QuerySet[...]) subscriptable at
# run time, as django-stubs types them for mypy (docs/architecture.md, "Static checks").
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool = False) -> bool:
    """A boolean variable; junk such as ``DJANGO_DEBUG=maybe`` is an error, not ``False``."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/true/yes or 0/false/no)")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ImproperlyConfigured(f"{name}={value} is outside {minimum}..{maximum}")
    return value


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_networks(name: str, default: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Comma-separated IP networks (``10.0.0.0/8,fc00::/7``); an empty value lists none."""
    raw = os.environ.get(name, default)
    networks = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {item!r} is not an IP network such as 10.0.0.0/8") from None
    return tuple(networks)


def env_secret(name: str) -> str | None:
    """A secret from ``NAME_FILE`` (Docker/Kubernetes secrets) or else ``NAME``."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip() or None
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path!r} cannot be read: {exc}") from None
    return os.environ.get(name) or None


def _dev_secret_key() -> str:
    """Development only: a random key persisted beside the code, so that signing keys encrypted
    with it survive a restart of ``make run``."""
    path = BASE_DIR / ".dev-secret-key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


# --- Core ------------------------------------------------------------------------------------

DEBUG = env_bool("DJANGO_DEBUG", False)
# Variables and POST parameters marked sensitive (the exchange's tokens and credentials) are
# hidden from error pages and reports with DEBUG on too.
DEFAULT_EXCEPTION_REPORTER_FILTER = "portal.error_reports.AlwaysSafeExceptionReporterFilter"

# Empty without a secret outside development mode: settings still load (code inspection such as
# `makemigrations --check`), every use of the key fails closed, and whatever serves or acts refuses
# to start first (portal/startup.py).
SECRET_KEY: str = env_secret("DJANGO_SECRET_KEY") or (_dev_secret_key() if DEBUG else "")

# Old secrets, comma-separated, still accepted (sessions, signing keys at rest) while rotating.
SECRET_KEY_FALLBACKS = [k.strip() for k in (env_secret("DJANGO_SECRET_KEY_FALLBACKS") or "").split(",") if k.strip()]

ROLEGATE_ISSUER = env_str("ROLEGATE_ISSUER", "http://127.0.0.1:8000").rstrip("/")
_issuer = urlsplit(ROLEGATE_ISSUER)
if _issuer.scheme not in ("http", "https") or not _issuer.hostname:
    raise ImproperlyConfigured(f"ROLEGATE_ISSUER={ROLEGATE_ISSUER!r} is not an http(s) URL")
ROLEGATE_ALLOW_HTTP = env_bool("ROLEGATE_ALLOW_HTTP", False)
# docs/environment.md#rolegate_allow_http: HTTPS redirects and secure-only cookies are off only
# with ROLEGATE_ALLOW_HTTP and an http:// issuer (local development and tests); otherwise on.
_https = _issuer.scheme == "https" or not ROLEGATE_ALLOW_HTTP

ALLOWED_HOSTS = [
    h.strip()
    for h in env_str("DJANGO_ALLOWED_HOSTS", f"{_issuer.hostname},127.0.0.1,localhost").split(",")
    if h.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "django_celery_beat",
    "axes",
    "csp",
    "mappings",
    "exchange",
    "console",
    "console.alerts",
]

MIDDLEWARE = [
    "portal.middleware.RequestIdMiddleware",
    # /healthz and /readyz, answered before host validation and HTTPS redirects (portal.probes).
    "portal.probes.ProbeMiddleware",
    # GET /metrics, protected by ROLEGATE_METRICS_TOKEN / _ALLOWED_NETWORKS (console.metrics).
    "console.metrics.middleware.MetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # POST /api/v1/token and /api/v1/credentials, answered before the browser-facing middleware
    # below: no session, cookie, CSRF, login or HTML there (exchange.middleware).
    "exchange.middleware.ExchangeApiMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: turns a locked-out login into its 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "portal" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "console.sso.context.login_options",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # The same backend, with a health check that asks the server only when the socket shows
    # something happened (portal/postgresql/base.py).
    DATABASES["default"]["ENGINE"] = "portal.postgresql"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Security: HTTPS everywhere unless the issuer itself is plain http (local development) ----

SECURE_SSL_REDIRECT = _https
SESSION_COOKIE_SECURE = _https
CSRF_COOKIE_SECURE = _https
SECURE_HSTS_SECONDS = 31536000 if _https else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = _https
SECURE_HSTS_PRELOAD = False
# Submitting a domain to the browsers' HSTS preload list is its owner's decision, not Rolegate's.
SILENCED_SYSTEM_CHECKS = ["security.W021"]
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if _https else None
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

# Content-Security-Policy on every response (django-csp): scripts only from our own static files,
# never inline; styles may be inline (the admin's and the dashboard's style attributes and inline
# SVG charts), which cannot run code. Nothing is loaded from another origin; no framing.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [csp.SELF],
        "script-src": [csp.SELF],
        "style-src": [csp.SELF, csp.UNSAFE_INLINE],
        "img-src": [csp.SELF, "data:"],
        "object-src": [csp.NONE],
        "base-uri": [csp.NONE],
        "form-action": [csp.SELF],
        "frame-ancestors": [csp.NONE],
    }
}


def _trusted_origins() -> list[str]:
    """The issuer's origin and one per allowed host (``.example.com`` -> ``*.example.com``), so
    the admin's forms work on every host Django serves; ``*`` trusts no extra origin."""
    origins = [f"{_issuer.scheme}://{_issuer.netloc}"]
    scheme = "https" if _https else "http"
    for host in ALLOWED_HOSTS:
        if host == "*":
            continue
        origin = f"{scheme}://{'*' + host if host.startswith('.') else host}"
        if origin not in origins:
            origins.append(origin)
    return origins


CSRF_TRUSTED_ORIGINS = _trusted_origins()

# --- Django REST framework / OpenAPI ---------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "portal.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "portal.api_errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Rolegate API",
    "DESCRIPTION": "GitLab CI ID tokens in, AWS-ready tokens or credentials out.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # console: an audit event's outcome and explain's decision are the same granted/denied set.
    "ENUM_NAME_OVERRIDES": {"OutcomeEnum": "exchange.models.AuditEvent.Outcome"},
}

# --- Celery ------------------------------------------------------------------------------------

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or None
CELERY_TASK_ALWAYS_EAGER = CELERY_BROKER_URL is None
# Results are kept only for callers that wait for one (``sync_iam`` with a broker): on Redis by
# default, over the broker's own connection (rpc://) for RabbitMQ.
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND") or (
    None if CELERY_BROKER_URL is None else CELERY_BROKER_URL if CELERY_BROKER_URL.startswith("redis") else "rpc://"
)
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "celery")
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE: dict = {
    # Repairs hand edits of trust policies in IAM and retries failed syncs (mappings/iam/tasks.py).
    "iam-drift-scan": {"task": "mappings.tasks.scan_drift", "schedule": 15 * 60},
    # Takes expired mappings out of IAM within a minute, ETA tasks or not (mappings/iam/tasks.py).
    "iam-expiries": {"task": "mappings.tasks.sync_expiries", "schedule": 60.0},
    "exchange-signing-keys-promote": {"task": "exchange.tasks.signing_keys_promote_task", "schedule": 60.0},
    "exchange-used-tokens-prune": {"task": "exchange.tasks.used_tokens_prune_task", "schedule": 3600.0},
    # console: delete audit events older than ROLEGATE_AUDIT_RETENTION_DAYS, daily.
    "audit-retention": {"task": "console.audit_retention", "schedule": crontab(hour=3, minute=17)},
    # Open and clear alert problems, and tell the webhooks (console/alerts/, docs/operations.md "Alerts").
    "alerts-evaluate": {"task": "console.alerts.evaluate", "schedule": 60.0},
}
CELERY_TIMEZONE = "UTC"

# --- Rolegate ------------------------------------------------------------------------------

# Lifetime of minted tokens (the contract caps it at 5 minutes).
ROLEGATE_TOKEN_LIFETIME = env_int("ROLEGATE_TOKEN_LIFETIME", 300, minimum=60, maximum=300)
# Clock skew tolerated on incoming GitLab tokens' exp/nbf/iat.
ROLEGATE_CLOCK_LEEWAY = env_int("ROLEGATE_CLOCK_LEEWAY", 30, minimum=0, maximum=300)
# Seconds between two fetches of one GitLab issuer's JWKS when a token names an unknown kid: a
# newly published GitLab key is accepted within this time (the contract promises 30 s at most).
ROLEGATE_JWKS_MIN_REFRESH_SECONDS = env_int("ROLEGATE_JWKS_MIN_REFRESH_SECONDS", 30, minimum=1, maximum=30)
# Seconds one JWKS fetch (discovery + keys) may take in all, however slowly GitLab answers, and
# the longest a request waits for a fetch another request started (then 503 jwks_unavailable).
ROLEGATE_JWKS_FETCH_SECONDS = env_int("ROLEGATE_JWKS_FETCH_SECONDS", 5, minimum=1, maximum=20)
# Seconds a new signing key is published in the JWKS before it signs (rotate_signing_key). At
# least the JWKS's own cache lifetime (Cache-Control max-age=300, exchange/oidc_views.py): a
# verifier that fetched the JWKS just before the new key appeared must see it before it signs.
ROLEGATE_KEY_OVERLAP = env_int("ROLEGATE_KEY_OVERLAP", 86400, minimum=300)
# Exchange requests per client IP and minute (0: no limit); counted in the Django cache.
ROLEGATE_RATE_LIMIT = env_int("ROLEGATE_RATE_LIMIT", 600, minimum=0)
# How many reverse proxies in front of Rolegate append to X-Forwarded-For. 0 (default): the
# client is the TCP peer. With N, the client is the address the outermost trusted proxy saw.
ROLEGATE_TRUSTED_PROXIES = env_int("ROLEGATE_TRUSTED_PROXIES", 0, minimum=0, maximum=10)
# Where those proxies are: X-Forwarded-For is read only from a TCP peer in these networks (and
# through hops in them), so a client reaching gunicorn directly cannot choose its own address.
ROLEGATE_TRUSTED_PROXY_NETWORKS = env_networks(
    "ROLEGATE_TRUSTED_PROXY_NETWORKS", "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"
)
# IPv6 clients are counted by network: one bucket per /ROLEGATE_RATE_LIMIT_IPV6_PREFIX (a site
# usually gets a /64 or more, so per address would be 2**64 buckets).
ROLEGATE_RATE_LIMIT_IPV6_PREFIX = env_int("ROLEGATE_RATE_LIMIT_IPV6_PREFIX", 64, minimum=32, maximum=128)
# Exchange requests per (issuer, project_id) and minute once the token is verified (0: no
# limit), so a runaway pipeline cannot use up what other projects need.
ROLEGATE_PROJECT_RATE_LIMIT = env_int("ROLEGATE_PROJECT_RATE_LIMIT", 300, minimum=0)
# The registry default of the mappings' pin on first use (a mapping's pin_identity left empty):
# pin each project's and namespace's GitLab ids when a mapping first grants them, and refuse a
# later token whose path is the same but whose id differs (docs/trust-model.md#identity-pins).
ROLEGATE_PIN_IDENTITY = env_bool("ROLEGATE_PIN_IDENTITY", False)
# A cache shared by every process (Redis), so the rate limit is global; without it each process
# counts on its own.
ROLEGATE_CACHE_URL = env_str("ROLEGATE_CACHE_URL")
CACHES = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": ROLEGATE_CACHE_URL,
            "KEY_PREFIX": "rolegate",
            # The exchange never waits long on the cache: the rate limit fails open.
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
        if ROLEGATE_CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}
# Seconds each /readyz check (database, cache, broker) may take before it counts as failing.
ROLEGATE_READYZ_TIMEOUT = env_int("ROLEGATE_READYZ_TIMEOUT", 2, minimum=1, maximum=30)
# The GitLab CI/CD component (this repository's templates/aws.yml, published in your GitLab) that
# the admin's CI snippets include: <GitLab host>/<project path>/aws@<version>.
ROLEGATE_CI_COMPONENT = env_str("ROLEGATE_CI_COMPONENT", "$CI_SERVER_FQDN/platform/rolegate/aws@1.0.0")
# How long audit events are kept (days) before the daily retention task deletes them.
ROLEGATE_AUDIT_RETENTION_DAYS = env_int("ROLEGATE_AUDIT_RETENTION_DAYS", 400, minimum=1)

# The networks an issuer URL or jwks_url may name besides public addresses (mappings.addresses):
# by default the private ones (RFC 1918, IPv6 ULA), so a self-managed GitLab on a private network
# works; loopback and link-local (cloud metadata) are refused unless listed here.
ROLEGATE_ISSUER_ALLOWED_NETWORKS = env_networks(
    "ROLEGATE_ISSUER_ALLOWED_NETWORKS", "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"
)

# --- Login and API token throttling (docs/operations.md "Security controls") ------------------

# django-axes: after ROLEGATE_LOGIN_FAILURE_LIMIT wrong passwords for one username from one
# client address, that pair is locked out (429) for ROLEGATE_LOGIN_LOCKOUT_MINUTES, right
# password or not. Attempts are kept in the database (every process sees them); a success resets.
AXES_FAILURE_LIMIT = env_int("ROLEGATE_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("ROLEGATE_LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The same client address as the exchange's audit and rate limit (trusted proxies included).
AXES_CLIENT_IP_CALLABLE = "console.throttling.request_client_ip"
# Failed platform-API token authentications per client address in a fixed window of
# ROLEGATE_API_AUTH_WINDOW_SECONDS; beyond the limit every bearer request from that address is
# 429 with Retry-After until the window ends (0: no limit). Counted in the cache (CACHES).
ROLEGATE_API_AUTH_FAILURE_LIMIT = env_int("ROLEGATE_API_AUTH_FAILURE_LIMIT", 10, minimum=0)
ROLEGATE_API_AUTH_WINDOW_SECONDS = env_int("ROLEGATE_API_AUTH_WINDOW_SECONDS", 900, minimum=1)

# --- Signing in with GitLab (console.sso, docs/operations.md "Signing in with GitLab") ----------


def env_list(name: str) -> list[str]:
    return [item.strip() for item in env_str(name).split(",") if item.strip()]


# The GitLab instance (its base URL, the ID tokens' iss); unset: no "Sign in with GitLab".
ROLEGATE_OIDC_ISSUER = env_str("ROLEGATE_OIDC_ISSUER").rstrip("/")
if ROLEGATE_OIDC_ISSUER:
    _oidc = urlsplit(ROLEGATE_OIDC_ISSUER)
    if (_oidc.scheme != "https" and not (_oidc.scheme == "http" and ROLEGATE_ALLOW_HTTP)) or not _oidc.hostname:
        raise ImproperlyConfigured(f"ROLEGATE_OIDC_ISSUER={ROLEGATE_OIDC_ISSUER!r} is not an https URL")
OIDC_RP_CLIENT_ID = env_str("ROLEGATE_OIDC_CLIENT_ID")
OIDC_RP_CLIENT_SECRET = env_secret("ROLEGATE_OIDC_CLIENT_SECRET") or ""
if ROLEGATE_OIDC_ISSUER and not (OIDC_RP_CLIENT_ID and OIDC_RP_CLIENT_SECRET):
    raise ImproperlyConfigured(
        "ROLEGATE_OIDC_ISSUER is set: set ROLEGATE_OIDC_CLIENT_ID and ROLEGATE_OIDC_CLIENT_SECRET "
        "(or ROLEGATE_OIDC_CLIENT_SECRET_FILE) from the GitLab application too"
    )
OIDC_RP_SCOPES = env_str("ROLEGATE_OIDC_SCOPES", "openid profile email")
OIDC_RP_SIGN_ALGO = "RS256"
OIDC_USE_PKCE = True
OIDC_TOKEN_USE_BASIC_AUTH = True
ROLEGATE_OIDC_TIMEOUT = env_int("ROLEGATE_OIDC_TIMEOUT", 10, minimum=1, maximum=60)
OIDC_TIMEOUT = ROLEGATE_OIDC_TIMEOUT
# The claim listing the user's groups: groups_direct (direct memberships, in the ID token),
# groups (with ancestors' members), or https://gitlab.org/claims/groups/owner|maintainer|developer.
ROLEGATE_OIDC_GROUPS_CLAIM = env_str("ROLEGATE_OIDC_GROUPS_CLAIM", "groups_direct")
ROLEGATE_OIDC_ADMIN_GROUPS = env_list("ROLEGATE_OIDC_ADMIN_GROUPS")
ROLEGATE_OIDC_AUDITOR_GROUPS = env_list("ROLEGATE_OIDC_AUDITOR_GROUPS")
# Local username/password sign-in; with 0, only superusers while ROLEGATE_BREAK_GLASS=1.
ROLEGATE_LOCAL_LOGIN = env_bool("ROLEGATE_LOCAL_LOGIN", True)
ROLEGATE_BREAK_GLASS = env_bool("ROLEGATE_BREAK_GLASS", False)
# django-axes first: it refuses a locked-out username+address before any other backend runs.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "console.sso.backends.GitLabBackend",
    "console.sso.backends.LocalBackend",
]
LOGIN_REDIRECT_URL = "/admin/"
LOGIN_REDIRECT_URL_FAILURE = "/admin/login/"

# --- Metrics and alerts (docs/operations.md "Metrics", "Alerts") ------------------------------


def _networks(name: str) -> list:
    import ipaddress

    networks = []
    for item in env_list(name):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {item!r} is not an IP network (e.g. 10.0.0.0/8)") from None
    return networks


# GET /metrics needs this bearer token and/or a TCP peer in these networks; with neither, 404.
ROLEGATE_METRICS_TOKEN = env_secret("ROLEGATE_METRICS_TOKEN")
ROLEGATE_METRICS_ALLOWED_NETWORKS = _networks("ROLEGATE_METRICS_ALLOWED_NETWORKS")
# The Celery worker's own GET /metrics (portal.worker_metrics), with the same access check: 0
# (the default) serves nothing. The address is an IP address: loopback unless told (containers
# set 0.0.0.0 or ::, as docker-compose.yml and the Kubernetes manifests do).
ROLEGATE_WORKER_METRICS_PORT = env_int("ROLEGATE_WORKER_METRICS_PORT", 0, minimum=0, maximum=65535)
ROLEGATE_WORKER_METRICS_ADDRESS = env_str("ROLEGATE_WORKER_METRICS_ADDRESS", "127.0.0.1")
try:
    ipaddress.ip_address(ROLEGATE_WORKER_METRICS_ADDRESS)
except ValueError:
    raise ImproperlyConfigured(
        f"ROLEGATE_WORKER_METRICS_ADDRESS={ROLEGATE_WORKER_METRICS_ADDRESS!r} is not an IP address (e.g. 0.0.0.0 or ::)"
    ) from None


def _alert_webhooks(name: str) -> list[tuple[str, str]]:
    """``kind:url`` entries, comma-separated: ``slack:https://hooks.slack.com/…,json:https://…``."""
    hooks: list[tuple[str, str]] = []
    for item in (env_secret(name) or "").split(","):
        item = item.strip()
        if not item:
            continue
        kind, _, url = item.partition(":")
        parts = urlsplit(url)
        if kind not in ("json", "slack") or parts.scheme not in ("http", "https") or not parts.hostname:
            # Never echo the entry: a Slack webhook URL is a secret.
            raise ImproperlyConfigured(f"{name}: entry {len(hooks) + 1} is not json:<https URL> or slack:<https URL>")
        hooks.append((kind, url))
    return hooks


# Alert webhooks besides those of the admin (also ROLEGATE_ALERT_WEBHOOKS_FILE).
ROLEGATE_ALERT_WEBHOOKS = _alert_webhooks("ROLEGATE_ALERT_WEBHOOKS")

# Log lines: "plain" text (the development default) or "json", one object per line with the
# request id and the Celery task id (portal.log_context).
ROLEGATE_LOG_FORMAT = env_str("ROLEGATE_LOG_FORMAT", "plain").lower()
if ROLEGATE_LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"ROLEGATE_LOG_FORMAT={ROLEGATE_LOG_FORMAT!r} is neither plain nor json")
# Also write every audit event, once stored, as a line on the "rolegate.audit" logger.
ROLEGATE_AUDIT_LOG = env_bool("ROLEGATE_AUDIT_LOG", False)
LOGGING = logging_config(log_format=ROLEGATE_LOG_FORMAT, level=env_str("ROLEGATE_LOG_LEVEL", "INFO").upper())
# The worker keeps this configuration instead of installing its own handlers (portal.celery).
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
