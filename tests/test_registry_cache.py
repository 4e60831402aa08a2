"""The per-process registry snapshot follows every committed change (mappings.selectors)."""

import pytest

from mappings import selectors, services
from mappings.models import RegistryVersion
from tests.factories import AccountFactory, IssuerFactory, RoleFactory

pytestmark = pytest.mark.django_db


def test_snapshot_is_reused_until_the_registry_changes():
    issuer = IssuerFactory()
    role = RoleFactory(account=AccountFactory())
    services.mapping_create(actor="test", name="web-main", issuer=issuer, role=role, project="platform/web")
    first = selectors.registry()
    assert selectors.registry() is first
    assert [r.name for r in first.candidates(issuer.name, "platform/web")] == ["web-main"]

    services.mapping_create(actor="test", name="web-all", issuer=issuer, role=role, project="platform/*")
    second = selectors.registry()
    assert second is not first
    assert [r.name for r in second.candidates(issuer.name, "platform/web")] == ["web-all", "web-main"]


def test_a_repeated_version_number_still_rebuilds():
    """A rolled-back change can leave the counter where it was: the stamp still differs."""
    issuer = IssuerFactory()
    role = RoleFactory(account=AccountFactory())
    services.mapping_create(actor="test", name="web-main", issuer=issuer, role=role, project="platform/web")
    first = selectors.registry()
    row = RegistryVersion.objects.get(pk=1)
    RegistryVersion.objects.filter(pk=1).update(stamp="00000000-0000-4000-8000-000000000000")
    assert RegistryVersion.objects.get(pk=1).version == row.version
    assert selectors.registry() is not first
