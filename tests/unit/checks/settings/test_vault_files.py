"""System checks accept the credential-file and namespace settings (issue #23)."""

from __future__ import annotations

from tests.unit.test_checks import VAULT as VAULT_WITH_TOKEN
from tests.unit.test_checks import settings_messages

#: Vault settings without credentials: each test adds its own.
VAULT = {key: value for key, value in VAULT_WITH_TOKEN.items() if key != "VAULT_TOKEN"}


def test_token_file_satisfies_token_auth() -> None:
    sink = "/run/vault-agent/token"
    assert settings_messages(**VAULT, VAULT_TOKEN_FILE=sink) == []
    assert settings_messages(**VAULT, VAULT_AUTH_METHOD="token", VAULT_TOKEN_FILE=sink) == []


def test_secret_id_file_and_namespace_pass() -> None:
    assert (
        settings_messages(
            **VAULT,
            VAULT_AUTH_METHOD="approle",
            VAULT_APPROLE_ROLE_ID="r",
            VAULT_APPROLE_SECRET_ID_FILE="/run/secret-id",
            VAULT_NAMESPACE="admin/team",
        )
        == []
    )


def test_token_and_token_file_together_is_e007() -> None:
    messages = settings_messages(**VAULT, VAULT_TOKEN="hvs.x" + "y" * 90, VAULT_TOKEN_FILE="/t")
    assert [m.id for m in messages] == ["asherah.E007"]
    assert "only one of VAULT_TOKEN and VAULT_TOKEN_FILE" in messages[0].msg
    assert "hvs." not in messages[0].msg
