"""The Celery application.

With ``CELERY_BROKER_URL`` unset, tasks run in-process (``task_always_eager``), so a laptop needs
no broker; production points it at Redis or RabbitMQ and runs ``celery -A portal worker`` and
``celery -A portal beat``.
"""

import os

from celery import Celery, signals

from portal.log_context import task_id_var

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

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
