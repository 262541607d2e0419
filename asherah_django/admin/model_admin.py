"""The key inspection pages: list, detail, revoke (with confirmation) and the health panel.

Django's ``AdminSite.register`` refuses models with a composite primary key, and the
changelist and change form need a single-column one. :class:`EncryptionKeyAdmin` is
therefore a ModelAdmin whose URLs are all our own views (see :func:`register`): the admin
index lists it, the admin's permissions, breadcrumbs, templates and LogEntry history apply.

Permissions: ``asherah_django.view_encryptionkey`` (or ``change_encryptionkey``) to inspect;
``asherah_django.revoke_encryptionkey`` to revoke. No page shows key bytes.
"""

from __future__ import annotations

import datetime
import json
from typing import TYPE_CHECKING, Any, Final

from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.utils import quote, unquote
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import BadRequest, PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    QueryDict,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from ..core.errors import MetastoreError
from ..core.records import KeyMeta
from ..metastore import DjangoMetastore
from ..models import EncryptionKey
from . import health, keys

if TYPE_CHECKING:
    from django.contrib.admin.sites import AdminSite

    _Base = admin.ModelAdmin[EncryptionKey]
else:
    _Base = admin.ModelAdmin

#: The custom permission that allows revoking keys.
REVOKE_PERMISSION: Final = "asherah_django.revoke_encryptionkey"
#: Intermediate keys shown under a system key on its detail page.
CHILDREN_SHOWN: Final = 100
_CHILDREN_SCANNED: Final = 1000
_VERSIONS_SHOWN: Final = 50
_TEMPLATES: Final = "asherah_django/admin"
_MAX_PARAM: Final = 255


class EncryptionKeyAdmin(_Base):
    """Read-only inspection of the metastore, plus revoke; every URL is a custom view."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request) and request.user.has_perm(REVOKE_PERMISSION)

    def check(self, **kwargs: Any) -> list[Any]:
        # ModelAdmin's checks concern the changelist and forms, which this admin replaces.
        return []

    def get_urls(self) -> list[URLPattern]:
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        view = self.admin_site.admin_view
        return [
            path("", view(self.key_list_view), name=f"{info}_changelist"),
            path("health/", view(self.health_view), name=f"{info}_health"),
            path("<path:object_id>/change/", view(self.key_detail_view), name=f"{info}_change"),
            path("<path:object_id>/revoke/", view(self.revoke_view), name=f"{info}_revoke"),
        ]

    # -- helpers ------------------------------------------------------------------------------

    def _context(self, request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
        request.current_app = self.admin_site.name
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "title": title,
            "subtitle": None,
            "has_revoke_permission": self.has_revoke_permission(request),
            **extra,
        }

    def _require_view(self, request: HttpRequest) -> None:
        if not self.has_view_permission(request):
            raise PermissionDenied

    def _url(self, name: str, *args: str) -> str:
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        return reverse(f"admin:{info}_{name}", args=args, current_app=self.admin_site.name)

    def detail_url(self, object_id: str) -> str:
        return self._url("change", quote(object_id))

    def _linked(self, row: keys.KeyRow) -> dict[str, Any]:
        parent = row.parent_object_id
        return {
            "row": row,
            "url": self.detail_url(row.object_id),
            "parent_url": self.detail_url(parent) if parent else None,
        }

    def _get_row(
        self, policy: keys.Policy, object_id: str, now: Any
    ) -> tuple[EncryptionKey, keys.KeyRow]:
        try:
            key_id, created = keys.parse_object_id(unquote(object_id))
        except ValueError as exc:
            raise BadRequest(f"not a key reference: {exc}") from None
        key = policy.keys().filter(id=key_id, created=created).first()
        if key is None:
            raise Http404("no such key")
        return key, keys.to_rows([key], policy, now)[0]

    # -- the list -----------------------------------------------------------------------------

    def key_list_view(self, request: HttpRequest) -> HttpResponse:
        self._require_view(request)
        policy = keys.Policy.from_settings()
        query = _list_query(request.GET)
        now = timezone.now()
        result = keys.page(query, policy, now)
        params = request.GET
        cursorless = _without(params, "after", "before")
        context = self._context(
            request,
            "Encryption keys",
            policy=policy,
            query=query,
            page=result,
            rows=[self._linked(row) for row in result.rows],
            kind_choices=_choices(cursorless, "kind", query.kind, keys.KINDS),
            status_choices=_choices(cursorless, "status", query.status, keys.STATUSES),
            has_filters=bool(query.kind or query.status or query.partition or query.parent),
            hidden_params=[(k, v) for k, v in cursorless.items() if k in ("kind", "status", "o")],
            sort_url=_query_string(cursorless, o=None if query.ascending else "created"),
            first_url=_query_string(cursorless) if query.after or query.before else None,
            next_url=(
                _query_string(cursorless, after=result.last.object_id)
                if result.has_next and result.last
                else None
            ),
            previous_url=(
                _query_string(cursorless, before=result.first.object_id)
                if result.has_previous and result.first
                else None
            ),
            clear_url=_query_string(_without(cursorless, "kind", "status", "partition", "parent")),
        )
        return TemplateResponse(request, f"{_TEMPLATES}/key_list.html", context)

    # -- the detail page ----------------------------------------------------------------------

    def key_detail_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        self._require_view(request)
        policy = keys.Policy.from_settings()
        now = timezone.now()
        key, row = self._get_row(policy, object_id, now)
        parent_row = parent_missing = None
        if row.parent is not None:
            parent = _find(policy, row.parent)
            if parent is None:
                parent_missing = row.parent
            else:
                parent_row = keys.to_rows([parent], policy, now)[0]
        children: list[keys.KeyRow] = []
        more_children = False
        own_meta = KeyMeta(row.key_id, row.record_created) if row.record_created else None
        if row.kind == keys.SYSTEM and own_meta is not None:
            children, more_children = _children(policy, own_meta, now)
        versions = keys.to_rows(
            list(policy.keys().filter(id=row.key_id).order_by("-created")[:_VERSIONS_SHOWN]),
            policy,
            now,
        )
        history = LogEntry.objects.filter(
            content_type=ContentType.objects.get_for_model(EncryptionKey),
            object_id=row.object_id,
        ).select_related("user")[:20]
        context = self._context(
            request,
            f"{row.kind_title}: {row.key_id}",
            policy=policy,
            row=row,
            object=key,
            parent_row=parent_row,
            parent_items=[self._linked(parent_row)] if parent_row else [],
            is_system=row.kind == keys.SYSTEM,
            parent_missing=parent_missing,
            children=[self._linked(child) for child in children],
            more_children=more_children,
            children_url=(
                self._url("changelist") + "?" + _encode(parent=keys.meta_object_id(own_meta))
                if children and own_meta
                else None
            ),
            versions=[self._linked(version) for version in versions],
            partition_url=(
                self._url("changelist") + "?" + _encode(partition=row.partition)
                if row.partition is not None
                else None
            ),
            masked_record=keys.masked_record(key.key_record),
            history=history,
            revoke_url=self._url("revoke", quote(row.object_id)) if row.revocable else None,
        )
        return TemplateResponse(request, f"{_TEMPLATES}/key_detail.html", context)

    # -- revoke -------------------------------------------------------------------------------

    def revoke_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method not in ("GET", "HEAD", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        if not self.has_revoke_permission(request):
            raise PermissionDenied
        policy = keys.Policy.from_settings()
        now = timezone.now()
        key, row = self._get_row(policy, object_id, now)
        detail_url = self.detail_url(row.object_id)
        if not row.revocable:
            reason = "is already revoked" if row.status == keys.REVOKED else "is not a key"
            if row.status == keys.MALFORMED:
                reason = "has a malformed record and cannot be revoked here"
            messages.warning(request, f"“{key}” {reason}.")
            return HttpResponseRedirect(detail_url)
        if request.method == "POST" and request.POST.get("post") == "yes":
            return self._revoke(request, policy, key, row, detail_url)
        context = self._context(
            request,
            "Are you sure?",
            row=row,
            object=key,
            detail_url=detail_url,
            policy=policy,
        )
        return TemplateResponse(request, f"{_TEMPLATES}/key_revoke_confirm.html", context)

    def _revoke(
        self,
        request: HttpRequest,
        policy: keys.Policy,
        key: EncryptionKey,
        row: keys.KeyRow,
        detail_url: str,
    ) -> HttpResponse:
        metastore = DjangoMetastore(policy.database)
        try:
            found = metastore.revoke(row.key_id, int(row.created.timestamp()))
        except MetastoreError as exc:
            messages.error(request, f"“{key}” could not be revoked: {exc}")
            return HttpResponseRedirect(detail_url)
        finally:
            metastore.close()
        if not found:
            raise Http404("no such key")
        user_id = request.user.pk
        assert user_id is not None  # admin views only run for authenticated staff
        LogEntry.objects.create(
            user_id=user_id,
            content_type=ContentType.objects.get_for_model(EncryptionKey),
            object_id=row.object_id,
            object_repr=str(key)[:200],
            action_flag=CHANGE,
            change_message=json.dumps([{"changed": {"fields": ["Revoked"]}}]),
        )
        messages.success(
            request,
            f"“{key}” was revoked. New writes will create a new "
            f"{'system' if row.kind == keys.SYSTEM else 'intermediate'} key; data it protects "
            "stays readable.",
        )
        return HttpResponseRedirect(detail_url)

    # -- health -------------------------------------------------------------------------------

    def health_view(self, request: HttpRequest) -> HttpResponse:
        self._require_view(request)
        if request.method not in ("GET", "HEAD", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        report = health.run() if request.method == "POST" else None
        context = self._context(request, "Asherah health checks", report=report)
        return TemplateResponse(request, f"{_TEMPLATES}/health.html", context)


def register(site: AdminSite | None = None) -> EncryptionKeyAdmin:
    """Put the key inspection pages on ``site`` (default: ``django.contrib.admin.site``).

    ``AdminSite.register`` refuses composite primary keys outright, so the ModelAdmin is
    placed in the site's registry directly; it is idempotent, and ``site.unregister`` works.
    """
    site = site or admin.site
    existing = site._registry.get(EncryptionKey)
    if isinstance(existing, EncryptionKeyAdmin):
        return existing
    model_admin = EncryptionKeyAdmin(EncryptionKey, site)
    site._registry[EncryptionKey] = model_admin
    return model_admin


# -- query strings --------------------------------------------------------------------------


def _param(params: QueryDict, name: str, allowed: Any = None) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if len(value) > _MAX_PARAM or not value.isprintable():
        raise BadRequest(f"invalid {name}")
    if allowed is not None and value not in allowed:
        raise BadRequest(f"unknown {name}")
    return value


def _cursor(params: QueryDict, name: str) -> tuple[str, Any] | None:
    value = params.get(name)
    if not value:
        return None
    try:
        return keys.parse_object_id(value)
    except ValueError:
        raise BadRequest(f"invalid {name}") from None


def _list_query(params: QueryDict) -> keys.ListQuery:
    parent = None
    raw_parent = _param(params, "parent")
    if raw_parent is not None:
        key_id, _, created = raw_parent.rpartition("@")
        if not key_id or not (created.isascii() and created.isdigit()) or len(created) > 11:
            raise BadRequest("invalid parent")
        parent = KeyMeta(key_id, int(created))
    order = _param(params, "o", ("created", "-created"))
    after, before = _cursor(params, "after"), _cursor(params, "before")
    if after and before:
        raise BadRequest("after and before exclude each other")
    return keys.ListQuery(
        kind=_param(params, "kind", (*keys.KINDS, keys.UNKNOWN)),
        status=_param(params, "status", keys.STATUSES),
        search=(_param(params, "q") or "").strip(),
        partition=_param(params, "partition"),
        parent=parent,
        ascending=order == "created",
        after=after,
        before=before,
    )


def _without(params: QueryDict, *names: str) -> QueryDict:
    copy = params.copy()
    for name in names:
        copy.pop(name, None)
    return copy


def _query_string(params: QueryDict, **changes: str | None) -> str:
    copy = params.copy()
    for name, value in changes.items():
        copy.pop(name, None)
        if value is not None:
            copy[name] = value
    return "?" + copy.urlencode()


def _encode(**values: str) -> str:
    query = QueryDict(mutable=True)
    query.update(values)
    return query.urlencode()


def _choices(
    params: QueryDict, name: str, selected: str | None, labels: dict[str, str]
) -> list[dict[str, Any]]:
    everything = _query_string(params, **{name: None})
    choices = [{"display": "All", "selected": selected is None, "url": everything}]
    for value, label in labels.items():
        choices.append(
            {
                "display": label,
                "selected": selected == value,
                "url": _query_string(params, **{name: value}),
            }
        )
    return choices


# -- lineage ---------------------------------------------------------------------------------


def _find(policy: keys.Policy, meta: KeyMeta) -> EncryptionKey | None:
    try:
        created = datetime.datetime.fromtimestamp(meta.created, datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return policy.keys().filter(id=meta.key_id, created=created).first()


def _children(policy: keys.Policy, parent: KeyMeta, now: Any) -> tuple[list[keys.KeyRow], bool]:
    """The newest intermediate keys wrapped by ``parent`` (bounded), and whether there are
    more."""
    candidates = policy.keys().filter(keys.parent_q(parent)).order_by("-created", "-id")
    scanned = list(candidates[:_CHILDREN_SCANNED])
    children = [key for key in scanned if keys.record_parent(key.key_record) == parent]
    more = len(children) > CHILDREN_SHOWN or len(scanned) == _CHILDREN_SCANNED
    return keys.to_rows(children[:CHILDREN_SHOWN], policy, now), more
