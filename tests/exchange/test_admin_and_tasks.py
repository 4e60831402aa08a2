"""The signing-key admin is read-only and never shows the private part; housekeeping tasks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import time_machine
from django.contrib.auth import get_user_model

from exchange import keys, tasks
from exchange.models import SigningKey, UsedToken


def test_signing_key_admin_is_read_only_without_private_parts(client, db):
    kid, _ = keys.current_signing_key()
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin)
    row = SigningKey.objects.get(kid=kid)
    listing = client.get("/admin/exchange/signingkey/", HTTP_HOST="127.0.0.1")
    assert listing.status_code == 200
    assert kid in listing.content.decode()
    detail = client.get(f"/admin/exchange/signingkey/{row.pk}/change/", HTTP_HOST="127.0.0.1")
    assert detail.status_code == 200
    page = detail.content.decode()
    assert "private_key_encrypted" not in page
    assert bytes(row.private_key_encrypted).hex()[:32] not in page
    assert client.get("/admin/exchange/signingkey/add/", HTTP_HOST="127.0.0.1").status_code == 403
    assert client.post(f"/admin/exchange/signingkey/{row.pk}/delete/", HTTP_HOST="127.0.0.1").status_code == 403


def test_promotion_task_starts_signing_with_a_due_key(db, settings):
    settings.ROLEGATE_KEY_OVERLAP = 60
    old, _ = keys.current_signing_key()
    new = keys.signing_key_rotate()
    with time_machine.travel(datetime.now(UTC) + timedelta(seconds=61)):
        tasks.signing_keys_promote_task.delay()
    assert SigningKey.objects.get(kid=new.kid).state == "current"
    assert SigningKey.objects.get(kid=old).state == "previous"


def test_prune_task(db):
    UsedToken.objects.create(issuer="i", jti="old", role_arn="r", expires_at=datetime(2020, 1, 1, tzinfo=UTC))
    tasks.used_tokens_prune_task.delay()
    assert not UsedToken.objects.exists()
