"""``python manage.py create_api_token USERNAME``: print a new API token alone on the last line."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from console.services import api_token_create
from portal.commands import RolegateCommand


class Command(RolegateCommand):
    help = "Create a personal API token for a staff user and print it once (it is stored hashed)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="created with manage.py", help="What the token is for.")

    def handle(self, *args, username: str, name: str, **options):
        user = get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: username}).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        if not user.is_active:
            raise CommandError(f"user {username!r} is inactive")
        token, raw = api_token_create(user=user, name=name)
        if not user.is_staff:
            self.stderr.write(f"warning: {username!r} is not staff; the API refuses non-staff users (403)")
        self.stdout.write(f"API token {token.prefix}… for {username}; it is shown only now:")
        self.stdout.write(raw)
