"""A Kubernetes TokenReview endpoint on loopback, for Vault's Kubernetes auth method.

Vault (OpenBao) validates a pod's service-account JWT by POSTing it to the API server's
``/apis/authentication.k8s.io/v1/tokenreviews``. This server answers that call from the
test process, and really checks it: the caller must present the reviewer JWT as its
bearer token, and the reviewed token must be one :meth:`issue` handed out and not
:meth:`revoke`-d since.

    with TokenReviewServer() as api:
        jwt = api.issue("default", "asherah-sa")
        api.url            # kubernetes_host for auth/kubernetes/config
        api.reviewer_jwt   # token_reviewer_jwt for auth/kubernetes/config
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

REVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TokenReviewServer:
    """Answers TokenReview requests for the service-account tokens it issued."""

    def __init__(self) -> None:
        self._signing_key = ec.generate_private_key(ec.SECP256R1())
        self._lock = threading.Lock()
        self._valid: dict[str, dict[str, str]] = {}
        self.reviews = 0
        self.rejected = 0
        self.reviewer_jwt = self.issue("kube-system", "vault-token-reviewer", register=False)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def issue(self, namespace: str, name: str, *, register: bool = True) -> str:
        """A signed service-account JWT with the claims a kubelet-projected token carries."""
        uid = str(uuid.uuid4())
        now = int(time.time())
        claims = {
            "iss": "kubernetes/serviceaccount",
            "sub": f"system:serviceaccount:{namespace}:{name}",
            "kubernetes.io/serviceaccount/namespace": namespace,
            "kubernetes.io/serviceaccount/service-account.name": name,
            "kubernetes.io/serviceaccount/service-account.uid": uid,
            "kubernetes.io/serviceaccount/secret.name": f"{name}-token-{secrets.token_hex(3)}",
            "iat": now,
            "jti": secrets.token_hex(8),
        }
        header = {"alg": "ES256", "typ": "JWT", "kid": "test"}
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        der = self._signing_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        jwt = f"{signing_input}.{_b64url(der)}"
        if register:
            with self._lock:
                self._valid[jwt] = {"namespace": namespace, "name": name, "uid": uid}
        return jwt

    def revoke(self, jwt: str) -> None:
        """From now on, reviews of ``jwt`` answer ``authenticated: false``."""
        with self._lock:
            self._valid.pop(jwt, None)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> TokenReviewServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _review(
        self, authorization: str | None, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        if authorization != f"Bearer {self.reviewer_jwt}":
            return 401, {
                "kind": "Status",
                "status": "Failure",
                "reason": "Unauthorized",
                "code": 401,
            }
        token = (body.get("spec") or {}).get("token")
        with self._lock:
            self.reviews += 1
            identity = self._valid.get(token) if isinstance(token, str) else None
            if identity is None:
                self.rejected += 1
        review: dict[str, Any] = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": "<redacted>"},
        }
        if identity is None:
            review["status"] = {"authenticated": False, "error": "invalid bearer token"}
        else:
            namespace, name = identity["namespace"], identity["name"]
            review["status"] = {
                "authenticated": True,
                "user": {
                    "username": f"system:serviceaccount:{namespace}:{name}",
                    "uid": identity["uid"],
                    "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
                },
                "audiences": body.get("spec", {}).get("audiences") or [],
            }
        return 201, review

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    body = {}
                if self.path.split("?")[0] != REVIEW_PATH or not isinstance(body, dict):
                    status, answer = 404, {"kind": "Status", "code": 404}
                else:
                    status, answer = server._review(self.headers.get("Authorization"), body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler
