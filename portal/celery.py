"""The Celery application.

With ``CELERY_BROKER_URL`` unset, tasks run in-process (``task_always_eager``), so a laptop needs
no broker; production points it at Redis or RabbitMQ and runs ``celery -A portal worker`` and
``celery -A portal beat``.
"""

import os

import click
from celery import Celery, signals

from portal import worker_metrics
from portal.log_context import task_id_var
from portal.startup import require_secret_key

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")


def _starting_command() -> str | None:
    """The ``celery`` subcommand (``worker``, ``beat``, ``inspect``...) whose command line is
    loading this app (``-A portal``); None in gunicorn, ``manage.py`` and tests."""
    context = click.get_current_context(silent=True)
    return context.invoked_subcommand if context is not None else None


if _starting_command() in ("worker", "beat"):
    require_secret_key()  # they act (sign, sync): refuse to start without the secret
# Before the worker imports the apps (and prometheus_client with them): its metrics' folder.
if _starting_command() == "worker":
    worker_metrics.prepare()

app = Celery("rolegate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()  # each app's tasks.py
app.autodiscover_tasks(["mappings.iam"])  # the IAM sync's tasks: mappings/iam/tasks.py


@signals.setup_logging.connect
def _keep_django_logging(**kwargs) -> None:
    """Django's ``LOGGING`` (plain or JSON, with ids) configures the worker and beat too."""


@signals.task_prerun.connect
def _task_id_on(task_id=None, task=None, **kwargs) -> None:
    """Every line a task logs carries its id (portal.log_context)."""
    task.request.rolegate_log_token = task_id_var.set(task_id)


@signals.task_postrun.connect
def _task_id_off(task=None, **kwargs) -> None:
    token = getattr(task.request, "rolegate_log_token", None)
    if token is not None:
        task_id_var.reset(token)
