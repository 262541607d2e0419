"""EncryptedFieldsAdminMixin: encrypted fields in your own ModelAdmins, without stack traces.

    from django.contrib import admin
    from asherah_django.admin import EncryptedFieldsAdminMixin

    @admin.register(TenantNote)
    class TenantNoteAdmin(EncryptedFieldsAdminMixin, admin.ModelAdmin):
        list_display = ["title", "tenant_id", "body"]     # body: EncryptedTextField

        # Only for fields without partition= (they use the open session's partition):
        def get_asherah_partition(self, request, obj):
            return obj.tenant_id if obj else None

Staff see plaintext where a key for the row's partition can be had: fields with
``partition=`` use each row's own partition; fields without it use the partition
:meth:`~EncryptedFieldsAdminMixin.get_asherah_partition` names (default: the session already
open, e.g. by ``AsherahSessionMiddleware``). Where a value cannot be decrypted (no session,
another partition, a missing key, the KMS unreachable, legacy plaintext) the list and the
change form show a placeholder saying so. Such a field is read-only on that object's form, so
saving the form keeps its stored record unchanged. A form whose encrypted values cannot be
encrypted (no partition) gets a form error; a KMS or metastore failure while saving rolls the
save back and shows an error message. Never a stack trace, never ciphertext.

A plain ModelAdmin (without the mixin) gets the same list and change pages when one of its
values cannot be decrypted: :func:`render_locked`, called by ``AsherahSessionMiddleware``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final

from django import forms
from django.contrib import messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import display_for_field
from django.db.models import Model
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import capfirst
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables

from ..context import session
from ..core.errors import (
    AsherahError,
    BindingMismatchError,
    ConfigurationError,
    KeyNotFoundError,
    KMSError,
    MetastoreError,
    NoActiveSessionError,
    PartitionMismatchError,
    UnboundRecordError,
)
from ..fields import EncryptedField, PlaintextValueError, encrypted_fields

if TYPE_CHECKING:
    from django.contrib import admin

    _MixinBase = admin.ModelAdmin[Any]
else:
    _MixinBase = object

#: Prefix of the read-only stand-ins for fields that cannot be decrypted on a change form.
SEALED_PREFIX: Final = "asherah_sealed__"
_FAILURES: Final = "_asherah_admin_failures"
_Display = Callable[[Any], str | bool]
_request: ContextVar[HttpRequest | None] = ContextVar("asherah_admin_request", default=None)


def reason(exc: BaseException) -> str:
    """A short, secret-free reason why a value is not shown."""
    for kind, text in (
        (NoActiveSessionError, "no session for this partition"),
        (PartitionMismatchError, "encrypted for another partition"),
        (UnboundRecordError, "not bound to this row and column"),
        (BindingMismatchError, "belongs to another row or column"),
        (KeyNotFoundError, "its key is not in the metastore"),
        (PlaintextValueError, "stored as plaintext"),
        (KMSError, "the KMS is unavailable"),
        (MetastoreError, "the metastore is unavailable"),
        (ConfigurationError, "Asherah is not configured"),
    ):
        if isinstance(exc, kind):
            return text
    return "cannot be decrypted"


def placeholder(exc: BaseException) -> SafeString:
    return format_html(
        '<span class="asherah-sealed" title="{}">&#128274; Encrypted: {}</span>',
        type(exc).__name__,
        reason(exc),
    )


class EncryptedFieldsAdminMixin(_MixinBase):
    """Mix into a ModelAdmin of a model with encrypted fields (before ``ModelAdmin``)."""

    def get_asherah_partition(self, request: HttpRequest, obj: Model | None) -> str | None:
        """The partition to open for ``obj``'s encrypted fields that have no ``partition=``.

        ``None`` (the default) uses the session already open, if any.
        """
        return None

    # -- helpers ------------------------------------------------------------------------------

    def _encrypted(self) -> list[EncryptedField]:
        return list(encrypted_fields(self.model))

    @contextlib.contextmanager
    def _scope(self, request: HttpRequest | None, obj: Model | None) -> Iterator[None]:
        partition = self.get_asherah_partition(request, obj) if request is not None else None
        if partition:
            with session(partition):
                yield
        else:
            yield

    def _failures(self, request: HttpRequest | None, obj: Model) -> dict[str, AsherahError]:
        """Decrypt every encrypted field of ``obj`` once; the ones that failed, and why."""
        failures: dict[str, AsherahError] | None = obj.__dict__.get(_FAILURES)
        if failures is None:
            failures = {}
            with self._scope(request, obj):
                for field in self._encrypted():
                    try:
                        getattr(obj, field.attname)
                    except AsherahError as exc:
                        failures[field.name] = exc
            obj.__dict__[_FAILURES] = failures
        return failures

    def _display(self, field: EncryptedField) -> _Display:
        @sensitive_variables("value")  # plaintext: never in error reports
        def show(obj: Model) -> str:
            request = _request.get()
            try:
                with self._scope(request, obj):
                    value = getattr(obj, field.attname)
            except AsherahError as exc:
                return placeholder(exc)
            return str(display_for_field(value, field, self.get_empty_value_display()))

        show.short_description = field.verbose_name  # type: ignore[attr-defined]
        show.__name__ = field.name  # the list's cells keep their field-<name> CSS class
        return show

    def __getattr__(self, name: str) -> Any:
        # The read-only stand-ins named in get_fieldsets(); looked up by the admin by name.
        if name.startswith(SEALED_PREFIX):
            wanted = name[len(SEALED_PREFIX) :]
            for field in self._encrypted():
                if field.name == wanted:
                    return self._display(field)
        raise AttributeError(name)

    # -- the changelist -----------------------------------------------------------------------

    def _display_str(self) -> _Display:
        def show(obj: Model) -> str:
            try:
                with self._scope(_request.get(), obj):
                    return str(obj)
            except AsherahError as exc:  # a __str__ that reads an encrypted field
                return placeholder(exc)

        show.short_description = self.opts.verbose_name  # type: ignore[attr-defined]
        return show

    def get_list_display(self, request: HttpRequest) -> list[str | _Display]:
        names = {field.name: field for field in self._encrypted()}
        shown: list[str | _Display] = []
        for item in super().get_list_display(request):
            if item == "__str__":
                shown.append(self._display_str())
            elif isinstance(item, str) and item in names:
                shown.append(self._display(names[item]))
            else:
                shown.append(item)
        return shown

    def get_list_display_links(
        self, request: HttpRequest, list_display: Any
    ) -> list[str | _Display]:
        links = super().get_list_display_links(request, list_display)
        shown = {getattr(item, "__name__", item): item for item in list_display}
        return [shown.get(link, link) if isinstance(link, str) else link for link in links or ()]

    def action_checkbox(self, obj: Any) -> SafeString:
        try:
            with self._scope(_request.get(), obj):
                return super().action_checkbox(obj)
        except AsherahError:  # the checkbox's label is str(obj)
            checkbox = forms.CheckboxInput(
                {"class": "action-select", "aria-label": "Select this object for an action"},
                lambda value: False,
            )
            return checkbox.render(helpers.ACTION_CHECKBOX_NAME, str(obj.pk))

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        token = _request.set(request)
        try:
            return _rendered(super().changelist_view(request, extra_context))
        finally:
            _request.reset(token)

    # -- the change form ----------------------------------------------------------------------

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> Any:
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            self._failures(request, obj)  # decrypts what it can, in the right scope
        return obj

    def _sealed(self, request: HttpRequest, obj: Model | None) -> list[str]:
        return list(self._failures(request, obj)) if obj is not None else []

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        readonly = list(super().get_readonly_fields(request, obj))
        return readonly + [f"{SEALED_PREFIX}{name}" for name in self._sealed(request, obj)]

    def get_exclude(self, request: HttpRequest, obj: Any = None) -> list[str] | None:
        sealed = self._sealed(request, obj)
        excluded = super().get_exclude(request, obj)
        if not sealed:
            return None if excluded is None else list(excluded)
        return [*(excluded or ()), *sealed]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        sealed = self._sealed(request, obj)
        if not sealed:
            return fieldsets
        swap = {name: f"{SEALED_PREFIX}{name}" for name in sealed}
        seen: set[str] = set()

        def line(item: Any) -> Any:
            if isinstance(item, list | tuple):
                return type(item)(x for x in (line(i) for i in item) if x is not None)
            name = swap.get(item, item)
            if name in seen:
                return None
            seen.add(name)
            return name

        result = []
        for title, options in fieldsets:
            fields = [x for x in (line(item) for item in options.get("fields", ())) if x]
            result.append((title, {**options, "fields": fields}))
        return result

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm[Any]]:
        form = super().get_form(request, obj, change, **kwargs)
        model_admin = self

        class EncryptedFieldsForm(form):  # type: ignore[valid-type,misc]
            def _post_clean(self) -> None:
                super()._post_clean()
                model_admin._check_partitions(request, self)

        EncryptedFieldsForm.__name__ = form.__name__
        return EncryptedFieldsForm

    def _check_partitions(self, request: HttpRequest, form: forms.ModelForm[Any]) -> None:
        """A form error, rather than a failed save, when a value has no partition to use."""
        instance = form.instance
        for field in self._encrypted():
            if field.name not in form.fields or form.cleaned_data.get(field.name) is None:
                continue
            try:
                with self._scope(request, instance):
                    field.partition_of(instance)
            except AsherahError as exc:
                form.add_error(
                    None, f"{capfirst(field.verbose_name)} cannot be encrypted: {reason(exc)}."
                )
                return

    @sensitive_variables("obj", "form")  # they hold the plaintext being saved
    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        with self._scope(request, obj):
            super().save_model(request, obj, form, change)

    @method_decorator(sensitive_post_parameters())  # the form posts plaintext
    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        token = _request.set(request)
        try:
            return _rendered(super().changeform_view(request, object_id, form_url, extra_context))
        except AsherahError as exc:  # a save failed (and was rolled back), or str(obj) did
            messages.error(
                request,
                f"An encrypted value of this {self.opts.verbose_name} could not be encrypted "
                f"or decrypted ({reason(exc)}); nothing was saved.",
            )
            if request.method == "POST":
                return HttpResponseRedirect(request.get_full_path())
            info = (self.opts.app_label, self.opts.model_name)
            return HttpResponseRedirect(
                reverse(f"admin:{info[0]}_{info[1]}_changelist", current_app=self.admin_site.name)
            )
        finally:
            _request.reset(token)


def _rendered(response: HttpResponse) -> HttpResponse:
    """Render a TemplateResponse now, while the request's partition scope is known (the
    cells and read-only fields are computed during rendering)."""
    if isinstance(response, TemplateResponse):
        response.render()
    return response


# -- a plain ModelAdmin: render as the mixin does instead of answering 500 --------------------

#: The ModelAdmin views a locked row can be shown by, by the suffix of their URL name.
_VIEWS: Final = {"changelist": "changelist_view", "change": "change_view"}


def with_mixin(model_admin: Any) -> Any:
    """A copy of ``model_admin`` whose class has :class:`EncryptedFieldsAdminMixin` first."""
    cls = type(model_admin)
    locked = type(cls.__name__, (EncryptedFieldsAdminMixin, cls), {"__module__": cls.__module__})
    return locked(model_admin.model, model_admin.admin_site)


def render_locked(request: HttpRequest, exc: BaseException) -> HttpResponse | None:
    """For a GET of a plain ModelAdmin's list or change page that failed to decrypt a value
    (``exc``), the same page rendered by the same ModelAdmin with the mixin: the value shown
    as "Encrypted: reason". ``None`` when that does not apply (the exception then propagates).

    Called by ``AsherahSessionMiddleware.process_exception``; the ModelAdmin is the one
    Django's ``ModelAdmin.get_urls()`` attaches to its views as ``model_admin``.
    """
    decryption = (NoActiveSessionError, PartitionMismatchError, KeyNotFoundError)
    if not isinstance(exc, (*decryption, PlaintextValueError)) or request.method not in (
        "GET",
        "HEAD",
    ):
        return None
    match = request.resolver_match
    model_admin = getattr(getattr(match, "func", None), "model_admin", None)
    if match is None or model_admin is None or isinstance(model_admin, EncryptedFieldsAdminMixin):
        return None
    view = _VIEWS.get(str(match.url_name).rsplit("_", 1)[-1])
    if view is None:
        return None
    response: HttpResponse = getattr(with_mixin(model_admin), view)(request, **match.kwargs)
    return response
