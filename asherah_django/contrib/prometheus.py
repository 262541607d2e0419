"""Prometheus metrics (``pip install asherah-django[prometheus]``).

    # settings / AppConfig.ready()
    from asherah_django.contrib.prometheus import install
    install()                                   # the default prometheus_client registry

    # urls.py
    from asherah_django.contrib.prometheus import metrics_view
    urlpatterns += [path("metrics", metrics_view)]   # protect it like any internal endpoint

Metrics (labels hold operation names, cache and key kinds and error class names only):

==========================================  =========================================
``asherah_operations_total``                values encrypted/decrypted (``operation``)
``asherah_decrypt_failures_total``          by ``reason`` (the error class)
``asherah_cache_requests_total``            ``cache`` (intermediate, system) x ``result``
``asherah_kms_calls_total``                 ``operation`` x ``outcome`` (ok, error class)
``asherah_kms_call_seconds``                histogram per ``operation``
``asherah_metastore_calls_total``           ``operation`` x ``outcome``
``asherah_metastore_call_seconds``          histogram per ``operation``
``asherah_key_load_seconds``                cache misses: ``kind`` x ``path`` (read, write)
``asherah_keys_created_total``              ``kind`` (system, intermediate)
``asherah_key_age_seconds``                 age of the newest key seen, per ``kind``
``asherah_command_seconds``                 management commands, per ``command``
==========================================  =========================================

The per-value counters are plain integers read when Prometheus scrapes (no lock, no
metric object on the hot path); intermediate-key cache hits are the values minus the
misses (see :mod:`asherah_django.core.observability`).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from django.http import HttpRequest, HttpResponse
from prometheus_client import REGISTRY, CollectorRegistry, Histogram
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from .. import observability
from ..core.observability import Attributes, Observer

__all__ = ["PrometheusObserver", "install", "metrics_view"]

_lock = threading.Lock()
_installed: dict[int, PrometheusObserver] = {}


class PrometheusObserver(Observer):
    """Turns the engine's events into metrics of ``registry``."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self.encrypts = 0
        self.decrypts = 0
        self.counts: Counter[tuple[str, str]] = Counter()  # (event, label) -> n
        self.newest: dict[str, int] = {}  # kind -> greatest created seen
        self._counts_lock = threading.Lock()
        self.kms_calls = PromCounter(
            "asherah_kms_calls", "KMS calls", ["operation", "outcome"], registry=registry
        )
        self.kms_seconds = Histogram(
            "asherah_kms_call_seconds", "KMS call latency", ["operation"], registry=registry
        )
        self.metastore_calls = PromCounter(
            "asherah_metastore_calls",
            "Metastore calls",
            ["operation", "outcome"],
            registry=registry,
        )
        self.metastore_seconds = Histogram(
            "asherah_metastore_call_seconds",
            "Metastore call latency",
            ["operation"],
            registry=registry,
        )
        self.key_seconds = Histogram(
            "asherah_key_load_seconds",
            "Loading or creating a key on a cache miss",
            ["kind", "path"],
            registry=registry,
        )
        self.command_seconds = Histogram(
            "asherah_command_seconds",
            "asherah_django management commands",
            ["command", "outcome"],
            registry=registry,
            buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, float("inf")),
        )
        registry.register(self)  # collect(): the plain counters below

    # -- the observer -----------------------------------------------------------------

    def count(self, name: str, attributes: Attributes, n: int) -> None:
        if name == "decrypt":
            self.decrypts += n  # (a lost update under a thread switch is tolerable)
            return
        if name == "encrypt":
            self.encrypts += n
            return
        if name in ("key.created", "key.loaded"):
            kind = str(attributes.get("kind", ""))
            created = attributes.get("created")
            with self._counts_lock:
                if isinstance(created, int) and created > self.newest.get(kind, 0):
                    self.newest[kind] = created
                if name == "key.created":
                    self.counts[(name, kind)] += n
            return
        label = attributes.get("reason") if name == "decrypt.failed" else attributes.get("cache")
        with self._counts_lock:
            self.counts[(name, str(label or ""))] += n

    def end(
        self,
        name: str,
        attributes: Attributes,
        token: Any,
        seconds: float,
        error: BaseException | None,
    ) -> None:
        outcome = "ok" if error is None else type(error).__name__
        group, _, operation = name.partition(".")
        if group == "kms":
            self.kms_calls.labels(operation, outcome).inc()
            self.kms_seconds.labels(operation).observe(seconds)
        elif group == "metastore":
            self.metastore_calls.labels(operation, outcome).inc()
            self.metastore_seconds.labels(operation).observe(seconds)
        elif group == "key":
            path = "write" if operation == "latest" else "read"
            self.key_seconds.labels(str(attributes.get("kind", "")), path).observe(seconds)
        elif group == "command":
            self.command_seconds.labels(operation, outcome).observe(seconds)

    # -- the collector ------------------------------------------------------------------

    def describe(self) -> list[Metric]:
        return []  # collected on each scrape; names are fixed (see the module docstring)

    def collect(self) -> Iterator[Metric]:
        with self._counts_lock:
            counts = dict(self.counts)
            newest = dict(self.newest)
        operations = CounterMetricFamily(
            "asherah_operations", "Values encrypted or decrypted", labels=["operation"]
        )
        operations.add_metric(["encrypt"], self.encrypts)
        operations.add_metric(["decrypt"], self.decrypts)
        yield operations
        failures = CounterMetricFamily(
            "asherah_decrypt_failures", "Values that could not be decrypted", labels=["reason"]
        )
        created = CounterMetricFamily("asherah_keys_created", "Keys created", labels=["kind"])
        caches = CounterMetricFamily(
            "asherah_cache_requests", "Key cache lookups", labels=["cache", "result"]
        )
        misses = {"intermediate": 0, "system": 0}
        hits = {"system": 0}
        for (name, label), n in sorted(counts.items()):
            if name == "decrypt.failed":
                failures.add_metric([label], n)
            elif name == "key.created":
                created.add_metric([label], n)
            elif name == "cache.miss" and label in misses:
                misses[label] = n
            elif name == "cache.hit" and label in hits:
                hits[label] = n
        hits["intermediate"] = max(self.encrypts + self.decrypts - misses["intermediate"], 0)
        for cache in ("intermediate", "system"):
            caches.add_metric([cache, "hit"], hits[cache])
            caches.add_metric([cache, "miss"], misses[cache])
        yield failures
        yield created
        yield caches
        ages = GaugeMetricFamily(
            "asherah_key_age_seconds", "Age of the newest key seen", labels=["kind"]
        )
        now = time.time()
        for kind, when in sorted(newest.items()):
            ages.add_metric([kind], max(now - when, 0.0))
        yield ages


def install(registry: CollectorRegistry = REGISTRY) -> PrometheusObserver:
    """Register a :class:`PrometheusObserver` on ``registry`` (once per registry)."""
    with _lock:
        observer = _installed.get(id(registry))
        if observer is None:
            observer = _installed[id(registry)] = PrometheusObserver(registry)
    observability.register(observer)
    return observer


def uninstall(registry: CollectorRegistry = REGISTRY) -> None:
    with _lock:
        observer = _installed.pop(id(registry), None)
    if observer is not None:
        observability.unregister(observer)
        registry.unregister(observer)
        for collector in (
            observer.kms_calls,
            observer.kms_seconds,
            observer.metastore_calls,
            observer.metastore_seconds,
            observer.key_seconds,
            observer.command_seconds,
        ):
            registry.unregister(collector)


def metrics_view(request: HttpRequest, registry: CollectorRegistry = REGISTRY) -> HttpResponse:
    """The Prometheus text exposition of ``registry`` (an example ``/metrics`` endpoint)."""
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
