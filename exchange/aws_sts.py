"""AWS STS, the one call the exchange makes: ``AssumeRoleWithWebIdentity``.

The only boto3 user for it. The client is built lazily, once per process; its endpoint follows
boto3's standard ``AWS_ENDPOINT_URL_STS`` / ``AWS_ENDPOINT_URL``. The call is unsigned (the web
identity token is the credential), so Rolegate needs no AWS credentials for it. Failures are
classified as the IAM sync's are (``mappings.aws_errors``): transient or permanent.
https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRoleWithWebIdentity.html
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from django.views.decorators.debug import sensitive_variables

from mappings.aws_errors import aws_errors

if TYPE_CHECKING:  # the service stubs are a development dependency (requirements-dev.txt)
    from mypy_boto3_sts import STSClient

_lock = threading.Lock()
_client: STSClient | None = None


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)  # never in a repr, a log line or an error page
    session_token: str = field(repr=False)
    expiration: datetime


def client() -> STSClient:
    """The process's STS client, built on first use."""
    global _client
    if _client is None:
        with _lock:
            if _client is None:
                region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
                _client = boto3.session.Session().client(
                    "sts",
                    region_name=region,
                    config=Config(
                        signature_version=UNSIGNED,
                        connect_timeout=3,
                        read_timeout=5,
                        retries={"max_attempts": 2, "mode": "standard"},
                    ),
                )
    return _client


def reset_client() -> None:
    """Forget the cached client (tests; after changing the endpoint environment)."""
    global _client
    with _lock:
        _client = None


@sensitive_variables()
def assume_role_with_web_identity(
    *, role_arn: str, role_session_name: str, web_identity_token: str, duration_seconds: int
) -> Credentials:
    """Temporary credentials for ``role_arn``; ``AwsPermanentError`` when STS says no (its ``code``
    is STS's error code), ``AwsTransientError`` when it throttles, fails or cannot be reached."""
    with aws_errors():
        response = client().assume_role_with_web_identity(
            RoleArn=role_arn,
            RoleSessionName=role_session_name,
            WebIdentityToken=web_identity_token,
            DurationSeconds=duration_seconds,
        )
    creds = response["Credentials"]
    return Credentials(
        access_key_id=creds["AccessKeyId"],
        secret_access_key=creds["SecretAccessKey"],
        session_token=creds["SessionToken"],
        expiration=creds["Expiration"],
    )
