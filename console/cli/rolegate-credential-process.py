#!/usr/bin/env python3
"""Rolegate credential_process helper (standard library only, Python 3.8+).

Exchanges the job's GitLab CI ID token for temporary AWS credentials from Rolegate
(``POST /api/v1/credentials``) once per job and role, and prints them in AWS's credential_process
format, so the AWS CLI and SDKs can use it from ``~/.aws/config``:

    [profile deploy]
    credential_process = python3 /path/rolegate-credential-process.py --url https://rolegate.example.com
        --role-arn arn:aws:iam::123456789012:role/deploy --max-session-seconds 3600

(one line). Every AWS CLI command runs credential_process again, and Rolegate exchanges a GitLab
token only once per role, so the credentials are cached and reused until shortly before they
expire:

- where: ``$ROLEGATE_CACHE_DIR``, else ``$XDG_RUNTIME_DIR/rolegate``, else
  ``${TMPDIR:-/tmp}/rolegate-<uid>`` (never inside ``$CI_PROJECT_DIR``, where ``artifacts:`` and
  ``cache:`` could pick the files up); the folder is 0700 and owned by the user, the files 0600,
  written atomically (temporary file + rename);
- under which name: an HMAC of the token, role, duration and URL (never the token itself), and
  encrypted and authenticated with keys derived from the token, so a job holding another token
  can neither find nor read the entry;
- for how long: the session asked for lasts, by default, until the GitLab token's own ``exp``
  (read from the token without verifying it; Rolegate verifies it), at least STS's 900 seconds and
  at most ``--max-session-seconds`` (the role's maximum, 3600 when not given). The cached
  credentials are served with their real ``Expiration`` until less than 60 seconds are left.
  botocore runs credential_process again whenever less than 15 minutes are left (its "advisory"
  window; an error there is ignored) and fails on errors only when less than 10 minutes are left
  ("mandatory"): in both windows the cache answers with the same credentials, without a request.
  When a job outlives its session (the role's maximum is shorter than the job), the helper says
  so and what to change: a second exchange would be refused as a replay.

The token is read from ``$ROLEGATE_ID_TOKEN`` (``--token-env`` names another variable) and never
printed. Exits 1 with a one-line reason on standard error when Rolegate refuses (its ``error``,
``error_description`` and ``request_id``) or the session cannot be served.
"""

import argparse
import base64
import calendar
import contextlib
import hashlib
import hmac
import json
import math
import os
import re
import stat
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

try:  # Unix; elsewhere the cache works without a lock
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]  # the module or None, tested before use

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT = "urn:ietf:params:oauth:token-type:jwt"
STS_MIN_SECONDS = 900  # AssumeRoleWithWebIdentity's shortest session
STS_MAX_SECONDS = 43200  # and its longest
DEFAULT_MAX_SESSION_SECONDS = 3600  # IAM's default MaxSessionDuration, when the role's is not given
EXPIRY_MARGIN_SECONDS = 60  # cached credentials are served while they have more than this left
CACHE_VERSION = b"rolegate-credential-process/1"
_ENTRY_NAME = re.compile(r"\A[0-9a-f]{64}\.json\Z")
_ISO8601 = re.compile(r"\A(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.\d+)?(Z|[+-]\d\d:?\d\d)?\Z")
PROG = "rolegate-credential-process"


class Failure(Exception):
    """A reason to exit 1, as one line."""


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        return run(args)
    except Failure as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        return 1


def _parser():
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog=PROG, description="Print AWS credentials from Rolegate for the AWS CLI's credential_process."
    )
    parser.add_argument("--url", default=env("ROLEGATE_URL"), help="Rolegate's base URL ($ROLEGATE_URL)")
    parser.add_argument("--role-arn", default=env("ROLEGATE_ROLE_ARN"), help="the role to assume ($ROLEGATE_ROLE_ARN)")
    parser.add_argument("--token-env", default="ROLEGATE_ID_TOKEN", help="variable holding the GitLab ID token")
    parser.add_argument(
        "--duration-seconds",
        default=env("ROLEGATE_DURATION_SECONDS") or "auto",
        help="session length (900..43200), or 'auto': until the GitLab token expires ($ROLEGATE_DURATION_SECONDS)",
    )
    parser.add_argument(
        "--max-session-seconds",
        default=env("ROLEGATE_MAX_SESSION_SECONDS") or None,
        help=f"the role's maximum session; 'auto' never asks for more (default {DEFAULT_MAX_SESSION_SECONDS})",
    )
    parser.add_argument("--cache-dir", default=env("ROLEGATE_CACHE_DIR") or None, help="private folder for the cache")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for Rolegate")
    return parser


def _seconds(value, name):
    try:
        number = int(str(value).strip())
    except ValueError:
        raise Failure(f"{name} must be a number of seconds, not {str(value)[:40]!r}") from None
    if not STS_MIN_SECONDS <= number <= STS_MAX_SECONDS:
        raise Failure(f"{name} must be between {STS_MIN_SECONDS} and {STS_MAX_SECONDS} seconds, not {number}")
    return number


def run(args):
    if not args.url:
        raise Failure("no Rolegate URL: pass --url or set ROLEGATE_URL")
    token = os.environ.get(args.token_env, "")
    if not token:
        raise Failure(f"${args.token_env} is empty: add an id_tokens entry named {args.token_env} to the job")
    duration_arg = str(args.duration_seconds).strip().lower()
    fixed_duration = None if duration_arg == "auto" else _seconds(duration_arg, "--duration-seconds")
    max_session = args.max_session_seconds
    if max_session is not None:
        max_session = _seconds(max_session, "--max-session-seconds")
    role = args.role_arn or ""
    context = "\0".join([args.url.rstrip("/"), role, str(fixed_duration or "auto")]).encode()
    cache = Cache(cache_dir(args.cache_dir), token.encode(), context)
    with cache.locked():
        entry = cache.load()
        now = time.time()
        if entry is not None:
            if entry["expires"] - now > EXPIRY_MARGIN_SECONDS:
                _print(entry["credentials"])
                return 0
            raise Failure(_outlived(entry, role, now))
        token_exp = token_expiry(token)
        duration = fixed_duration or auto_duration(token_exp, max_session, now)
        credentials, request_id = exchange(args, token, role, duration, max_session)
        expires = parse_time(credentials["Expiration"])
        if expires is None:
            raise Failure("Rolegate's answer has no readable Expiration")
        entry = {
            "credentials": credentials,
            "expires": expires,
            "issued": now,
            "token_exp": token_exp,
            "max_session": max_session,
        }
        cache.store(entry, keep_until=min(max(expires, token_exp or 0), now + 31 * 86400))
    _note(entry, role, request_id)
    _print(credentials)
    return 0


def _print(credentials):
    sys.stdout.write(json.dumps(credentials) + "\n")


def token_expiry(token):
    """The token's ``exp`` (seconds since the epoch), read WITHOUT verifying it, or ``None``."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = claims["exp"]
    except (IndexError, ValueError, TypeError, KeyError):
        return None
    if isinstance(exp, bool) or not isinstance(exp, (int, float)) or not math.isfinite(exp):
        return None
    return int(exp)


def auto_duration(token_exp, max_session, now):
    """Until the token expires, within [900, the role's maximum]; ``None``: Rolegate's default."""
    if token_exp is None:
        return None
    cap = max_session or DEFAULT_MAX_SESSION_SECONDS
    return max(STS_MIN_SECONDS, min(cap, math.ceil(token_exp - now)))


def exchange(args, token, role, duration, max_session):
    fields = {"grant_type": TOKEN_EXCHANGE, "subject_token": token, "subject_token_type": JWT}
    if role:
        fields["audience"] = role
    if duration:
        fields["duration_seconds"] = str(duration)
    request = urllib.request.Request(
        args.url.rstrip("/") + "/api/v1/credentials",
        data=urllib.parse.urlencode(fields).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            body = json.loads(response.read().decode())
            request_id = response.headers.get("X-Request-ID")
    except urllib.error.HTTPError as exc:
        raise Failure(_refusal(exc, duration, max_session)) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise Failure(f"cannot reach Rolegate at {args.url}: {exc}") from None
    if not isinstance(body, dict) or body.get("Version") != 1 or "AccessKeyId" not in body:
        raise Failure("Rolegate's answer is not credential_process JSON")
    return body, request_id


def _refusal(exc, duration, max_session):
    try:
        error = json.loads(exc.read().decode())
        code, description = error.get("error"), error.get("error_description")
        reason = f"{code}: {description} (request_id {error.get('request_id')})"
    except (ValueError, AttributeError, OSError):
        return f"Rolegate refused: HTTP {exc.code}"
    hint = ""
    if code == "invalid_grant" and "already exchanged" in str(description):
        hint = (
            " A GitLab ID token is exchanged once per role: a helper with another cache folder or"
            " --duration-seconds, or another process, exchanged this one first."
        )
    elif code == "invalid_target" and duration and "maximum session" in str(description):
        hint = (
            f" The helper asked for {duration} s: set --max-session-seconds (the component's"
            " max_session_seconds input) to the role's maximum session."
            if max_session is None or duration > max_session
            else f" Lower --max-session-seconds ({max_session}) to the role's maximum session."
        )
    return "Rolegate refused: " + reason + hint


def _outlived(entry, role, now):
    expires, token_exp = entry["expires"], entry.get("token_exp")
    length = round(expires - entry["issued"])
    verb = "ended" if expires <= now else "ends"
    what = f"the AWS session Rolegate issued for {role or 'the role'} ({length} s) {verb} at {_utc(expires)}"
    if token_exp is None or token_exp <= expires:
        return (
            f"{what}, and this job's GitLab ID token has expired too: the job ran past its timeout."
            " A token is exchanged once per role, so there is no second session."
        )
    needed = math.ceil(token_exp - entry["issued"])
    return (
        f"this job outlived its AWS session: {what}, but the job's GitLab ID token is valid until"
        f" {_utc(token_exp)}, and a token is exchanged once per role, so there is no second session."
        f" Raise the role's max_session_seconds in Rolegate (and the component's max_session_seconds"
        f" input, or --max-session-seconds) to at least {min(needed, STS_MAX_SECONDS)} s, or shorten the job"
        " (its timeout sets the token's lifetime) or split it."
    )


def _note(entry, role, request_id):
    """One line on standard error for the job log (the AWS CLI shows it only on failure)."""
    expires, token_exp = entry["expires"], entry.get("token_exp")
    line = f"{PROG}: AWS session for {role or 'the role'} until {_utc(expires)} (request_id {request_id})"
    if token_exp is not None and expires + EXPIRY_MARGIN_SECONDS < token_exp:
        line += (
            f"; it ends before the job's ID token ({_utc(token_exp)}): AWS commands after"
            f" {_utc(expires - EXPIRY_MARGIN_SECONDS)} will fail (the role's maximum session is shorter than the job)"
        )
    sys.stderr.write(line + "\n")


def _utc(timestamp):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def parse_time(text):
    """An ISO 8601 time (as STS and Rolegate write ``Expiration``) as seconds since the epoch."""
    match = _ISO8601.match(str(text))
    if not match:
        return None
    year, month, day, hour, minute, second, zone = match.groups()
    epoch = calendar.timegm((int(year), int(month), int(day), int(hour), int(minute), int(second)))
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        epoch -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return epoch


# --- the cache ----------------------------------------------------------------------------------


def _inside(path, folder):
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def cache_dir(explicit=None):
    """The private cache folder, created 0700 if needed; :class:`Failure` if it is not private."""
    project = os.environ.get("CI_PROJECT_DIR")
    uid = os.geteuid() if hasattr(os, "geteuid") else None
    if explicit:
        if project and _inside(explicit, project):
            raise Failure(f"cache folder {explicit} is inside $CI_PROJECT_DIR, where artifacts and caches come from")
        return _private_dir(explicit)
    candidates = []
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime) and os.path.isdir(runtime):
        candidates.append(os.path.join(runtime, "rolegate"))
    suffix = f"rolegate-{uid}" if uid is not None else "rolegate"
    candidates.append(os.path.join(tempfile.gettempdir(), suffix))  # $TMPDIR, else /tmp
    candidates.append(os.path.join("/tmp", suffix))  # noqa: S108 (private: checked by _private_dir)
    for candidate in candidates:
        if project and _inside(candidate, project):
            continue
        return _private_dir(candidate)
    raise Failure("no cache folder outside $CI_PROJECT_DIR: set ROLEGATE_CACHE_DIR")


def _private_dir(path):
    path = os.path.abspath(path)
    try:
        os.makedirs(path, mode=0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise Failure(f"cannot create the cache folder {path}: {exc.strerror}") from None
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise Failure(f"cache folder {path} is not a folder (a link?): remove it or set ROLEGATE_CACHE_DIR")
    if hasattr(os, "geteuid"):
        if info.st_uid != os.geteuid():
            raise Failure(f"cache folder {path} belongs to another user: remove it or set ROLEGATE_CACHE_DIR")
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(path, 0o700)
    return path


class Cache:
    """One entry per (token, context), named and sealed with keys derived from the token."""

    def __init__(self, folder, token, context):
        self.folder = folder
        name = hmac.new(token, CACHE_VERSION + b"/name\0" + context, hashlib.sha256).hexdigest()
        self.path = os.path.join(folder, name + ".json")
        self.lock_path = os.path.join(folder, name + ".lock")
        self._enc = hmac.new(token, CACHE_VERSION + b"/enc\0" + context, hashlib.sha256).digest()
        self._mac = hmac.new(token, CACHE_VERSION + b"/mac\0" + context, hashlib.sha256).digest()

    def locked(self):
        return _Lock(self.lock_path)

    def _stream(self, nonce, length):
        return hashlib.shake_256(self._enc + nonce).digest(length)

    def load(self):
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise Failure(f"cannot read the cache entry {self.path}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as file:
            raw = file.read(1 << 20)
        try:
            sealed = json.loads(raw)
            nonce, body, tag = (base64.b64decode(sealed[k]) for k in ("nonce", "body", "tag"))
        except (ValueError, TypeError, KeyError):
            return None
        if not hmac.compare_digest(tag, hmac.new(self._mac, nonce + body, hashlib.sha256).digest()):
            return None
        plain = bytes(a ^ b for a, b in zip(body, self._stream(nonce, len(body))))
        try:
            entry = json.loads(plain)
        except ValueError:
            return None
        return entry if isinstance(entry, dict) and "credentials" in entry and "expires" in entry else None

    def store(self, entry, keep_until):
        plain = json.dumps(entry).encode()
        nonce = os.urandom(16)
        body = bytes(a ^ b for a, b in zip(plain, self._stream(nonce, len(plain))))
        tag = hmac.new(self._mac, nonce + body, hashlib.sha256).digest()
        parts = {"nonce": nonce, "body": body, "tag": tag}
        sealed = json.dumps({key: base64.b64encode(value).decode() for key, value in parts.items()})
        fd, temporary = tempfile.mkstemp(dir=self.folder, prefix=".tmp-")  # 0600
        try:
            with os.fdopen(fd, "w") as file:
                file.write(sealed)
                file.flush()
                os.fsync(file.fileno())
            # The entry's mtime says until when it matters (the later of the credentials' and the
            # token's expiry), so that pruning never has to read other jobs' entries.
            os.utime(temporary, (keep_until, keep_until))
            os.replace(temporary, self.path)
        except OSError as exc:
            _unlink(temporary)
            raise Failure(f"cannot write the cache entry in {self.folder}: {exc.strerror}") from None
        self.prune()

    def prune(self):
        """Remove entries (and their locks) that no longer matter, and stale temporary files."""
        now = time.time()
        try:
            names = os.listdir(self.folder)
        except OSError:
            return
        for name in names:
            path = os.path.join(self.folder, name)
            try:
                mtime = os.lstat(path).st_mtime
            except OSError:
                continue
            if _ENTRY_NAME.match(name) and mtime < now - EXPIRY_MARGIN_SECONDS:
                _unlink(path)
                _unlink(path[: -len(".json")] + ".lock")
            elif name.startswith(".tmp-") and mtime < now - 3600:
                _unlink(path)


class _Lock:
    """An exclusive lock on one entry, so that parallel AWS commands of a job exchange once."""

    def __init__(self, path):
        self.path = path
        self.fd = None

    def __enter__(self):
        if fcntl is None:  # pragma: no cover
            return self
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError as exc:
            raise Failure(f"cannot lock the cache entry {self.path}: {exc.strerror}") from None
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)


def _unlink(path):
    with contextlib.suppress(OSError):
        os.unlink(path)


if __name__ == "__main__":
    sys.exit(main())
