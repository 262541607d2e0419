"""No token, secret id, JWT or key material in any message, hint, repr or log line."""

from __future__ import annotations

import base64
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from asherah_django.core import AsherahError
from asherah_django.core.kms.vault import VaultTransitKMS
from asherah_django.testing.openbao import TRANSIT_POLICY, OpenBaoServer
from tests.support.kubernetes import TokenReviewServer

from .conftest import K8S_NAMESPACE, K8S_ROLE, K8S_SERVICE_ACCOUNT, approle_role, factory_for

pytestmark = pytest.mark.vault
MakeKMS = Callable[[dict[str, object]], VaultTransitKMS]


def test_secrets_stay_out_of_errors_reprs_and_logs(
    bao: OpenBaoServer,
    k8s_api: TokenReviewServer,
    tmp_path: Path,
    make_kms: MakeKMS,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # everything: ours, urllib3's, hvac's
    secrets: list[str] = []
    texts: list[str] = []

    def attempt(kms: VaultTransitKMS, action: Callable[[], object]) -> None:
        texts.extend([repr(kms), repr(kms.config), str(kms.config)])
        try:
            action()
        except AsherahError as error:
            texts.extend([str(error), repr(error), error.hint, str(error.__cause__ or "")])

    token = bao.create_token([TRANSIT_POLICY], ttl="1s", renewable=False)
    secrets.append(token)
    kms = make_kms(bao.settings(VAULT_TOKEN=token))
    system_key = os.urandom(32)
    secrets += [base64.b64encode(system_key).decode(), system_key.hex()]
    blob = kms.encrypt_key(system_key)
    time.sleep(1.2)
    attempt(kms, lambda: kms.decrypt_key(blob))  # expired static token

    role_id, secret_id = approle_role(bao, secret_id_num_uses=1, token_ttl="1s", token_max_ttl="1s")
    spent = secret_id()
    secrets += [spent]
    kms = make_kms(bao.settings(VAULT_AUTH_METHOD="approle", VAULT_APPROLE_ROLE_ID=role_id,
                                VAULT_APPROLE_SECRET_ID=spent))  # fmt: skip
    kms.encrypt_key(os.urandom(32))
    time.sleep(1.1)
    attempt(kms, lambda: kms.encrypt_key(os.urandom(32)))  # spent single-use secret id
    wrong = "11111111-2222-3333-4444-555555555555"
    secrets.append(wrong)
    kms = make_kms(bao.settings(VAULT_AUTH_METHOD="approle", VAULT_APPROLE_ROLE_ID=role_id,
                                VAULT_APPROLE_SECRET_ID=wrong))  # fmt: skip
    attempt(kms, lambda: kms.encrypt_key(os.urandom(32)))

    jwt = k8s_api.issue(K8S_NAMESPACE, K8S_SERVICE_ACCOUNT, register=False)
    secrets += [jwt, *jwt.split(".")]
    token_file = tmp_path / "token"
    token_file.write_text(jwt)
    kms = make_kms(bao.settings(VAULT_AUTH_METHOD="kubernetes", VAULT_AUTH_ROLE=K8S_ROLE,
                                VAULT_K8S_TOKEN_PATH=str(token_file)))  # fmt: skip
    attempt(kms, lambda: kms.encrypt_key(os.urandom(32)))

    root = make_kms(bao.settings(VAULT_TOKEN=bao.root_token, VAULT_ADDR="http://127.0.0.1:1"))
    secrets.append(bao.root_token)
    attempt(root, lambda: root.encrypt_key(system_key))  # connection refused, with retries

    good = bao.create_token([TRANSIT_POLICY], ttl="1h")
    secrets.append(good)
    kms = make_kms(bao.settings(VAULT_TOKEN=good))
    with factory_for(kms) as factory:
        session = factory.get_session("p")
        session.decrypt(session.encrypt(b"plaintext-marker"))
        texts += [repr(factory), repr(session), repr(kms), repr(kms.stats)]
    secrets.append("plaintext-marker")

    texts += [record.getMessage() for record in caplog.records]
    assert len(caplog.records) > 10 and len(texts) > 20
    for secret in secrets:
        assert len(secret) >= 16
        leaked = [text for text in texts if secret in text]
        assert leaked == [], f"secret found in: {leaked[:3]}"
