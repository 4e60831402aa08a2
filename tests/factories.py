"""factory_boy factories for the registry. Build through the services where behaviour matters."""

import factory

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
