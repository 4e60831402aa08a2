"""Ready-to-paste CI configuration for a mapping (shown on the mapping's admin page)."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from mappings.models import Mapping

TOKEN_VARIABLE = "ROLEGATE_ID_TOKEN"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"


@dataclass(frozen=True)
class Snippets:
    credentials_job: str
    sts_job: str
    aws_config: str
    script_url: str


def _yaml_str(value: str) -> str:
    """A YAML double-quoted scalar."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _conditions(mapping: Mapping) -> list[str]:
    """What the job must be, as comments: the mapping's conditions."""
    lines = [f"# Rolegate mapping {mapping.name!r} grants this role to jobs of:"]
    lines.append(f"#   project {mapping.project}, {mapping.ref_type} ref {mapping.ref}")
    if mapping.protected:
        lines.append("#   protected refs only")
    if mapping.environment:
        lines.append(f"#   environment {mapping.environment}")
    if mapping.pipeline_sources:
        lines.append(f"#   pipeline sources {', '.join(mapping.pipeline_sources)}")
    return lines


def mapping_snippets(mapping: Mapping, *, rolegate_url: str | None = None) -> Snippets:
    base = (rolegate_url or settings.ROLEGATE_ISSUER).rstrip("/")
    audience = (mapping.issuer.audiences or [base])[0]
    arn = mapping.role.arn
    job = f"assume-{mapping.role.name}".lower()
    environment = []
    if mapping.environment and "*" not in mapping.environment and "?" not in mapping.environment:
        environment = [f"  environment: {_yaml_str(mapping.environment)}"]
    head = [
        *_conditions(mapping),
        f"{job}:",
        *environment,
        "  id_tokens:",
        f"    {TOKEN_VARIABLE}:",
        f"      aud: {_yaml_str(audience)}",
    ]
    exchange = (
        "curl --silent --show-error --fail-with-body"
        f' --data-urlencode "grant_type={TOKEN_EXCHANGE}"'
        f' --data-urlencode "subject_token=${{{TOKEN_VARIABLE}}}"'
        f' --data-urlencode "subject_token_type={JWT_TYPE}"'
        f' --data-urlencode "audience={arn}"'
    )
    credentials_job = "\n".join(
        [
            *head,
            "  script:",
            "    # Temporary AWS credentials from Rolegate, in credential_process format, kept outside the",
            "    # project directory so that no artifacts: or cache: entry can pick them up.",
            "    - mkdir -p ~/.aws",
            "    - >",
            f"      {exchange}",
            f'      --output "$HOME/.aws/rolegate-credentials.json" {base}/api/v1/credentials',
            "    - printf '[default]\\ncredential_process = cat %s\\n' \"$HOME/.aws/rolegate-credentials.json\""
            " > ~/.aws/config",
            "    - aws sts get-caller-identity",
        ]
    )
    sts_job = "\n".join(
        [
            *head,
            "  script:",
            "    # A Rolegate-signed token, then AWS STS directly (needs the AWS CLI and python3).",
            "    - >",
            f"      ROLEGATE_TOKEN=$({exchange} {base}/api/v1/token",
            "      | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')",
            "    - >",
            "      export $(printf 'AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s AWS_SESSION_TOKEN=%s'",
            "      $(aws sts assume-role-with-web-identity",
            f"      --role-arn {arn}",
            '      --role-session-name "gl-${CI_PROJECT_ID}-${CI_JOB_ID}"',
            '      --web-identity-token "$ROLEGATE_TOKEN"',
            "      --query 'Credentials.[AccessKeyId,SecretAccessKey,SessionToken]' --output text))",
            "    - aws sts get-caller-identity",
        ]
    )
    script_url = f"{base}/cli/rolegate-credential-process.py"
    aws_config = "\n".join(
        [
            f"# curl -o /opt/rolegate/rolegate-credential-process.py {script_url}",
            f"[profile {mapping.role.name}]",
            "credential_process = python3 /opt/rolegate/rolegate-credential-process.py"
            f" --url {base} --role-arn {arn} --token-env {TOKEN_VARIABLE}",
        ]
    )
    return Snippets(credentials_job=credentials_job, sts_job=sts_job, aws_config=aws_config, script_url=script_url)
