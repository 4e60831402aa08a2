"""``python manage.py rotate_signing_key``: publish a new signing key (see ``exchange.keys``)."""

from typing import Any

from django.conf import settings

from exchange import keys
from exchange.models import SigningKey
from portal.commands import RolegateCommand


class Command(RolegateCommand):
    help = (
        "Publish a new signing key in the JWKS; it signs after ROLEGATE_KEY_OVERLAP seconds, and the old key "
        "is retired once every token it signed has expired."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        for change in keys.signing_keys_promote():
            self.stdout.write(change)
        key = keys.signing_key_rotate()
        if key.state == SigningKey.State.CURRENT:
            self.stdout.write(f"{key.kid}: created and signing now (there was no key)")
        else:
            self.stdout.write(
                f"{key.kid}: published as the next key; signs from {key.activates_at.isoformat()} "
                f"(ROLEGATE_KEY_OVERLAP={settings.ROLEGATE_KEY_OVERLAP} s)"
            )
