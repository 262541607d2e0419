"""OpenTelemetry spans (``pip install asherah-django[otel]``; an SDK to export them).

    from asherah_django.contrib.otel import install
    install()                       # the global TracerProvider, or install(tracer_provider)

Spans (children of whatever span is current, e.g. the request's):

* ``asherah.kms.encrypt_key`` / ``asherah.kms.decrypt_key``: each KMS call;
* ``asherah.metastore.load`` / ``load_latest`` / ``load_many`` / ``store``;
* ``asherah.key.latest``: the write path loading or creating a key (``asherah.new`` true
  when it created one: that span is the key creation, its KMS and metastore calls inside);
* ``asherah.key.load``: the read path loading a key on a cache miss;
* ``asherah.command.<name>``: the management commands (rotation, reindex, encrypt, check).

Attributes are ids and counts (``asherah.key_id``, ``asherah.created``, ``asherah.kind``,
``asherah.count``, ``asherah.found``...); a failed call sets the span's status to ERROR
with the error's class name only (no message, no stack: they could quote a database
row). Never key material, plaintext or records.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import context, trace
from opentelemetry.trace import Status, StatusCode, TracerProvider

from .. import observability
from ..core.observability import Attributes, Observer

__all__ = ["OpenTelemetryObserver", "install", "uninstall"]

_installed: list[OpenTelemetryObserver] = []


def _attributes(attributes: Attributes) -> dict[str, str | int | bool]:
    return {f"asherah.{name}": value for name, value in attributes.items()}


class OpenTelemetryObserver(Observer):
    """Makes a span of each timed event."""

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self.tracer = trace.get_tracer("asherah_django", tracer_provider=tracer_provider)

    def begin(self, name: str, attributes: Attributes) -> Any:
        span = self.tracer.start_span(f"asherah.{name}", attributes=_attributes(attributes))
        token = context.attach(trace.set_span_in_context(span))
        return span, token

    def end(
        self,
        name: str,
        attributes: Attributes,
        token: Any,
        seconds: float,
        error: BaseException | None,
    ) -> None:
        span, context_token = token
        try:
            span.set_attributes(_attributes(attributes))  # those added while it ran
            if error is not None:
                span.set_attribute("error.type", type(error).__name__)
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        finally:
            context.detach(context_token)
            span.end()


def install(tracer_provider: TracerProvider | None = None) -> OpenTelemetryObserver:
    """Register an :class:`OpenTelemetryObserver` (the global provider by default)."""
    observer = OpenTelemetryObserver(tracer_provider)
    _installed.append(observer)
    observability.register(observer)
    return observer


def uninstall() -> None:
    """Unregister the observers :func:`install` registered."""
    while _installed:
        observability.unregister(_installed.pop())
