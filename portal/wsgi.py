"""WSGI entry point (gunicorn portal.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application
from django.utils.module_loading import import_string

from portal.startup import freeze_loaded_objects, require_secret_key

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
require_secret_key()  # refuse to start, not to fail on the first signed request

application = get_wsgi_application()

# Build the registry snapshot before the first request (a full build takes seconds with 100,000
# mappings; later changes are patched in). Wiring by name, like portal/urls.py's includes.
import_string("mappings.selectors.registry_warm")()
freeze_loaded_objects()
