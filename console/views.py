"""Public, unauthenticated downloads of the console."""

from __future__ import annotations

from pathlib import Path

from django.http import HttpResponse
from django.views.decorators.http import require_safe

CREDENTIAL_PROCESS_SCRIPT = Path(__file__).resolve().parent / "cli" / "rolegate-credential-process.py"


@require_safe
def credential_process_script(request):
    """The stdlib-only ``credential_process`` helper, for ``~/.aws/config``."""
    response = HttpResponse(CREDENTIAL_PROCESS_SCRIPT.read_bytes(), content_type="text/x-python; charset=utf-8")
    response["Content-Disposition"] = 'inline; filename="rolegate-credential-process.py"'
    return response
