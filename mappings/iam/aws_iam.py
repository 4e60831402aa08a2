"""AWS IAM and STS for the trust-policy sync: the only module that imports boto3 for them.

Typed module-level functions, lazily built cached clients, named errors. Endpoints follow boto3's
standard ``AWS_ENDPOINT_URL_IAM`` / ``AWS_ENDPOINT_URL_STS`` / ``AWS_ENDPOINT_URL`` (boto3 reads them
itself). Every botocore failure leaves this module as :class:`AwsTransientError` (worth a retry)
or :class:`AwsPermanentError` (record and stop), classified by ``mappings.aws_errors``, the one
classification the exchange's STS call shares.
"""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import boto3
from botocore.config import Config

# The errors are re-exported: the sync catches them as ``aws_iam.AwsTransientError`` and so on.
from mappings.aws_errors import AwsError as AwsError
from mappings.aws_errors import AwsPermanentError as AwsPermanentError
from mappings.aws_errors import AwsTransientError as AwsTransientError
from mappings.aws_errors import aws_errors as _aws_errors
from mappings.aws_errors import classify as classify
from mappings.iam.outcomes import CREATED, UNCHANGED, UPDATED
from mappings.policies import provider_arn

if TYPE_CHECKING:  # the service stubs are a development dependency (requirements-dev.txt)
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_sts import STSClient
    from mypy_boto3_sts.type_defs import CredentialsTypeDef

_CONFIG = Config(
    connect_timeout=5,
    read_timeout=20,
    # Celery owns retries with backoff and jitter; botocore's own retries stay short.
    retries={"mode": "standard", "max_attempts": 2},
)
# Credentials of an assumed manager role are refreshed this long before they expire.
_REFRESH_MARGIN_SECONDS = 300
_SESSION_NAME = "rolegate-iam-sync"

# --- clients ---------------------------------------------------------------------------------

_lock = threading.Lock()
_base_clients: dict[str, Any] = {}  # service name -> client (boto3 types it by its name only)
_assumed: dict[str, tuple[float, IAMClient]] = {}  # manager role ARN -> (expires at, IAM client)


def reset_clients() -> None:
    """Forget every cached client (tests; a changed environment)."""
    with _lock:
        _base_clients.clear()
        _assumed.clear()


def _base_client(service: str) -> Any:
    with _lock:
        client = _base_clients.get(service)
        if client is None:
            client = _base_clients[service] = boto3.session.Session().client(service, config=_CONFIG)
        return client


def sts_client() -> STSClient:
    """The STS client of the worker's own credentials."""
    client: STSClient = _base_client("sts")
    return client


def iam_client(manager_role_arn: str | None = None) -> IAMClient:
    """The IAM client for an account: the worker's own credentials, or the manager role's."""
    if not manager_role_arn:
        base: IAMClient = _base_client("iam")
        return base
    with _lock:
        cached = _assumed.get(manager_role_arn)
    if cached and cached[0] - _REFRESH_MARGIN_SECONDS > time.time():
        return cached[1]
    credentials = assume_manager_role(manager_role_arn)
    client: IAMClient = boto3.session.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    ).client("iam", config=_CONFIG)
    with _lock:
        _assumed[manager_role_arn] = (credentials["Expiration"].timestamp(), client)
    return client


def assume_manager_role(role_arn: str) -> CredentialsTypeDef:
    """Temporary credentials of ``role_arn`` (``Credentials`` of STS AssumeRole); never logged.

    https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html
    """
    with _aws_errors():
        return sts_client().assume_role(RoleArn=role_arn, RoleSessionName=_SESSION_NAME)["Credentials"]


# --- OIDC providers --------------------------------------------------------------------------


def get_oidc_provider_client_ids(arn: str, *, manager_role_arn: str | None = None) -> list[str] | None:
    """The client ids of an OIDC provider, or ``None`` when it does not exist.

    https://docs.aws.amazon.com/IAM/latest/APIReference/API_GetOpenIDConnectProvider.html
    """
    try:
        with _aws_errors():
            response = iam_client(manager_role_arn).get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    except AwsPermanentError as exc:
        if exc.code == "NoSuchEntity":
            return None
        raise
    return list(response.get("ClientIDList", []))


def ensure_oidc_provider(
    *, account_id: str, url: str, client_ids: list[str], manager_role_arn: str | None = None, dry_run: bool = False
) -> str:
    """Make the account's OIDC provider for ``url`` exist and list ``client_ids``; returns the
    outcome ``created``, ``updated`` or ``unchanged`` (what would happen, with ``dry_run``).

    No thumbprints are sent: IAM secures OIDC providers with its own library of trusted CAs and
    ``ThumbprintList`` is optional.
    https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateOpenIDConnectProvider.html
    https://docs.aws.amazon.com/IAM/latest/APIReference/API_AddClientIDToOpenIDConnectProvider.html
    """
    arn = provider_arn(account_id, url)
    existing = get_oidc_provider_client_ids(arn, manager_role_arn=manager_role_arn)
    client = iam_client(manager_role_arn)
    if existing is None:
        if dry_run:
            return CREATED
        try:
            with _aws_errors():
                client.create_open_id_connect_provider(Url=url, ClientIDList=sorted(set(client_ids)))
            return CREATED
        except AwsPermanentError as exc:
            if exc.code != "EntityAlreadyExists":
                raise
            # Another worker created it a moment ago: carry on with its client ids.
            existing = get_oidc_provider_client_ids(arn, manager_role_arn=manager_role_arn) or []
    missing = sorted(set(client_ids) - set(existing))
    if not missing:
        return UNCHANGED
    if not dry_run:
        for client_id in missing:
            with _aws_errors():
                client.add_client_id_to_open_id_connect_provider(OpenIDConnectProviderArn=arn, ClientID=client_id)
    return UPDATED


# --- role trust policies ---------------------------------------------------------------------


def _decode_policy(document: object) -> dict[str, Any]:
    if isinstance(document, str):
        document = json.loads(unquote(document))
    if isinstance(document, dict):
        return document
    raise AwsPermanentError("MalformedPolicyDocument", f"unexpected trust policy {type(document).__name__}")


def get_role_trust_policy(role_name: str, *, manager_role_arn: str | None = None) -> dict[str, Any] | None:
    """The role's trust policy (URL-decoded JSON), or ``None`` when the role does not exist.

    https://docs.aws.amazon.com/IAM/latest/APIReference/API_GetRole.html
    """
    try:
        with _aws_errors():
            role = iam_client(manager_role_arn).get_role(RoleName=role_name)["Role"]
    except AwsPermanentError as exc:
        if exc.code == "NoSuchEntity":
            return None
        raise
    return _decode_policy(role.get("AssumeRolePolicyDocument", "{}"))


def update_role_trust_policy(role_name: str, policy_text: str, *, manager_role_arn: str | None = None) -> None:
    """Replace the role's trust policy with ``policy_text`` (minified JSON).

    https://docs.aws.amazon.com/IAM/latest/APIReference/API_UpdateAssumeRolePolicy.html
    """
    with _aws_errors():
        iam_client(manager_role_arn).update_assume_role_policy(RoleName=role_name, PolicyDocument=policy_text)


# --- the revoke-older-sessions inline policy (the one permission policy Rolegate writes) -------


def get_role_inline_policy(
    role_name: str, policy_name: str, *, manager_role_arn: str | None = None
) -> dict[str, Any] | None:
    """One inline policy of the role (URL-decoded JSON), or ``None`` when it has none so named.

    https://docs.aws.amazon.com/IAM/latest/APIReference/API_GetRolePolicy.html
    """
    try:
        with _aws_errors():
            response = iam_client(manager_role_arn).get_role_policy(RoleName=role_name, PolicyName=policy_name)
    except AwsPermanentError as exc:
        if exc.code == "NoSuchEntity":
            return None
        raise
    return _decode_policy(response.get("PolicyDocument", "{}"))


def put_role_inline_policy(
    role_name: str, policy_name: str, policy_text: str, *, manager_role_arn: str | None = None
) -> None:
    """Create or replace one inline policy of the role; the role's other policies are untouched.

    https://docs.aws.amazon.com/IAM/latest/APIReference/API_PutRolePolicy.html
    """
    with _aws_errors():
        iam_client(manager_role_arn).put_role_policy(
            RoleName=role_name, PolicyName=policy_name, PolicyDocument=policy_text
        )
