"""The registry's single write path: every save and delete moves the registry version (so every
process's matcher sees it) and schedules the IAM sync of the roles it touches."""

from __future__ import annotations

import pytest
from django.db.models import ProtectedError

from mappings import services
from mappings.models import Account, Issuer, Mapping, Role
from mappings.selectors import registry, registry_version
from tests.factories import AccountFactory, IssuerFactory, MappingFactory, RoleFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def scheduled(monkeypatch) -> list[set[int]]:
    """Role ids passed to the IAM sync scheduler, one set per call."""
    calls: list[set[int]] = []
    monkeypatch.setattr("mappings.iam.scheduling.schedule_role_sync", lambda *, role_ids: calls.append(set(role_ids)))
    return calls


def test_every_create_moves_the_version():
    issuer = services.issuer_create(actor="t", name="gl", url="https://gitlab.example.com", audiences=["a"])
    assert registry_version() == 1
    account = services.account_create(actor="t", name="prod", account_id="123456789012")
    assert registry_version() == 2
    role = services.role_create(actor="t", account=account, name="deploy-web")
    assert registry_version() == 3
    services.mapping_create(actor="t", name="m", issuer=issuer, role=role, project="platform/web")
    assert registry_version() == 4


@pytest.mark.parametrize("factory", [IssuerFactory, AccountFactory, RoleFactory, MappingFactory])
def test_every_update_and_delete_moves_the_version(factory):
    obj = factory()
    before = registry_version()
    services.registry_save(obj, actor="t")
    assert registry_version() == before + 1
    if isinstance(obj, Mapping | Role):
        services.registry_delete(obj, actor="t")
        assert registry_version() == before + 2
        assert not type(obj).objects.filter(pk=obj.pk).exists()


def test_saves_validate_and_an_invalid_object_changes_nothing():
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        services.account_create(actor="t", name="prod", account_id="12345")
    assert not Account.objects.exists()
    assert registry_version() == 0


def test_an_issuer_in_use_cannot_be_deleted_and_nothing_moves():
    mapping = MappingFactory()
    before = registry_version()
    with pytest.raises(ProtectedError):
        services.registry_delete(mapping.issuer, actor="t")
    assert Issuer.objects.exists()
    assert registry_version() == before


def test_a_changed_mapping_schedules_its_old_and_new_role(scheduled):
    mapping = MappingFactory()
    old_role = mapping.role
    new_role = RoleFactory(account=old_role.account)
    services.registry_update(mapping, actor="t", role=new_role)
    assert scheduled[-1] == {old_role.pk, new_role.pk}


def test_a_deleted_role_is_not_scheduled(scheduled):
    role = RoleFactory()
    services.registry_delete(role, actor="t")
    assert scheduled == []


def test_an_account_change_schedules_its_roles(scheduled):
    role = RoleFactory()
    services.registry_update(role.account, actor="t", audience="sts.example")
    assert scheduled[-1] == {role.pk}


def test_the_matcher_sees_a_change_on_its_next_call(web_main_claims):
    from datetime import UTC, datetime

    from mappings.matching import decide

    now = datetime(2026, 11, 26, tzinfo=UTC)
    assert registry().size == 0
    mapping = MappingFactory(project="platform/web", ref="main")
    assert registry().size == 0  # a write that bypasses the services is not seen
    services.registry_save(mapping, actor="t")
    assert decide(registry(), issuer="gitlab-example", claims=web_main_claims, now=now).granted
    services.registry_update(mapping, actor="t", enabled=False)
    assert not decide(registry(), issuer="gitlab-example", claims=web_main_claims, now=now).granted
