"""Factories for the console's tests: users and audit events."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime

import factory
from django.contrib.auth import get_user_model

from exchange.models import AuditEvent
from tests.registry.conftest import MINIMAL, as_yaml


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    is_staff = False
    password = factory.django.Password("correct horse battery staple")


class StaffFactory(UserFactory):
    """The platform admin: staff, may use the console and its API."""

    username = "platform-admin"
    is_staff = True
    is_superuser = True


class AuditEventFactory(factory.django.DjangoModelFactory):
    """A granted exchange by the web team's main-branch job, unless told otherwise."""

    class Meta:
        model = AuditEvent

    time = factory.LazyFunction(lambda: datetime(2026, 11, 26, 12, 0, tzinfo=UTC))
    request_id = factory.LazyFunction(lambda: uuid.uuid4().hex)
    endpoint = "token"
    outcome = "granted"
    reason = "granted"
    detail = "Mapping 'web-main-deploy' grants arn:aws:iam::123456789012:role/deploy-web."
    client_ip = "10.0.0.7"
    issuer = "gitlab-example"
    iss = "https://gitlab.example.com"
    jti = factory.LazyFunction(lambda: str(uuid.uuid4()))
    sub = "project_path:platform/web:ref_type:branch:ref:main"
    project_path = "platform/web"
    project_id = "20"
    namespace_path = "platform"
    namespace_id = "72"
    ref = "main"
    ref_type = "branch"
    ref_protected = "true"
    pipeline_source = "push"
    pipeline_id = factory.Sequence(lambda n: str(500 + n))
    job_id = factory.Sequence(lambda n: str(300 + n))
    user_login = "alice"
    requested_role_arn = "arn:aws:iam::123456789012:role/deploy-web"
    role_arn = "arn:aws:iam::123456789012:role/deploy-web"
    mapping = "web-main-deploy"
    minted_jti = factory.LazyFunction(lambda: uuid.uuid4().hex)
    role_session_name = factory.LazyAttribute(lambda e: f"gl-{e.project_id}-{e.job_id}")
    latency_ms = 3.5


def denied(**overrides) -> AuditEvent:
    """A refused exchange: no mapping matched (a feature branch asking for the deploy role)."""
    fields = dict(
        outcome="denied",
        reason="no_matching_mapping",
        detail="No enabled, unexpired mapping matches.",
        ref="feature/x",
        ref_protected="false",
        pipeline_source="merge_request_event",
        user_login="mallory",
        role_arn=None,
        mapping=None,
        minted_jti=None,
        role_session_name=None,
    )
    fields.update(overrides)
    return AuditEventFactory(**fields)


def explain_form(**overrides) -> dict:
    """The admin's explain form for the web team's protected main-branch push job; an override of
    ``None`` leaves the field out."""
    data = {
        "issuer": "gitlab-example",
        "project_path": "platform/web",
        "ref": "main",
        "ref_type": "branch",
        "protected": "on",
        "environment": "",
        "pipeline_source": "push",
        "role_arn": "",
        "token": "",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def proposed_file(**mapping) -> str:
    """A proposed configuration file (``apply``'s format) for replay: the registry tests' minimal
    one with its mapping as web-main-deploy, the protected main branch of platform/web assuming
    prod/deploy-web; ``mapping`` sets more of its keys."""
    data = copy.deepcopy(MINIMAL)
    data["mappings"][0].update({"name": "web-main-deploy", "ref_type": "branch", "protected": True, **mapping})
    return as_yaml(data)
