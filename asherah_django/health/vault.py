"""Live checks of Vault: server, login, the transit key and its configuration, a KMS round trip.

Every question is asked of Vault itself (``sys/health``, ``auth/token/lookup-self``,
``sys/capabilities-self``, ``<mount>/keys/<key>``); nothing is guessed from settings.
Failures carry the wording and hints of the upstream troubleshooting guide.
"""

from __future__ import annotations

import base64
import os
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from ..core.kms.aws import AwsKMS
from ..core.kms.secrets_manager import SecretsManagerKMS
from ..core.kms.static import StaticKMS
from ..core.kms.vault_config import redact_userinfo
from ..core.kms.vault_errors import (
    HINT_BLOB,
    HINT_UNAVAILABLE,
    VaultKMSError,
)
from .context import Context, Outcome, combine, fail, ok, warn
from .model import Status

if TYPE_CHECKING:
    from ..core.kms.vault import VaultTransitKMS

ALLOWING: Final = frozenset({"update", "root"})
_LOOPBACK: Final = frozenset({"localhost", "127.0.0.1", "::1"})
_NOT_FOUND: Final = "encryption key not found"


def _kms(ctx: Context) -> VaultTransitKMS:
    kms = ctx.vault
    assert kms is not None
    return kms


def duration(seconds: float) -> str:
    """``1d2h``, ``59m59s``, ``0s``: the two largest units."""
    seconds = int(seconds)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts[:2])


def server(ctx: Context) -> Outcome:
    """Reachable, initialised, unsealed, active; TLS verified; the namespace in use."""
    kms = _kms(ctx)
    config = kms.config
    health = kms.health()
    answered = kms.node_in_use
    parts = urlsplit(answered)
    data: dict[str, object] = {
        "addr": redact_userinfo(answered),
        "version": health.version,
        "initialized": health.initialized,
        "sealed": health.sealed,
        "standby": health.standby,
        "tls": parts.scheme == "https",
        "namespace": config.namespace,
    }
    where = f"Vault {health.version} at {redact_userinfo(answered)}".replace("  ", " ")
    nodes = (config.addr, *config.other_addrs)
    if len(nodes) > 1:  # a node list: which nodes were tried, and which one answered
        tried = kms.nodes_tried
        shown = [redact_userinfo(node) for node in tried]
        data.update(nodes=[redact_userinfo(n) for n in nodes], tried=shown, answered=data["addr"])
        where += (
            f" (VAULT_ADDR lists {len(nodes)} nodes; tried {', '.join(shown)}; "
            f"{data['addr']} answered)"
        )
    if not health.initialized:
        return fail(f"{where} is not initialized", "initialize and unseal it", **data)
    if health.sealed:
        return fail(
            f"{where} is sealed",
            "unseal it (`vault operator unseal`), or point VAULT_ADDR at an unsealed node",
            **data,
        )
    if parts.scheme == "https":
        tls = "TLS verified with " + (
            f"VAULT_CACERT={config.ca_cert}" if config.ca_cert else "the system trust store"
        )
    else:
        tls = "plain http"
    findings: list[Outcome] = []
    if health.standby:
        findings.append(warn(f"{where} is a standby node", HINT_UNAVAILABLE))
    if parts.scheme == "http" and (parts.hostname or "") not in _LOOPBACK:
        findings.append(
            warn(
                f"{where} is reached over plain http: tokens and system keys cross the "
                "network unencrypted",
                "set VAULT_ADDR to an https:// URL (and VAULT_CACERT)",
            )
        )
    state = "standby" if health.standby else "active"
    # Logins, tokens and Transit calls all happen in VAULT_NAMESPACE (sys/health does not).
    scope = f"; namespace {config.namespace}" if config.namespace else ""
    return combine(findings, f"{where}: initialized, unsealed, {state}; {tls}{scope}", data)


def login(ctx: Context) -> Outcome:
    """The configured auth method yields a token; its TTL, renewability and policies."""
    kms = _kms(ctx)
    config = kms.config
    info = kms.token_info()
    policies = sorted(info.policies)
    data = {
        "auth_method": config.auth_method,
        "ttl": info.ttl,
        "renewable": info.renewable,
        "policies": policies,
    }
    ttl = f"TTL {duration(info.ttl)}" if info.ttl > 0 else "no expiry"
    renew = "renewable" if info.renewable else "not renewable"
    detail = f"{config.auth_method} auth: token {ttl}, {renew}; policies {', '.join(policies)}"
    if config.logs_in:
        detail += f" (a new login replaces it before it expires, at auth/{config.login_mount})"
    problems: list[tuple[str, str]] = []
    if "root" in policies:
        problems.append(
            (
                "the token has the root policy",
                "use a token limited to the asherah-transit policy, or kubernetes, approle or "
                "cert auth",
            )
        )
    if not config.logs_in and info.ttl > 0 and not info.renewable:
        problems.append(
            (
                f"VAULT_TOKEN expires in {duration(info.ttl)} and cannot be renewed; "
                "encryption fails after that",
                "use a renewable or periodic token (`vault token create -period=24h "
                "-policy=asherah-transit`), or VAULT_AUTH_METHOD kubernetes, approle or cert",
            )
        )
    if not problems:
        return ok(detail, **data)
    return warn(
        f"{detail}: {'; '.join(text for text, _ in problems)}",
        "; ".join(hint for _, hint in problems),
        **data,
    )


def transit_key(ctx: Context) -> Outcome:
    """The transit key exists and the token may encrypt and decrypt with it (asked of Vault)."""
    kms = _kms(ctx)
    mount, key = kms.config.transit_mount, kms.config.transit_key
    capabilities = kms.capabilities()
    allowed = {op: bool(ALLOWING & set(caps)) for op, caps in capabilities.items()}
    data: dict[str, object] = {
        "mount": mount,
        "key": key,
        **{op: list(caps) for op, caps in capabilities.items()},
    }
    info, error = ctx.key_info()
    exists: bool | None = info is not None
    if error is not None:
        exists = (
            False if error.status == 404 else _probe_exists(ctx) if allowed["decrypt"] else None
        )
    findings: list[Outcome] = []
    if exists is False:
        findings.append(
            fail(
                f"transit key '{key}' does not exist on mount '{mount}' "
                f"(VAULT_ADDR={kms.config.addr})",
                f"create it (`vault write {mount}/keys/{key} type=aes256-gcm96`), or fix "
                "VAULT_TRANSIT_KEY and VAULT_TRANSIT_MOUNT",
            )
        )
    denied = [op for op in ("encrypt", "decrypt") if not allowed[op]]
    if denied:
        shown = "; ".join(
            f"{mount}/{op}/{key}: {', '.join(capabilities[op]) or 'none'}" for op in denied
        )
        findings.append(
            fail(
                f"the token may not {' or '.join(denied)} with transit key '{key}' "
                f"(capabilities {shown})",
                "the authenticated token doesn't have the asherah-transit policy; check "
                f"`vault token capabilities {mount}/{denied[0]}/{key}`",
            )
        )
    ops = ", ".join(op for op in ("encrypt", "decrypt", "rewrap") if allowed[op])
    if info is not None:
        found = f"exists ({info.type}, latest version {info.latest_version})"
    elif exists:
        found = "exists (its configuration is not readable with this token)"
    else:
        found = "may exist (neither its configuration nor a decryption is allowed to tell)"
    return combine(
        findings, f"transit key '{key}' on mount '{mount}' {found}; token may {ops}", data
    )


def _probe_exists(ctx: Context) -> bool | None:
    """Without read access to the key: ask decrypt, which says "encryption key not found"
    for a missing key and fails authentication for a bogus ciphertext of an existing one."""
    bogus = b"vault:v1:" + base64.b64encode(bytes(28))
    try:
        _kms(ctx).decrypt_key(bogus)
    except VaultKMSError as exc:
        if exc.status == 403:
            return None
        return _NOT_FOUND not in str(exc)
    return True  # pragma: no cover - Vault decrypted a bogus ciphertext


def key_config(ctx: Context) -> Outcome:
    """deletion_allowed, exportable, min_decryption_version and auto_rotate_period."""
    kms = _kms(ctx)
    mount, key = kms.config.transit_mount, kms.config.transit_key
    info, error = ctx.key_info()
    if info is None:
        assert error is not None
        if error.status == 404:
            return Outcome(
                Status.FAIL,
                f"not checked: transit key '{key}' does not exist (see vault.transit_key)",
                "fix vault.transit_key first",
                skipped=True,
            )
        if not _may_read_key(kms):
            # The least-privilege production policy (README's asherah-transit) by design:
            # nothing is wrong, the deeper check needs the asherah-rotate policy too.
            return ok(
                f"not checked: this token may not read the configuration of transit key "
                f"'{key}' (the least-privilege asherah-transit policy); run asherah_check "
                "with a token that also has the asherah-rotate policy to check "
                "deletion_allowed, exportable, min_decryption_version and auto_rotate_period",
                readable=False,
            )
        return warn(
            f"cannot read the configuration of transit key '{key}': {error.args[0]}",
            f"grant read on {mount}/keys/{key} (the asherah-rotate policy) to the token "
            "asherah_check uses, to have deletion_allowed, exportable, min_decryption_version "
            "and auto_rotate_period checked",
        )
    stored = _stored_versions(ctx)
    data: dict[str, object] = {
        "type": info.type,
        "latest_version": info.latest_version,
        "min_decryption_version": info.min_decryption_version,
        "deletion_allowed": info.deletion_allowed,
        "exportable": info.exportable,
        "auto_rotate_period": info.auto_rotate_period,
    }
    if stored is not None:
        data["system_keys_by_version"] = {f"v{v}": n for v, n in sorted(stored.items())}
    config = f"vault write {mount}/keys/{key}/config"
    findings: list[Outcome] = []
    unreadable = sorted(v for v in stored or {} if v < info.min_decryption_version)
    if unreadable:
        findings.append(
            fail(
                f"min_decryption_version={info.min_decryption_version} but stored system keys "
                f"are wrapped under version {', '.join(f'v{v}' for v in unreadable)}: they can no "
                "longer be decrypted",
                f"lower it (`{config} min_decryption_version={unreadable[0]}`), run "
                "`manage.py asherah_rotate --rewrap`, then raise it again",
            )
        )
    if info.deletion_allowed:
        findings.append(
            warn(
                "deletion_allowed=true: deleting the key would make every encrypted value "
                "unreadable",
                f"`{config} deletion_allowed=false`",
            )
        )
    if info.exportable:
        findings.append(
            warn(
                "exportable=true: the master key can leave Vault (this cannot be undone)",
                f"deny {mount}/export/* in every policy; new setups should create the key "
                "without exportable",
            )
        )
    if info.auto_rotate_period == 0:
        findings.append(
            warn(
                "auto_rotate_period=0: the key is never rotated automatically",
                f"`{config} auto_rotate_period=2160h` (90 days, as upstream recommends)",
            )
        )
    detail = (
        f"{info.type}, latest version {info.latest_version}, min_decryption_version "
        f"{info.min_decryption_version}, auto_rotate_period {duration(info.auto_rotate_period)}, "
        "deletion_allowed=false, exportable=false"
    )
    return combine(findings, detail, data)


def _may_read_key(kms: VaultTransitKMS) -> bool:
    """Whether ``sys/capabilities-self`` grants read on the key (True when it cannot tell)."""
    try:
        caps = kms.capabilities(key_read=True).get("keys", ())
    except VaultKMSError:
        return True
    return bool({"read", "root", "sudo"} & set(caps))


def _stored_versions(ctx: Context) -> dict[int, int] | None:
    """Stored system keys per Vault key version; None when the metastore cannot tell."""
    if not ctx.database and ctx.django_metastore:
        return None
    kms = _kms(ctx)
    counts: dict[int, int] = {}
    try:
        keys = ctx.system_keys()
    except Exception:  # the metastore check reports database problems
        return None
    for stored in keys:
        if stored.record is None:
            continue
        try:
            version = kms.key_version(stored.record.encrypted_key)
        except VaultKMSError:
            continue
        counts[version] = counts.get(version, 0) + 1
    return counts


def round_trip(ctx: Context) -> Outcome:
    """Encrypt and decrypt 32 random bytes through the KMS (Vault, or the static KMS)."""
    factory = ctx.factory
    assert factory is not None
    kms = ctx.vault
    secret = os.urandom(32)
    blob = factory.kms.encrypt_key(secret)
    if factory.kms.decrypt_key(blob) != secret:
        return fail(
            "the KMS decrypted 32 random bytes to something else",
            HINT_BLOB,
        )
    if kms is None:
        text, tag = _kms_kind(factory.kms)
        return ok(f"encrypted and decrypted 32 random bytes with {text}", kms=tag)
    version = kms.key_version(blob)
    return ok(
        f"encrypted and decrypted 32 random bytes with transit key "
        f"'{kms.config.transit_key}' (key version {version})",
        kms="vault",
        key_version=version,
    )


def _kms_kind(kms: object) -> tuple[str, str]:
    """How the round trip names a KMS other than Vault, and its tag (issue 24)."""
    if isinstance(kms, AwsKMS):
        return f"AWS KMS (regions {', '.join(kms.regions)})", "aws"
    if isinstance(kms, SecretsManagerKMS):
        return f"the Secrets Manager master key ({kms.config.secret_id})", "secrets-manager"
    if isinstance(kms, StaticKMS):
        return "the static KMS (master key in process memory)", "static"
    return f"the KMS {type(kms).__module__}.{type(kms).__qualname__}", "custom"
