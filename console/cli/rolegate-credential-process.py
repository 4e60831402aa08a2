#!/usr/bin/env python3
"""Rolegate credential_process helper (stdlib only, Python 3.8+).

Exchanges the GitLab CI ID token in an environment variable for temporary AWS credentials from
Rolegate (POST /api/v1/credentials) and prints them in AWS's credential_process format, so
``~/.aws/config`` can use it:

    [profile deploy]
    credential_process = python3 /path/rolegate-credential-process.py --url https://rolegate.example.com \
        --role-arn arn:aws:iam::123456789012:role/deploy

The token is read from $ROLEGATE_ID_TOKEN (``--token-env`` names another variable) and is never
printed. Exits 1 with a one-line reason on standard error when Rolegate refuses.
"""

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT = "urn:ietf:params:oauth:token-type:jwt"


def main(argv=None):
    parser = argparse.ArgumentParser(description="Print AWS credentials from Rolegate for credential_process.")
    parser.add_argument("--url", default=os.environ.get("ROLEGATE_URL"), help="Rolegate's base URL ($ROLEGATE_URL)")
    parser.add_argument("--role-arn", default=os.environ.get("ROLEGATE_ROLE_ARN"), help="the role to assume")
    parser.add_argument("--token-env", default="ROLEGATE_ID_TOKEN", help="variable holding the GitLab ID token")
    parser.add_argument("--duration-seconds", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)

    if not args.url:
        return fail("no Rolegate URL: pass --url or set ROLEGATE_URL")
    token = os.environ.get(args.token_env)
    if not token:
        return fail(f"${args.token_env} is empty: add an id_tokens entry named {args.token_env} to the job")
    fields = {"grant_type": TOKEN_EXCHANGE, "subject_token": token, "subject_token_type": JWT}
    if args.role_arn:
        fields["audience"] = args.role_arn
    if args.duration_seconds:
        fields["duration_seconds"] = str(args.duration_seconds)
    request = urllib.request.Request(
        args.url.rstrip("/") + "/api/v1/credentials",
        data=urllib.parse.urlencode(fields).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            body = json.loads(response.read().decode())
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read().decode())
            reason = f"{error.get('error')}: {error.get('error_description')} (request {error.get('request_id')})"
        except ValueError:
            reason = f"HTTP {exc.code}"
        return fail("Rolegate refused: " + reason)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return fail(f"cannot reach Rolegate at {args.url}: {exc}")
    if body.get("Version") != 1 or "AccessKeyId" not in body:
        return fail("Rolegate's answer is not credential_process JSON")
    sys.stdout.write(json.dumps(body) + "\n")
    return 0


def fail(reason):
    sys.stderr.write("rolegate-credential-process: " + reason + "\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
