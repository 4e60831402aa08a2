"""A stand-in GitLab: a real HTTP server on 127.0.0.1 serving OIDC discovery and a JWKS, and
minting GitLab-shaped CI ID tokens with its RSA keys."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from exchange.keys import public_jwk, thumbprint


def with_claims(claims: dict, overrides: dict) -> dict:
    """A copy of ``claims`` with ``overrides`` set; an override of ``None`` removes the claim."""
    out = dict(claims)
    for key, value in overrides.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


class GitLabKey:
    def __init__(self, private_key: rsa.RSAPrivateKey | None = None):
        self.private_key = private_key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.jwk = public_jwk(self.private_key.public_key())
        self.kid = thumbprint(self.jwk)

    def public(self) -> dict:
        return {**self.jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}


class StandInGitLab:
    def __init__(self, key: GitLabKey):
        self.primary = key
        self.lock = threading.Lock()
        self.reset()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                stand_in.hits.append(self.path)
                if stand_in.down:
                    self._send(503, {"message": "down"})
                elif self.path == "/.well-known/openid-configuration":
                    self._send(200, {"issuer": stand_in.url, "jwks_uri": f"{stand_in.url}/oauth/discovery/keys"})
                elif self.path == "/oauth/discovery/keys":
                    self._send(
                        200,
                        stand_in.jwks_body
                        if stand_in.jwks_body is not None
                        else {"keys": [k.public() for k in stand_in.published]},
                    )
                else:
                    self._send(404, {"message": "not found"})

            def _send(self, status, body):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def reset(self) -> None:
        self.published: list[GitLabKey] = [self.primary]
        self.signing = self.primary
        self.down = False
        self.jwks_body: dict | bytes | None = None
        self.hits: list[str] = []

    def jwks_fetches(self) -> int:
        return sum(1 for path in self.hits if path == "/oauth/discovery/keys")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def claims(self, base: dict, **overrides) -> dict:
        """GitLab claims from a persona: our iss, fresh times and jti (``None`` removes a claim)."""
        now = int(time.time())
        fresh = {"iss": self.url, "iat": now, "nbf": now - 5, "exp": now + 300, "jti": str(uuid.uuid4())}
        return with_claims({**base, **fresh}, overrides)

    def mint(self, claims: dict, *, key: GitLabKey | None = None, headers: dict | None = None) -> str:
        key = key or self.signing
        return jwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": key.kid, **(headers or {})})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(header: dict, claims: dict, signature: bytes = b"") -> str:
    """A compact JWS built by hand (for alg none and other shapes PyJWT refuses to make)."""
    return ".".join([b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)])
