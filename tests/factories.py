"""factory_boy factories for the registry. Build through the services where behaviour matters."""

import factory

from mappings import services
from mappings.models import Account, Issuer, Mapping, Role


class IssuerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Issuer
        django_get_or_create = ("name",)

    name = "gitlab-example"
    url = "https://gitlab.example.com"
    audiences = factory.LazyFunction(lambda: ["https://rolegate.example.com"])


class AccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Account
        django_get_or_create = ("name",)

    name = "prod"
    account_id = factory.Sequence(lambda n: f"{123456789012 + n:012d}")
    mode = Account.Mode.BROKERED


class RoleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Role

    account = factory.SubFactory(AccountFactory)
    name = factory.Sequence(lambda n: f"role-{n}")


class MappingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Mapping

    name = factory.Sequence(lambda n: f"mapping-{n}")
    issuer = factory.SubFactory(IssuerFactory)
    role = factory.SubFactory(RoleFactory)
    project = "platform/web"
    ref = "main"


def web_main_deploy(**overrides) -> Mapping:
    """The web team's rule, through the services: gitlab-example's platform/web on the protected
    branch main may assume prod/deploy-web (arn:aws:iam::123456789012:role/deploy-web)."""
    fields = {
        "name": "web-main-deploy",
        "project": "platform/web",
        "ref": "main",
        "ref_type": "branch",
        "protected": True,
        **overrides,
    }
    if "issuer" not in fields:
        fields["issuer"] = IssuerFactory()
    if "role" not in fields:
        fields["role"] = RoleFactory(account=AccountFactory(account_id="123456789012"), name="deploy-web")
    return services.mapping_create(actor="test", **fields)
