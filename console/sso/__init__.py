"""Signing in to the console with GitLab (docs/operations.md "Signing in with GitLab").

GitLab's OpenID Connect, through mozilla-django-oidc: ``provider`` discovers and fetches the
instance's endpoints, ``roles`` turns GitLab group membership into Django groups and permissions
on every login, ``backends`` authenticates (GitLab, and local passwords unless turned off),
``views`` starts the flow, takes the callback and shows a refusal.
"""
