"""The observability hook, its OpenTelemetry and Prometheus observers, and the package
without any of the optional extras."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

import asherah_django
from asherah_django import observability
from asherah_django.contrib import otel, prometheus
from asherah_django.core import InMemoryMetastore, Session, SessionFactory, StaticKMS
from asherah_django.core import observability as core_observability
from asherah_django.core.errors import DecryptionError, KMSError
from asherah_django.runtime import get_session_factory, reset_session_factory
from tests.hygiene import MARKER, assert_clean_text
from tests.integration.integrations.urls import METRICS
from tests.integrationsapp.models import Contact
from tests.support.common import ROOT

MASTER = bytes(range(32))


class Recorder(core_observability.Observer):
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def begin(self, name: str, attributes: Any) -> Any:
        self.events.append(("begin", name, dict(attributes)))
        return name

    def end(self, name: str, attributes: Any, token: Any, seconds: float, error: Any) -> None:
        assert token == name and seconds >= 0
        info = dict(attributes)
        if error is not None:
            info["error"] = type(error).__name__
        self.events.append(("end", name, info))

    def count(self, name: str, attributes: Any, n: int) -> None:
        self.events.append(("count", name, {**attributes, "n": n}))

    def names(self, kind: str) -> list[str]:
        return [name for k, name, _ in self.events if k == kind]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    observer = Recorder()
    observability.register(observer)
    yield observer
    observability.unregister(observer)


def factory() -> SessionFactory:
    built = SessionFactory("svc", "prod", StaticKMS(MASTER), InMemoryMetastore())
    core_observability.attach(built)
    return built


def test_with_no_observer_nothing_is_wrapped() -> None:
    assert not core_observability.active()
    built = factory()
    kms = built.kms
    assert built._keys.kms is kms and built._keys.metastore is built.metastore
    assert type(built.get_session("p")) is Session
    assert "get_session" not in vars(built)


def test_events_of_the_engine(recorder: Recorder) -> None:
    built = factory()
    session = built.get_session("tenant-1")
    assert type(session) is core_observability.ObservedSession
    record = session.encrypt(f"{MARKER}x".encode())
    assert session.decrypt(record) == f"{MARKER}x".encode()
    timed = recorder.names("end")
    assert timed.count("kms.encrypt_key") == 1
    assert "metastore.load_latest" in timed and timed.count("metastore.store") == 2
    latest = [i for k, n, i in recorder.events if k == "end" and n == "key.latest"]
    assert [(i["kind"], i["new"]) for i in latest] == [("system", True), ("intermediate", True)]
    counted = [(n, i) for k, n, i in recorder.events if k == "count"]
    created = [i["kind"] for n, i in counted if n == "key.created"]
    assert sorted(created) == ["intermediate", "system"]
    assert ("encrypt", {"n": 1}) in counted and ("decrypt", {"n": 1}) in counted
    assert ("cache.miss", {"cache": "intermediate", "n": 1}) in counted
    # decryption failures by reason
    with pytest.raises(DecryptionError):
        built.get_session("tenant-2").decrypt(record)
    assert ("decrypt.failed", {"reason": "PartitionMismatchError", "n": 1}) in [
        (n, i) for k, n, i in recorder.events if k == "count"
    ]
    # a second factory on the same metastore reads through the KMS, timed, with errors
    reader = SessionFactory("svc", "prod", StaticKMS(bytes(32)), built.metastore)
    core_observability.attach(reader)
    with pytest.raises(KMSError):  # the wrong master key
        reader.get_session("tenant-1").decrypt(record)
    failed = [i for k, n, i in recorder.events if k == "end" and n == "kms.decrypt_key"]
    assert failed and failed[-1]["error"] == KMSError.__name__
    for kind, name, info in recorder.events:
        assert_clean_text(f"{kind} {name} {json.dumps(info)}", "observer event")
    # unregistered: instrumented objects stay but report nothing
    observability.unregister(recorder)
    before = len(recorder.events)
    session.decrypt(session.encrypt(b"y"))
    assert len(recorder.events) == before


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reset_session_factory()
    otel.install(provider)
    yield exporter
    otel.uninstall()
    reset_session_factory()


def _ancestry(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[str]:
    names = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        names.append(span.name)
    return names


@pytest.mark.django_db
def test_opentelemetry_spans_of_key_creation_kms_metastore_and_commands(
    spans: InMemorySpanExporter,
) -> None:
    # A new partition: its intermediate key is created. The system key may exist already
    # (keys are committed on their own connection and outlive a test's transaction).
    tenant = f"tenant-{uuid.uuid4().hex}"
    with asherah_django.session(tenant):
        Contact.objects.create(email="o@x.org", name=f"{MARKER}o", bio=f"{MARKER}bio")
    reset_session_factory()  # empty caches: the read loads the keys again
    with asherah_django.session(tenant):
        assert Contact.objects.get().name == f"{MARKER}o"
    call_command("asherah_reindex", "integrations_app.Contact", stdout=_Sink(), stderr=_Sink())
    finished = spans.get_finished_spans()
    by_id = {s.context.span_id: s for s in finished}
    names = [s.name for s in finished]
    kms = [s for s in finished if s.name.startswith("asherah.kms.")]
    # the first KMS call: the write path getting the system key for the new IK (creating
    # it, or unwrapping the one an earlier test made)
    assert _ancestry(kms[0], by_id)[:2] == ["asherah.key.latest", "asherah.key.latest"]
    created = [
        s.attributes["asherah.key_id"]
        for s in finished
        if s.name == "asherah.key.latest"
        and s.attributes["asherah.new"]
        and s.attributes["asherah.kind"] == "intermediate"
    ]
    assert created == [f"_IK_{tenant}_testsvc_testprod"]
    stores = [s for s in finished if s.name == "asherah.metastore.store"]
    assert stores and all(s.attributes["asherah.stored"] for s in stores)
    # (blind index keys are stored through the same timed metastore, outside key.latest)
    ik_stores = [s for s in stores if s.attributes["asherah.key_id"] == created[0]]
    assert _ancestry(ik_stores[-1], by_id)[0] == "asherah.key.latest"
    # the read after the reset: IK loaded, its SK loaded and unwrapped by the KMS inside
    decrypt = [s for s in finished if s.name == "asherah.kms.decrypt_key"][-1]
    assert _ancestry(decrypt, by_id)[:2] == ["asherah.key.load", "asherah.key.load"]
    assert "asherah.command.asherah_reindex" in names
    for span in finished:
        assert span.status.is_ok or span.attributes.get("error.type")
        assert_clean_text(
            f"{span.name} {json.dumps(dict(span.attributes or {}), default=str)} "
            f"{span.status.description or ''} {[e.name for e in span.events]}",
            "OpenTelemetry span",
        )


class _Sink:
    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


@pytest.fixture
def metrics() -> Iterator[prometheus.PrometheusObserver]:
    reset_session_factory()
    observer = prometheus.install(METRICS)
    yield observer
    prometheus.uninstall(METRICS)
    reset_session_factory()


def _scrape(client: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    assert_clean_text(text, "Prometheus exposition")
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def test_prometheus_metrics_scraped_from_the_metrics_endpoint(
    api: Any, metrics: prometheus.PrometheusObserver
) -> None:
    tenant = {"HTTP_X_TENANT": f"tenant-{uuid.uuid4().hex}"}
    for n in range(3):
        body = {"email": f"m{n}@x.org", "name": "M", "bio": f"{MARKER}{n}"}
        assert api.post("/api/contacts/", body, **tenant).status_code == 201
    assert api.get("/api/contacts/", **tenant).status_code == 200
    assert api.get("/api/contacts/", HTTP_X_TENANT="tenant-x").status_code == 500
    values = _scrape(api)

    def value(name: str, **labels: str) -> float:
        return values[(name, tuple(sorted(labels.items())))]

    encrypts = value("asherah_operations_total", operation="encrypt")
    decrypts = value("asherah_operations_total", operation="decrypt")
    assert encrypts >= 6 and decrypts >= 6  # three rows, two encrypted fields each at least
    assert value("asherah_decrypt_failures_total", reason="PartitionMismatchError") >= 1
    assert value("asherah_keys_created_total", kind="intermediate") == 1  # a new tenant
    # the system key: created here, or (made by an earlier test) loaded through the KMS
    kms = {
        op: values.get(("asherah_kms_call_seconds_count", (("operation", op),)), 0)
        for op in ("encrypt_key", "decrypt_key")
    }
    created = values.get(("asherah_keys_created_total", (("kind", "system"),)), 0)
    if created:
        assert kms["encrypt_key"] == 1
    else:
        assert kms["encrypt_key"] == 0 and kms["decrypt_key"] >= 1
    assert value("asherah_metastore_calls_total", operation="store", outcome="ok") >= 1
    assert value("asherah_cache_requests_total", cache="intermediate", result="miss") >= 1
    hits = value("asherah_cache_requests_total", cache="intermediate", result="hit")
    assert hits >= encrypts + decrypts - 5
    assert 0 <= value("asherah_key_age_seconds", kind="intermediate") < 600
    labels = {label for (_, pairs) in values for pair in pairs for label in pair}
    assert not any(MARKER in label or "tenant-" in label for label in labels)


BLOCKED = (
    "rest_framework",
    "django_filters",
    "celery",
    "kombu",
    "opentelemetry",
    "prometheus_client",
)


def test_the_package_imports_and_works_without_the_optional_extras() -> None:
    script = textwrap.dedent(
        f"""
        import importlib.abc, sys
        BLOCKED = {BLOCKED!r}
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        sys.meta_path.insert(0, Block())
        import django
        from django.conf import settings
        settings.configure(
            INSTALLED_APPS=["django.contrib.contenttypes", "asherah_django"],
            DATABASES={{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}}},
            ASHERAH={{"SERVICE_NAME": "s", "PRODUCT_ID": "p", "KMS": "static",
                     "METASTORE": "memory", "STATIC_MASTER_KEY_HEX": "00" * 32}},
        )
        django.setup()
        import asherah_django, asherah_django.fields, asherah_django.observability
        import asherah_django.contrib, asherah_django.core.observability
        from asherah_django.runtime import get_session_factory
        session = get_session_factory().get_session("p")
        assert session.decrypt(session.encrypt(b"ok")) == b"ok"
        for name in ("drf", "django_filters", "celery", "otel", "prometheus"):
            try:
                __import__("asherah_django.contrib." + name)
            except ModuleNotFoundError as exc:
                assert "blocked" in str(exc), exc
            else:
                raise AssertionError(name + " imported without its extra")
        assert not [m for m in sys.modules if m.split(".")[0] in BLOCKED]
        print("imports ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "imports ok"


def test_runtime_factory_is_attached(recorder: Recorder, db: None) -> None:
    reset_session_factory()
    built = get_session_factory()
    assert isinstance(built._keys.kms, core_observability.ObservedKMS)
    reset_session_factory()
