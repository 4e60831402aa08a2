"""Registry objects through the services, and IAM roles in moto, for the sync tests."""

from __future__ import annotations

import json

from mappings import services
from mappings.iam import aws_iam

ROLEGATE = "https://rolegate.example.com"
PLACEHOLDER = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


def registry(*, account_id="123456789012", mode="brokered", manager_role_arn=None, roles=("deploy-web",)):
    issuer = services.issuer_create(
        actor="test", name="gitlab-com", url="https://gitlab.com", audiences=["https://rolegate.example.com"]
    )
    account = services.account_create(
        actor="test", name="prod", account_id=account_id, mode=mode, manager_role_arn=manager_role_arn
    )
    made = [services.role_create(actor="test", account=account, name=name) for name in roles]
    for role in made:
        services.mapping_create(
            actor="test", name=f"{role.name}-main", issuer=issuer, role=role, project="platform/web", ref="main"
        )
    return issuer, account, made


def create_iam_role(name: str, *, manager_role_arn=None, policy=PLACEHOLDER) -> None:
    aws_iam.iam_client(manager_role_arn).create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(policy))


def live_policy(name: str, *, manager_role_arn=None) -> dict:
    return aws_iam.get_role_trust_policy(name, manager_role_arn=manager_role_arn)


class CallCounter:
    """Counts the IAM API calls a client makes (a botocore event hook)."""

    def __init__(self, client):
        self.calls: list[str] = []
        client.meta.events.register("before-call.iam.*", self._record)

    def _record(self, model, **kwargs):
        self.calls.append(model.name)

    def count(self, name: str) -> int:
        return self.calls.count(name)
