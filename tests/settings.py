"""Settings for the test suite: the real settings, made fast and deterministic."""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "test-secret-key-not-for-production-0123456789abcdefghijklmnop")
os.environ.setdefault("ROLEGATE_ALLOW_HTTP", "1")
# The stand-in GitLabs listen on loopback: the tests allow it besides the default private networks.
LOOPBACK_AND_PRIVATE = "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"
os.environ.setdefault("ROLEGATE_ISSUER_ALLOWED_NETWORKS", LOOPBACK_AND_PRIVATE)
# The broker CI points at (Redis) is kept for the integration tests that start a real worker;
# every other test runs tasks in-process.
# pytest-xdist starts its workers after this module ran in the controller (and popped the
# variable), so the URL is also kept where the workers' copy of the environment still has it.
TEST_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or os.environ.get("ROLEGATE_TEST_BROKER_URL") or None
if TEST_BROKER_URL:
    os.environ["ROLEGATE_TEST_BROKER_URL"] = TEST_BROKER_URL
os.environ.pop("CELERY_BROKER_URL", None)

from portal.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_BROKER_URL = None
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
# Static files come from the apps' folders (no collectstatic before tests).
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True
