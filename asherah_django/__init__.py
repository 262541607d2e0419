"""asherah_django: Asherah envelope encryption for Django model fields.

Public API (imported lazily so that importing this package never configures Django):

- ``asherah_django.session(partition_id)``: open a partition scope (context manager,
  async context manager, decorator).
- ``asherah_django.get_session_factory()``: the process-wide SessionFactory built from
  the ``ASHERAH`` settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"
__all__ = ["__version__", "get_session_factory", "session"]

if TYPE_CHECKING:
    from .context import session
    from .runtime import get_session_factory


def __getattr__(name: str) -> Any:
    if name == "session":
        from .context import session

        return session
    if name == "get_session_factory":
        from .runtime import get_session_factory

        return get_session_factory
    raise AttributeError(f"module 'asherah_django' has no attribute {name!r}")
