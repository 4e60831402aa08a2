"""The sign-in flow's pages: start (redirect to GitLab), callback, refusal."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views import View
from mozilla_django_oidc import views as oidc_views

from console.sso import provider, roles
from console.sso.backends import oidc_setting


class _Enabled(View):
    def dispatch(self, request, *args, **kwargs):
        if not provider.enabled():
            raise Http404("Signing in with GitLab is not configured (ROLEGATE_OIDC_ISSUER).")
        return super().dispatch(request, *args, **kwargs)


class SignInView(_Enabled, oidc_views.OIDCAuthenticationRequestView):
    """Redirect to the GitLab instance's authorization endpoint (state, nonce and PKCE kept in
    the session)."""

    get_settings = staticmethod(oidc_setting)

    def __init__(self, *args, **kwargs):
        # The endpoint is discovered per request, not when the URLconf is loaded.
        super(oidc_views.OIDCAuthenticationRequestView, self).__init__(*args, **kwargs)

    def get(self, request):
        try:
            self.OIDC_OP_AUTH_ENDPOINT = provider.endpoint("authorization_endpoint")
        except provider.ProviderUnavailable:
            return render(request, "console/sso_unavailable.html", status=503)
        self.OIDC_RP_CLIENT_ID = oidc_setting("OIDC_RP_CLIENT_ID")
        return super().get(request)


class CallbackView(_Enabled, oidc_views.OIDCAuthenticationCallbackView):
    get_settings = staticmethod(oidc_setting)

    def login_failure(self):
        refusal = getattr(self.request, "rolegate_sso_refusal", None)
        if refusal is not None:
            return render(
                self.request,
                "console/sso_refused.html",
                {"refusal": refusal, "accepted": roles.accepted_groups()},
                status=403,
            )
        messages.error(self.request, "Signing in with GitLab did not succeed. Try again, or ask an administrator.")
        return HttpResponseRedirect(reverse("admin:login"))
