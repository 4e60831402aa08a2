"""What a Rolegate process needs before it serves or acts (docs/environment.md#django_secret_key).

Settings load without ``DJANGO_SECRET_KEY`` so that commands which only inspect the code --
``check``, ``makemigrations --check``, ``collectstatic`` in an image build -- run anywhere. Every
use of the secret still fails closed (Django refuses an empty ``SECRET_KEY``), and the entry points
that serve requests or act on data call :func:`require_secret_key` first: the WSGI application,
the Celery worker and beat, and every management command but :data:`INSPECTION_COMMANDS`.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

MISSING_SECRET_KEY = (
    "DJANGO_SECRET_KEY is not set. Set it (or DJANGO_SECRET_KEY_FILE) to a long random value; "
    "it also protects Rolegate's signing keys at rest. Only DJANGO_DEBUG=1 generates one."
)

# Django's commands that read code and settings only: no request, no signing, no data written.
INSPECTION_COMMANDS = frozenset(
    {
        "help",
        "--help",
        "-h",
        "version",
        "--version",
        "check",
        "makemigrations",
        "showmigrations",
        "sqlmigrate",
        "collectstatic",
    }
)


def require_secret_key() -> None:
    """Refuse to start (``ImproperlyConfigured``, one sentence) without a secret key."""
    from django.conf import settings

    try:
        settings.SECRET_KEY  # noqa: B018 (Django raises on an empty one)
    except ImproperlyConfigured as exc:
        if "SECRET_KEY" not in str(exc):
            raise  # another settings error: its own sentence
        raise ImproperlyConfigured(MISSING_SECRET_KEY) from None


def command_needs_secret_key(argv: list[str]) -> bool:
    """Whether ``manage.py`` with this command line may act (``argv[1]``, ``help`` when absent)."""
    command = argv[1] if len(argv) > 1 else "help"
    return command not in INSPECTION_COMMANDS


def freeze_loaded_objects() -> None:
    """Before a server process serves: import the URLconf -- every view module, which Django
    would otherwise import during the first request -- and move every object loaded so far
    (modules, classes, settings, the registry snapshot) out of the garbage collector's passes
    (``gc.freeze()``). They live as long as the process; left in, every full collection walks
    them all, about 20,000 objects after the first request, during whichever request triggers it
    (docs/operations.md#web-processes)."""
    import gc
    from importlib import import_module

    from django.conf import settings

    import_module(settings.ROOT_URLCONF)
    gc.freeze()
