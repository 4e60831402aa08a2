"""What error pages and error reports may show: Django's safe filter, in every mode.

Django's :class:`~django.views.debug.SafeExceptionReporterFilter` hides the variables marked with
``sensitive_variables``, the POST parameters marked with ``sensitive_post_parameters`` and
secret-looking settings, but only when ``DEBUG`` is off. Rolegate's exchange holds GitLab
tokens, minted tokens and AWS credentials in its locals: a development server's debug page must
not show them either (docs/operations.md "Security controls").
"""

from __future__ import annotations

from django.views.debug import SafeExceptionReporterFilter


class AlwaysSafeExceptionReporterFilter(SafeExceptionReporterFilter):
    """:class:`SafeExceptionReporterFilter` that also filters with ``DEBUG`` on."""

    def is_active(self, request) -> bool:
        return True
