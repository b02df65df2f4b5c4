"""Who is asking: the bearer token of every request, as the apiserver authenticates it.

Two kinds of token are accepted: the lab admin's static token (user `irlib-lab-admin`, group
`system:masters`) and ServiceAccount tokens from the TokenRequest API. Those are JWTs bound to
the account's uid (HS256 with the lab's signing key, where a cluster signs with RS256): once
the account is deleted, or after `exp`, the token is refused. No token, or any other, is 401.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

from irlib.lab.config import LabConfig
from irlib.lab.kube import pki, resources
from irlib.lab.kube.requestinfo import AUTHENTICATED, MASTERS, User, serviceaccount_user
from irlib.lab.kube.store import Store

ADMIN = User("irlib-lab-admin", "", (MASTERS, AUTHENTICATED))
ISSUER = "https://kubernetes.default.svc.cluster.local"
AUDIENCES = (ISSUER,)  # what the API server accepts; another audience is someone else's token
DEFAULT_EXPIRATION_S = 3600
MIN_EXPIRATION_S = 600
SERVICEACCOUNTS = resources.resource("serviceaccounts")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Authenticator:
    def __init__(self, store: Store, config: LabConfig) -> None:
        self.store = store
        self._admin_token = pki.read(config, pki.ADMIN_TOKEN).encode()
        self._key = pki.read(config, pki.SIGNING_KEY).encode()
        self._kid = hashlib.sha256(self._key).hexdigest()[:16]  # names the key, reveals nothing

    # -- issuing -------------------------------------------------------------------------

    def issue(
        self, account: dict[str, Any], audiences: list[str], expiration_s: int, now: float
    ) -> tuple[str, int]:
        """A token for the ServiceAccount `account`: (token, expiry in epoch seconds)."""
        meta = account["metadata"]
        exp = int(now) + expiration_s
        claims = {
            "aud": audiences,
            "exp": exp,
            "iat": int(now),
            "iss": ISSUER,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": {
                "namespace": meta["namespace"],
                "serviceaccount": {"name": meta["name"], "uid": meta["uid"]},
            },
            "nbf": int(now),
            "sub": f"system:serviceaccount:{meta['namespace']}:{meta['name']}",
        }
        header = {"alg": "HS256", "kid": self._kid, "typ": "JWT"}
        signing_input = (
            _b64(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64(json.dumps(claims, separators=(",", ":")).encode())
        )
        return f"{signing_input}.{_b64(self._sign(signing_input))}", exp

    def _sign(self, signing_input: str) -> bytes:
        return hmac.new(self._key, signing_input.encode(), hashlib.sha256).digest()

    # -- checking ------------------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> User | None:
        """The user of an `Authorization: Bearer ...` header; None when it proves no one."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        if hmac.compare_digest(token.encode(), self._admin_token):
            return ADMIN
        return self._serviceaccount(token)

    def _serviceaccount(self, token: str) -> User | None:
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            signature = _unb64(parts[2])
            claims = json.loads(_unb64(parts[1]))
        except (ValueError, UnicodeDecodeError):
            return None
        if not hmac.compare_digest(signature, self._sign(f"{parts[0]}.{parts[1]}")):
            return None
        now = time.time()
        if not isinstance(claims, dict) or claims.get("iss") != ISSUER:
            return None
        if not claims.get("exp", 0) > now >= claims.get("nbf", 0) - 60:
            return None
        if not set(claims.get("aud") or []) & set(AUDIENCES):
            return None
        bound = claims.get("kubernetes.io") or {}
        account = bound.get("serviceaccount") or {}
        namespace, name = bound.get("namespace", ""), account.get("name", "")
        stored = self.store.get(SERVICEACCOUNTS, namespace, name)
        if stored is None or stored["metadata"]["uid"] != account.get("uid"):
            return None  # the account was deleted (or deleted and made anew): its tokens die
        return serviceaccount_user(namespace, name, stored["metadata"]["uid"])
