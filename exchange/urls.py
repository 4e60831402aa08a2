from django.urls import path

from exchange import apis, oidc_views

urlpatterns = [
    path(".well-known/openid-configuration", oidc_views.openid_configuration, name="openid-configuration"),
    path(".well-known/jwks.json", oidc_views.jwks, name="jwks"),
    path("api/v1/token", apis.TokenExchangeApi.as_view(), name="token-exchange"),
    path("api/v1/credentials", apis.CredentialsApi.as_view(), name="credentials"),
]
