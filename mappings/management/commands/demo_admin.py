"""``python manage.py demo_admin``: a superuser ``admin`` with a fresh random password (development only).

The one command that prints a secret, which is why it refuses to run outside ``DJANGO_DEBUG=1``.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError
from django.db import transaction

from portal.commands import RolegateCommand

USERNAME = "admin"


class Command(RolegateCommand):
    help = "Create or reset the development superuser 'admin' with a random password and print the login."

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("demo_admin is for local development only: it needs DJANGO_DEBUG=1")
        password = secrets.token_urlsafe(12)
        user, created = get_user_model().objects.get_or_create(username=USERNAME)
        user.is_staff = user.is_superuser = user.is_active = True
        user.set_password(password)
        user.save()
        self.stdout.write(f"Rolegate admin {'created' if created else 'reset'}: {settings.ROLEGATE_ISSUER}/admin/")
        self.stdout.write(f"  user:     {USERNAME}")
        self.stdout.write(f"  password: {password}")
