"""The options of an encrypted field and what follows from them: the codec hooks its types
fill in, its binding (``bind=``) and the partition whose key protects a row's value.

Which key (partition)
---------------------
A field without ``partition=`` uses the partition of the innermost open
:func:`asherah_django.session` (set per request by the middleware). With
``partition="tenant_id"`` (a field of the same model) or ``partition=callable``
(``callable(instance) -> str``), each row uses its own partition, so one queryset can hold
many tenants' rows. Decryption checks that the record's key belongs to that partition
exactly; a value of any other partition raises
:class:`~asherah_django.core.errors.PartitionMismatchError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from django.db.models import Field, Model
from django.utils.functional import cached_property

from .. import runtime
from ..blind_index.options import BlindIndex
from ..context import _partition as _partition_var
from ..context import require_partition
from ..core.errors import AsherahError, DecryptionError, InvalidPartitionError
from . import bind as binding
from .sql import label

if TYPE_CHECKING:
    from ..core.session import Session, SessionFactory

    _Field = Field[Any, Any]
else:
    _Field = Field

_current_partition = _partition_var.get


class PlaintextValueError(DecryptionError):
    """A stored value is not a DataRowRecord (legacy plaintext) and the field rejects it."""


class RowPartitionRequiredError(AsherahError):
    """A row-partitioned field was given a value without its row (``QuerySet.update()``)."""


def session_factory() -> SessionFactory:
    """The process-wide SessionFactory (:func:`asherah_django.runtime.get_session_factory`)."""
    return runtime.get_session_factory()


#: Sessions already asked of the process-wide factory, by partition: (factory, sessions).
#: One tuple, replaced whole when the factory changes, so that a thread never pairs a
#: factory with another factory's sessions.
_memo: tuple[SessionFactory | None, dict[str, Session]] = (None, {})
#: Partitions remembered at most (then forgotten all at once: a bound, not an LRU).
MEMO_SIZE = 256


def session_for(partition_id: str) -> Session:
    """``session_factory().get_session(partition_id)``, remembered per partition.

    Sessions are stateless (the keys live in their factory's caches, which every call
    still consults), so one kept here stays correct for as long as its factory is the
    process-wide one; a closed factory's sessions refuse to work on their own. Each call
    still goes through :func:`~asherah_django.runtime.get_session_factory`, which drops
    keys of rolled-back transactions and follows a rebuilt factory. This saves the
    factory's lookup (its clock and expiry check) on every value written or read. With the
    policy's ``cache_sessions`` off, nothing is remembered.
    """
    global _memo
    factory = runtime.get_session_factory()
    owner, sessions = _memo
    if owner is factory:
        session = sessions.get(partition_id)
        if session is not None:
            return session
    session = factory.get_session(partition_id)
    if factory.policy.cache_sessions:
        if owner is not factory or len(sessions) >= MEMO_SIZE:
            _memo = factory, {partition_id: session}
        else:
            sessions[partition_id] = session
    return session


class OptionsField(_Field):
    """An encrypted field's options (see :class:`~asherah_django.fields.EncryptedField`),
    its codec hooks, binder and partitions."""

    #: Whether a value read and not reassigned may be written back as the record it came
    #: from; False for mutable plaintexts (JSON) that can change in place.
    reuse_records: ClassVar[bool] = True
    #: The plaintext's type name, for messages and validators; the column is TEXT.
    plain_type: ClassVar[str] = "text"
    #: Whether ``blind_index=`` is allowed (False where equality would reveal the value,
    #: or where the encoding is not canonical).
    blind_index_supported: ClassVar[bool] = True
    #: Whether the blind index normalises text (``strip``/``casefold``), and their defaults.
    blind_index_text: ClassVar[bool] = False
    blind_index_strip: ClassVar[bool] = False
    blind_index_casefold: ClassVar[bool] = False

    def __init__(
        self,
        *args: Any,
        partition: str | Callable[[Any], object] | None = None,
        legacy: str = "reject",
        blind_index: bool | BlindIndex | None = None,
        bind: bool | Sequence[str] | binding.Bind | None = None,
        **kwargs: Any,
    ) -> None:
        self.partition = partition
        self.bind: binding.Bind | None = binding.normalize(bind)
        self.legacy = legacy
        if blind_index is True:
            blind_index = BlindIndex()
        self.blind_index: BlindIndex | None = blind_index or None
        #: ``unique=True`` as given: with a blind index, the index column is UNIQUE.
        self.blind_unique: bool = bool(blind_index) and bool(kwargs.get("unique"))
        super().__init__(*args, **kwargs)
        # Configuration read on every write, looked up once (DateField sets these).
        self._auto_now: bool = bool(getattr(self, "auto_now", False))
        self._auto_now_add: bool = bool(getattr(self, "auto_now_add", False))

    # -- the codec (subclasses) ---------------------------------------------------------

    def normalize(self, value: Any) -> Any:
        """The canonical Python plaintext for ``value`` (as the plain field would store)."""
        return value

    def encode(self, value: Any) -> bytes:
        """The bytes to encrypt for a normalized, non-None value."""
        raise NotImplementedError

    def decode(self, data: bytes) -> Any:
        """The Python value of decrypted bytes (ValueError/TypeError if they are not one)."""
        raise NotImplementedError

    def parse_legacy(self, text: str) -> Any:
        """The Python value of legacy plaintext found in the column."""
        return self.plain_to_python(text)

    def plain_to_python(self, value: Any) -> Any:
        """The plain field's ``to_python`` (no DataRowRecord detection)."""
        return super().to_python(value)

    @cached_property
    def binder(self) -> binding.Binder:
        """The ``bind=`` options resolved for this field (only with ``bind``)."""
        return binding.resolve(self)

    def _header(self, instance: Model | None) -> bytes:
        """A bound field's header for ``instance``'s row (None: a value without its row)."""
        binder = self.binder
        return binder.header_without_row() if instance is None else binder.header_of(instance)

    # -- partitions ----------------------------------------------------------------------

    @cached_property
    def _partition_attname(self) -> str:
        option = self.partition
        assert isinstance(option, str)
        return self.model._meta.get_field(option).attname  # type: ignore[union-attr]

    def partition_of(self, instance: Model) -> str:
        """The partition whose key protects this field's value on ``instance``."""
        option = self.partition
        if option is None:
            partition_id = _current_partition()
            return partition_id if partition_id is not None else require_partition(label(self))
        if type(option) is str:
            value = getattr(instance, self._partition_attname)
        else:
            value = option(instance)  # type: ignore[operator]
        if value is None or value == "":
            raise InvalidPartitionError(
                f"{label(self)}: this row's partition ({self._partition_name}) is empty",
                hint="set it before saving or reading the encrypted value",
            )
        return value if type(value) is str else str(value)

    @property
    def _partition_name(self) -> str:
        option = self.partition
        return option if isinstance(option, str) else getattr(option, "__name__", "callable")

    def _bare_partition(self) -> str:
        """The partition for a value Django passes without its row (writes)."""
        if self.partition is None:
            return require_partition(label(self))
        raise RowPartitionRequiredError(
            f"{label(self)} takes its key from each row's {self._partition_name}, but this "
            "value comes without its row (QuerySet.update(), bulk_update(), Value())",
            hint="save the instances (save(), bulk_create()) or use "
            "asherah_django.fields.bulk_update(queryset, objs, fields)",
        )

    def _read_partition(self) -> str:
        """The partition for a value read without its row (values(), values_list())."""
        if self.partition is None:
            return require_partition(label(self))
        return require_partition(
            f"{label(self)} (read by values()/values_list(), which have no row to take "
            f"{self._partition_name} from; iterate model instances instead, or open the "
            "session of the tenant)"
        )
