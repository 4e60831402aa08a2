"""``python manage.py demo_audit``: sample audit events for the demo (development only).

``make run`` calls it after loading ``demo/rolegate.yaml`` so that the dashboard, the audit log
and the replay page have something to show. Each sample job's decision is the exchange's own
matcher's (``console.explain``) on the demo registry; the refusals that happen before the
matcher (expired token, bad signature, replay) are written with their documented reason codes.
Every sample event is labelled: request id ``demo-…``, user agent ``rolegate demo data``, client
IP from the documentation range 192.0.2.0/24. Re-running replaces the previous sample events.
"""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.management.base import CommandError
from django.db import transaction
from django.utils import timezone

from console.explain import explain_claims
from exchange import reasons
from exchange.audit import audit_record
from exchange.models import AuditEvent
from portal.commands import RolegateCommand

USER_AGENT = "rolegate demo data"
PROD = "arn:aws:iam::123456789012:role/"
STAGING = "arn:aws:iam::210987654321:role/"

# (how many, role asked for, claims): jobs of the demo configuration's teams.
JOBS = [
    (40, PROD + "deploy-web", dict(project_path="platform/web", ref="main", user_login="alice")),
    (
        18,
        PROD + "deploy-api",
        dict(project_path="platform/api", ref="main", environment="production", user_login="bob"),
    ),
    (6, PROD + "release-publisher", dict(project_path="platform/web", ref="v1.4.0", ref_type="tag")),
    (25, STAGING + "deploy-web", dict(project_path="platform/web", ref="feature/login", ref_protected="false")),
    (14, STAGING + "readonly", dict(project_path="platform/billing", ref="main", pipeline_source="schedule")),
    # A merge request from an unprotected branch asks for the production deploy role: refused.
    (
        9,
        PROD + "deploy-web",
        dict(
            project_path="platform/web",
            ref="feature/login",
            ref_protected="false",
            pipeline_source="merge_request_event",
            user_login="mallory",
        ),
    ),
    # The expired api-migration-2025 mapping no longer grants.
    (4, PROD + "deploy-api", dict(project_path="platform/api", ref="migration/2025-q4", ref_protected="false")),
]
# Refusals before the matcher: (how many, reason, detail).
EARLY = [
    (5, reasons.TOKEN_EXPIRED, "The subject token expired at 2026-11-20T09:14:02Z."),
    (2, reasons.BAD_SIGNATURE, "The subject token's signature does not verify with the issuer's key."),
    (3, reasons.REPLAY, "This subject token was already exchanged for this role."),
]


def _claims(job_id: int, **given) -> dict:
    project_path = given.pop("project_path")
    claims = {
        "iss": "https://gitlab.example.com",
        "jti": str(uuid.uuid4()),
        "project_path": project_path,
        "project_id": str(20 + sum(map(ord, project_path)) % 50),
        "namespace_path": project_path.rsplit("/", 1)[0],
        "ref_type": "branch",
        "ref_protected": "true",
        "pipeline_source": "push",
        "pipeline_id": str(job_id // 3),
        "job_id": str(job_id),
        "user_login": "carol",
        **given,
    }
    claims["sub"] = f"project_path:{project_path}:ref_type:{claims['ref_type']}:ref:{claims['ref']}"
    return claims


class Command(RolegateCommand):
    help = "Replace the demo's sample audit events (development only; labelled 'rolegate demo data')."

    @transaction.atomic
    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError("demo_audit is for local development only: it needs DJANGO_DEBUG=1")
        AuditEvent.objects.filter(user_agent=USER_AGENT).delete()
        rng = random.Random(7)
        now = timezone.now()
        job_id = 9000
        count = 0
        for times, role_arn, given in JOBS:
            for _ in range(times):
                job_id += 1
                claims = _claims(job_id, **given)
                decision = explain_claims(issuer="gitlab-example", claims=claims, role_arn=role_arn).decision
                self._record(
                    rng,
                    now,
                    claims,
                    role_arn,
                    outcome="granted" if decision.granted else "denied",
                    reason=decision.reason,
                    detail=decision.detail,
                    token_verified=True,
                    role_arn=decision.role_arn,
                    mapping=decision.rule.name if decision.rule else None,
                    minted_jti=uuid.uuid4().hex if decision.granted else None,
                    role_session_name=f"gl-{claims['project_id']}-{job_id}" if decision.granted else None,
                )
                count += 1
        for times, reason, detail in EARLY:
            for _ in range(times):
                job_id += 1
                claims = _claims(job_id, project_path="platform/web", ref="main")
                self._record(rng, now, claims, PROD + "deploy-web", outcome="denied", reason=reason, detail=detail)
                count += 1
        self.stdout.write(f"Demo audit events: {count} sample exchanges over the last 14 days ({USER_AGENT!r}).")

    def _record(self, rng, now, claims, requested_role_arn, **fields) -> None:
        audit_record(
            request_id=f"demo-{uuid.uuid4().hex[:27]}",
            endpoint=rng.choice(["token", "credentials"]),
            client_ip=f"192.0.2.{rng.randint(1, 254)}",
            user_agent=USER_AGENT,
            issuer="gitlab-example",
            claims=claims,
            requested_role_arn=requested_role_arn,
            latency_ms=round(rng.uniform(2.0, 9.0), 2),
            time=now - timedelta(minutes=rng.randint(1, 14 * 24 * 60)),
            **fields,
        )
