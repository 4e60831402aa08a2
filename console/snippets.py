"""Ready-to-paste CI configuration for a mapping (shown on the mapping's admin page).

Every job fails closed: it takes away the runner's own AWS credentials (environment keys,
``~/.aws``, container and instance-profile credentials) before anything else, stops at the first
failure without relying on ``set -e``, and on a refusal prints Rolegate's answer (``error``,
``error_description``, ``request_id``) rather than curl's status line. The flows are described in
docs/ci-jobs.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from mappings.models import Account, Mapping

TOKEN_VARIABLE = "ROLEGATE_ID_TOKEN"
DIRECT_TOKEN_VARIABLE = "AWS_ID_TOKEN"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
COMPONENT_HIDDEN_JOB = ".rolegate-aws"

# Variables through which a runner could hand a job its own AWS identity.
AMBIENT_AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_SECURITY_TOKEN AWS_PROFILE"
    " AWS_DEFAULT_PROFILE AWS_ROLE_ARN AWS_ROLE_SESSION_NAME AWS_WEB_IDENTITY_TOKEN_FILE"
    " AWS_CONTAINER_CREDENTIALS_RELATIVE_URI AWS_CONTAINER_CREDENTIALS_FULL_URI"
    " AWS_CONTAINER_AUTHORIZATION_TOKEN AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"
)
# The first lines of every script: no ambient credentials, a private AWS config of the job's own.
PRIVATE_AWS = (
    "# No ambient AWS credentials in this job (runner keys, ~/.aws, container or instance profile).",
    f"unset {AMBIENT_AWS_VARIABLES}",
    "export AWS_EC2_METADATA_DISABLED=true",
    'ROLEGATE_DIR="$(mktemp -d "${TMPDIR:-/tmp}/rolegate-job.XXXXXXXX")" || exit 1',
    'export AWS_CONFIG_FILE="$ROLEGATE_DIR/config" AWS_SHARED_CREDENTIALS_FILE="$ROLEGATE_DIR/credentials"',
    ': > "$AWS_SHARED_CREDENTIALS_FILE" || exit 1',
)


@dataclass(frozen=True)
class Snippets:
    direct: bool  # the role's account is in direct mode: only ``direct_job`` applies
    component_job: str | None  # the GitLab CI/CD component (brokered accounts)
    credentials_job: str | None  # POST /api/v1/credentials with curl
    sts_job: str | None  # POST /api/v1/token, then STS AssumeRoleWithWebIdentity
    direct_job: str | None  # GitLab's token straight to STS (direct accounts)
    aws_config: str | None  # the credential_process helper in ~/.aws/config
    script_url: str
    component: str


def _yaml_str(value: str) -> str:
    """A YAML double-quoted scalar."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def example_environment(pattern: str) -> str:
    """A concrete environment name that ``pattern`` (IAM StringLike) matches."""
    return pattern.replace("*", "example").replace("?", "x")


def _conditions(mapping: Mapping) -> list[str]:
    """What the job must be, as comments: the mapping's conditions."""
    lines = [f"# Rolegate mapping {mapping.name!r} grants this role to jobs of:"]
    lines.append(f"#   project {mapping.project}, {mapping.ref_type} ref {mapping.ref}")
    if mapping.project_id:
        lines.append(f"#   project id {mapping.project_id} only (CI_PROJECT_ID)")
    if mapping.namespace_id:
        lines.append(f"#   namespace id {mapping.namespace_id} only (CI_PROJECT_NAMESPACE_ID)")
    if mapping.protected:
        lines.append("#   protected refs only")
    if mapping.environment:
        lines.append(f"#   environment {mapping.environment}")
    if mapping.pipeline_sources:
        lines.append(f"#   pipeline sources {', '.join(mapping.pipeline_sources)}")
    return lines


def _environment(mapping: Mapping) -> list[str]:
    """The job's ``environment:`` (GitLab puts it in the ID token's environment claim)."""
    if mapping.environment is None:
        return []
    pattern = mapping.environment
    if "*" not in pattern and "?" not in pattern:
        return [f"  environment: {_yaml_str(pattern)}"]
    return [
        f"  # The mapping takes any environment matching {pattern!r}; {example_environment(pattern)!r} is one.",
        "  # Name the job's environment so that it matches: GitLab puts it in the ID token.",
        f"  environment: {_yaml_str(example_environment(pattern))}",
    ]


def _block(lines: list[str] | tuple[str, ...]) -> list[str]:
    """A ``script:`` entry holding several shell lines (one shell, stops at the first failure)."""
    return ["    - |", *(f"      {line}" for line in lines)]


def _exchange(endpoint_url: str, arn: str, *, extra: str = "") -> list[str]:
    """POST the job's token (read from standard input, never on a command line) and stop the job,
    showing Rolegate's answer, unless the status is 200."""
    return [
        f'status="$(printf \'%s\' "${TOKEN_VARIABLE}" | curl --silent --show-error'
        ' --output "$ROLEGATE_DIR/answer.json" --write-out "%{http_code}"'
        f' --data-urlencode "grant_type={TOKEN_EXCHANGE}" --data-urlencode "subject_token@-"'
        f' --data-urlencode "subject_token_type={JWT_TYPE}" --data-urlencode "audience={arn}"{extra}'
        f' {endpoint_url})" || exit 1',
        'if [ "$status" != 200 ]; then echo "Rolegate refused (HTTP $status):" >&2;'
        ' cat "$ROLEGATE_DIR/answer.json" >&2; echo >&2; exit 1; fi',
    ]


CAT_CREDENTIALS = [
    "printf '[default]\\ncredential_process = cat %s\\n' \"$ROLEGATE_DIR/credentials.json\""
    ' > "$AWS_CONFIG_FILE" || exit 1',
]


def mapping_snippets(mapping: Mapping, *, rolegate_url: str | None = None, component: str | None = None) -> Snippets:
    base = (rolegate_url or settings.ROLEGATE_ISSUER).rstrip("/")
    component = component or settings.ROLEGATE_CI_COMPONENT
    role = mapping.role
    audience = (mapping.issuer.audiences or [base])[0]
    arn = role.arn
    job = f"assume-{role.name}".lower()
    script_url = f"{base}/cli/rolegate-credential-process.py"
    conditions = _conditions(mapping)
    environment = _environment(mapping)

    if role.account.mode == Account.Mode.DIRECT:
        direct_job = "\n".join(
            [
                *conditions,
                f"# Account {role.account.name!r} is in direct mode: its roles trust GitLab itself, so the job",
                "# sends GitLab's ID token straight to AWS STS; Rolegate does not broker it (direct_mode_account).",
                f"{job}:",
                *environment,
                "  id_tokens:",
                f"    {DIRECT_TOKEN_VARIABLE}:",
                "      # One of the issuer's audiences: the client ids of its OIDC provider in the account.",
                f"      aud: {_yaml_str(audience)}",
                "  script:",
                *_block(
                    [
                        *PRIVATE_AWS,
                        f'[ -n "${{{DIRECT_TOKEN_VARIABLE}:-}}" ] || {{ echo "No GitLab ID token in'
                        f' \\${DIRECT_TOKEN_VARIABLE}: the job needs its id_tokens entry." >&2; exit 1; }}',
                        f'printf \'%s\' "${DIRECT_TOKEN_VARIABLE}" > "$ROLEGATE_DIR/web-identity-token" || exit 1',
                        "# The AWS CLI and SDKs call AssumeRoleWithWebIdentity with the token file (and again",
                        "# when the session runs low); a refusal fails the command.",
                        "printf '[default]\\nrole_arn = %s\\nweb_identity_token_file = %s\\nrole_session_name = %s\\n'"
                        f' "{arn}" "$ROLEGATE_DIR/web-identity-token" "gl-${{CI_PROJECT_ID}}-${{CI_JOB_ID}}"'
                        ' > "$AWS_CONFIG_FILE" || exit 1',
                        "aws sts get-caller-identity --query Arn --output text || exit 1  # STS's answer, now",
                    ]
                ),
                "    - aws sts get-caller-identity",
            ]
        )
        return Snippets(
            direct=True,
            component_job=None,
            credentials_job=None,
            sts_job=None,
            direct_job=direct_job,
            aws_config=None,
            script_url=script_url,
            component=component,
        )

    head = [
        *conditions,
        f"{job}:",
        *environment,
        "  id_tokens:",
        f"    {TOKEN_VARIABLE}:",
        f"      aud: {_yaml_str(audience)}",
    ]
    component_job = "\n".join(
        [
            *conditions,
            "# The session lasts until the job's ID token expires (the job's timeout), within the",
            "# role's maximum session; every AWS command of the job reuses it.",
            "include:",
            f"  - component: {component}",
            "    inputs:",
            f"      rolegate_url: {_yaml_str(base)}",
            f"      role_arn: {_yaml_str(arn)}",
            f"      audience: {_yaml_str(audience)}",
            f"      max_session_seconds: {role.max_session_seconds}",
            "",
            f"{job}:",
            f"  extends: {COMPONENT_HIDDEN_JOB}",
            *environment,
            "  script:",
            "    - aws sts get-caller-identity",
        ]
    )
    credentials_job = "\n".join(
        [
            *head,
            "  script:",
            *_block(
                [
                    *PRIVATE_AWS,
                    "# Temporary credentials from Rolegate (credential_process JSON), outside the project",
                    "# directory so that no artifacts: or cache: entry picks them up. For a session longer",
                    "# than Rolegate's default hour, add: --data-urlencode duration_seconds=N (900 to "
                    f"{role.max_session_seconds}).",
                    *_exchange(f"{base}/api/v1/credentials", arn),
                    'mv "$ROLEGATE_DIR/answer.json" "$ROLEGATE_DIR/credentials.json" || exit 1',
                    *CAT_CREDENTIALS,
                ]
            ),
            "    - aws sts get-caller-identity",
        ]
    )
    sts_duration = min(3600, role.max_session_seconds)
    sts_job = "\n".join(
        [
            *head,
            "  script:",
            *_block(
                [
                    *PRIVATE_AWS,
                    "# A Rolegate-signed token (valid 5 minutes), then AWS STS AssumeRoleWithWebIdentity.",
                    *_exchange(f"{base}/api/v1/token", arn),
                    'sed -n \'s/.*"access_token": *"\\([^"]*\\)".*/\\1/p\' "$ROLEGATE_DIR/answer.json"'
                    ' > "$ROLEGATE_DIR/web-identity-token" || exit 1',
                    f"aws sts assume-role-with-web-identity --role-arn {arn}"
                    ' --role-session-name "gl-${CI_PROJECT_ID}-${CI_JOB_ID}"'
                    ' --web-identity-token "file://$ROLEGATE_DIR/web-identity-token"'
                    f" --duration-seconds {sts_duration}"
                    " --query '{Version: `1`, AccessKeyId: Credentials.AccessKeyId,"
                    " SecretAccessKey: Credentials.SecretAccessKey, SessionToken: Credentials.SessionToken,"
                    " Expiration: Credentials.Expiration}'"
                    ' --output json > "$ROLEGATE_DIR/credentials.json" || exit 1',
                    *CAT_CREDENTIALS,
                ]
            ),
            "    - aws sts get-caller-identity",
        ]
    )
    aws_config = "\n".join(
        [
            f"# curl -o /opt/rolegate/rolegate-credential-process.py {script_url}",
            f"[profile {role.name}]",
            "credential_process = python3 /opt/rolegate/rolegate-credential-process.py"
            f" --url {base} --role-arn {arn} --max-session-seconds {role.max_session_seconds}"
            f" --token-env {TOKEN_VARIABLE}",
        ]
    )
    return Snippets(
        direct=False,
        component_job=component_job,
        credentials_job=credentials_job,
        sts_job=sts_job,
        direct_job=None,
        aws_config=aws_config,
        script_url=script_url,
        component=component,
    )
