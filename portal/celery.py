"""The Celery application.

With ``CELERY_BROKER_URL`` unset, tasks run in-process (``task_always_eager``), so a laptop needs
no broker; production points it at Redis or RabbitMQ and runs ``celery -A portal worker`` and
``celery -A portal beat``.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("rolegate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()  # each app's tasks.py
app.autodiscover_tasks(["mappings.iam"])  # the IAM sync's tasks: mappings/iam/tasks.py
