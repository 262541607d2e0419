"""The tests are laid out like the package (tests/README.md): a change to one module shows
which tests to run.

* every module of asherah_django has unit tests at ``tests/unit/<path>/test_<module>.py`` (or
  in a folder ``tests/unit/<path>/<module>/``), or is listed in :data:`ELSEWHERE` with a
  one-line reason, and every test path that reason names exists;
* every file ``tests/unit/**/test_*.py`` names a module that exists (its own name, or the
  folder it is in);
* tests/ holds only the two layouts, the support code and the test apps.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "asherah_django"
UNIT = ROOT / "tests" / "unit"

# Modules without tests of their own under tests/unit, and why.
ELSEWHERE: dict[str, str] = {
    "__init__.py": "the public API: tests/integration/docs/test_blocks.py runs every README block",
    "apps.py": "registers checks and signal handlers: exercised by every Django test",
    "observability.py": "tests/integration/integrations/test_observability.py",
    "signals.py": "sent by the metastore and the commands: tests/unit/test_runtime.py",
    "admin/__init__.py": "registration: tests/integration/admin/test_pages.py",
    "admin/fields.py": "needs the admin and a live server: tests/integration/admin/test_fields_admin.py",
    "admin/health.py": "the admin's health panel: tests/integration/admin/test_pages.py",
    "admin/keys.py": "the admin's key pages: tests/integration/admin/test_pages.py",
    "admin/model_admin.py": "the admin's key pages: tests/integration/admin/test_pages.py",
    "admin/erasure.py": "the erasure receipt pages: tests/integration/lifecycle/test_erase_runs.py",
    "blind_index/__init__.py": "the blind index API: tests/unit/blind_index/test_lookups.py",
    "blind_index/guard.py": "the UPDATE guard, through writes: tests/unit/blind_index/test_values.py",
    "blind_index/shred.py": "crosses rotation and fields: tests/integration/lifecycle/test_shred_index.py",
    "contrib/__init__.py": "a namespace package",
    "contrib/admin_search.py": "the admin's search: tests/integration/integrations/test_filters.py",
    "contrib/celery.py": "needs brokers: tests/integration/integrations/test_celery.py",
    "contrib/django_filters.py": "tests/integration/integrations/test_filters.py",
    "contrib/drf.py": "tests/integration/integrations/test_drf.py",
    "contrib/otel.py": "tests/integration/integrations/test_observability.py",
    "contrib/prometheus.py": "tests/integration/integrations/test_observability.py",
    "checks/admin.py": "tests/unit/test_checks.py",
    "checks/database.py": "tests/unit/test_checks.py",
    "checks/deployment.py": "tests/unit/test_checks.py",
    "conf/parsing.py": "tests/unit/test_conf.py",
    "core/setting.py": "the registry's descriptors: tests/unit/conf/test_registry.py",
    "core/forking.py": "the fork hooks: tests/unit/core/session/test_fork.py",
    "core/key_rows.py": "through the hierarchy: tests/unit/core/envelope/test_rotation.py",
    "core/keystore.py": "a plain Metastore as a KeyStore: tests/integration/reliability/test_faults.py",
    "core/kms/aws_settings.py": "tests/integration/aws/test_settings.py",
    "core/kms/vault_settings.py": "tests/unit/core/kms/test_vault_config.py",
    "core/kms/erase.py": "needs OpenBao: tests/integration/lifecycle/test_erase_refusals.py",
    "core/kms/static_erase.py": "tests/integration/lifecycle/test_erase_refusals.py",
    "core/kms/vault_erase.py": "needs OpenBao: tests/integration/lifecycle/test_erase_receipt.py",
    "erasure_receipts.py": "tests/integration/lifecycle/test_erase_runs.py",
    "maintenance/__init__.py": "tests/integration/maintenance/test_shards.py",
    "maintenance/command.py": "the commands' options: tests/integration/maintenance/test_shards.py",
    "maintenance/passes.py": "tests/integration/maintenance/test_shards.py",
    "maintenance/progress.py": "tests/integration/maintenance/test_shards.py",
    "maintenance/summary.py": "the commands' summaries: tests/unit/rotation/test_keys.py",
    "maintenance/swap.py": "tests/integration/maintenance/test_shards.py",
    "maintenance/windows.py": "tests/integration/maintenance/test_shards.py",
    "management/commands/asherah_erase.py": "needs OpenBao: tests/integration/lifecycle/test_erase_runs.py",
    "metastore_connections.py": "a part of the metastore: tests/unit/metastore/test_connections.py",
    "metastore_pending.py": "a part of the metastore: tests/unit/test_metastore.py",
    "metastore_sql.py": "a part of the metastore: tests/unit/test_metastore.py",
    "rotation/erase.py": "needs OpenBao: tests/integration/lifecycle/test_erase_backup.py",
    "rotation/erase_plan.py": "the dry run: tests/integration/lifecycle/test_erase_runs.py",
    "rotation/erase_rows.py": "tests/integration/lifecycle/test_erase_backup.py",
    "rotation/receipt.py": "tests/integration/lifecycle/test_erase_receipt.py",
    "core/__init__.py": "the core's exports: tests/unit/core/test_session.py",
    "core/errors.py": "raised and matched by every core test",
    "core/keys.py": "through the session: tests/unit/core/envelope/test_rotation.py",
    "core/observability.py": "tests/integration/integrations/test_observability.py",
    "core/policy.py": "through the session: tests/unit/core/envelope/test_rotation.py",
    "core/protocols.py": "typing protocols only; honoured by tests/integration/kms_conformance/test_kit.py",
    "core/kms/__init__.py": "the KMS factory: tests/unit/test_conf.py",
    "core/kms/static.py": "the KMS of every core test: tests/unit/core/test_session.py",
    "core/kms/aws.py": "needs AWS-API servers: tests/integration/aws/test_kms.py",
    "core/kms/aws_config.py": "tests/integration/aws/test_settings.py",
    "core/kms/aws_envelope.py": "tests/integration/aws/test_secrets_manager.py",
    "core/kms/secrets_manager.py": "needs AWS-API servers: tests/integration/aws/test_secrets_manager.py",
    "core/kms/vault.py": "needs OpenBao: tests/integration/vault/test_transit.py",
    "core/kms/vault_auth.py": "needs OpenBao: tests/integration/vault/test_auth.py",
    "core/kms/vault_errors.py": "needs OpenBao: tests/integration/vault/test_hostile_server.py",
    "core/kms/vault_http.py": "needs OpenBao: tests/integration/vault/test_hostile_server.py",
    "core/kms/vault_inspect.py": "asherah_check's Vault checks: tests/unit/management/commands/asherah_check/test_vault.py",
    "core/kms/vault_token.py": "needs OpenBao: tests/integration/vault/test_token_lifecycle.py",
    "core/metastore/__init__.py": "a package marker",
    "fields/__init__.py": "the field exports: tests/unit/fields/test_types.py",
    "fields/descriptors.py": "through every field test: tests/unit/fields/test_types.py",
    "fields/sealed.py": "batched key loading: tests/unit/fields/base/test_partitions.py",
    "health/__init__.py": "through asherah_check: tests/unit/management/commands/test_asherah_check.py",
    "health/aws.py": "needs AWS-API servers: tests/integration/aws/test_check.py",
    "health/context.py": "through asherah_check: tests/unit/management/commands/test_asherah_check.py",
    "health/integrity.py": "the key_integrity check: tests/unit/test_key_tags.py",
    "health/local.py": "through asherah_check: tests/unit/management/commands/test_asherah_check.py",
    "health/model.py": "through asherah_check: tests/unit/management/commands/test_asherah_check.py",
    "health/runner.py": "through asherah_check: tests/unit/management/commands/test_asherah_check.py",
    "health/system_checks.py": "through asherah_check: tests/unit/management/commands/test_asherah_check.py",
    "health/vault.py": "through asherah_check: tests/unit/management/commands/asherah_check/test_vault.py",
    "management/__init__.py": "a package marker",
    "management/commands/__init__.py": "a package marker",
    "management/commands/asherah_reindex.py": "tests/unit/blind_index/test_reindex.py",
    "management/commands/asherah_sign_keys.py": "tests/unit/test_key_tags.py",
    "rotation/__init__.py": "asherah_rotate's entry: tests/unit/management/commands/test_asherah_rotate.py",
    "rotation/bind.py": "asherah_rotate --bind: tests/unit/fields/bind/test_convert.py",
    "rotation/inventory.py": "--report: tests/unit/management/commands/asherah_rotate/test_rewrap.py",
    "rotation/migrate.py": "needs AWS-API servers: tests/integration/aws/test_migration.py",
    "rotation/targets.py": "--reencrypt labels: tests/unit/management/commands/test_asherah_rotate.py",
    "testing/__init__.py": "helpers for users' suites, used by this suite",
    "testing/counting.py": "used by the query-count tests: tests/unit/fields/test_sql.py",
    "testing/devvault.py": "tests/integration/docs/test_newcomer.py",
    "testing/kms_conformance.py": "tests/integration/kms_conformance/test_kit.py",
    "testing/moto.py": "starts the servers of tests/integration/aws/test_kms.py",
    "testing/openbao.py": "starts the servers of tests/integration/vault/test_transit.py",
    "testing/openbao_agent.py": "tests/integration/vault/test_agent.py",
    "testing/openbao_cluster.py": "tests/integration/topology/test_vault_ha.py",
    "testing/postgres_pair.py": "tests/integration/topology/test_postgres_pair.py",
    "testing/pytest_plugin.py": "loaded by this suite (pyproject.toml's pytest11 entry point)",
    "testing/tls.py": "tests/integration/vault/test_auth.py",
}

# What tests/ may hold besides the two layouts.
SUPPORT = {
    "unit", "integration", "support", "testapp", "bidxapp", "bindapp", "integrationsapp",
    "cproof",
    "__init__.py", "conftest.py", "settings.py", "urls.py", "hygiene.py", "test_layout.py",
    "README.md", "__pycache__",
}  # fmt: skip


def modules() -> list[str]:
    found = PACKAGE.rglob("*.py")
    return sorted(
        str(p.relative_to(PACKAGE))
        for p in found
        if "migrations" not in p.relative_to(PACKAGE).parts
    )


def unit_tests_of(module: str) -> list[Path]:
    path = Path(module)
    name = path.parent.name if path.name == "__init__.py" else path.stem
    folder = UNIT / (path.parent.parent if path.name == "__init__.py" else path.parent)
    return [p for p in [folder / f"test_{name}.py"] if p.exists()] + sorted(
        (folder / name).glob("test_*.py") if path.name != "__init__.py" else []
    )


def test_every_module_has_unit_tests_or_a_reason() -> None:
    missing = [m for m in modules() if not unit_tests_of(m) and m not in ELSEWHERE]
    assert not missing, (
        "no tests/unit/<path>/test_<module>.py (nor a folder tests/unit/<path>/<module>/) for "
        f"{missing}: add one, or list the module in ELSEWHERE with a reason"
    )


def test_the_reasons_are_current() -> None:
    known = set(modules())
    assert not sorted(set(ELSEWHERE) - known), "ELSEWHERE lists modules that do not exist"
    stale = sorted(m for m in ELSEWHERE if unit_tests_of(m))
    assert not stale, f"{stale} have unit tests now: drop them from ELSEWHERE"
    cited = {p for reason in ELSEWHERE.values() for p in re.findall(r"tests/[\w/]+\.py", reason)}
    assert not sorted(p for p in cited if not (ROOT / p).exists()), "a reason cites a missing test"


def test_every_unit_test_file_names_a_module() -> None:
    def names_a_module(test: Path) -> bool:
        where = test.parent.relative_to(UNIT)
        name = test.stem.removeprefix("test_")
        own = PACKAGE / where
        if (own / f"{name}.py").exists() or (own / name / "__init__.py").exists():
            return True
        if (own / f"_{name}.c").exists():  # the C accelerator (core/_speedups.c)
            return True
        return where != Path() and (PACKAGE / where.parent / f"{where.name}.py").exists()

    strays = [str(t.relative_to(ROOT)) for t in UNIT.rglob("test_*.py") if not names_a_module(t)]
    assert not strays, (
        f"{strays} name no module of asherah_django: name the file test_<module>.py, or put it "
        "in a folder named after the module, or under tests/integration/ (tests/README.md)"
    )


def test_tests_holds_only_the_two_layouts() -> None:
    others = sorted(p.name for p in (ROOT / "tests").iterdir() if p.name not in SUPPORT)
    assert not others, (
        f"{others}: tests go under tests/unit/ or tests/integration/ (tests/README.md)"
    )
