#!/usr/bin/env python
"""Django's command-line utility for Rolegate."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    from portal.startup import command_needs_secret_key, require_secret_key

    try:
        settings.INSTALLED_APPS  # noqa: B018 (loads the settings: an invalid one stops here)
        if command_needs_secret_key(sys.argv):
            require_secret_key()  # only code inspection (check, makemigrations...) runs without it
    except ImproperlyConfigured as exc:
        # One line of reason (docs/commands.md#conventions), not the traceback Django would print further on.
        sys.stderr.write(f"{exc}\n")
        sys.exit(2)
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
