"""The ``key_integrity`` check: how many of this service's key rows are signed, untagged
or invalid (``KEY_INTEGRITY``, issue #13). Reads every key row of the service and unwraps
each system key version once through the KMS."""

from __future__ import annotations

from ..conf import asherah_settings
from ..key_tags import scan
from .context import Context, Outcome, fail, ok, warn

_SIGN_HINT = "verify and sign them with manage.py asherah_sign_keys (see SECURITY.md)"
_BAD_HINT = (
    "a row was edited, copied or substituted in the database, or cannot be unwrapped; "
    "see the rows named by manage.py asherah_sign_keys --dry-run and SECURITY.md"
)


def key_integrity(ctx: Context) -> Outcome:
    mode = asherah_settings.KEY_INTEGRITY  # (not run when off)
    if not ctx.django_metastore:
        return ok(f"KEY_INTEGRITY is {mode!r} (METASTORE=memory: nothing stored)", mode=mode)
    factory = ctx.factory
    assert factory is not None
    counts = scan(factory, ctx.alias)
    data = {
        "mode": mode,
        "rows": counts.rows,
        "signed": counts.signed,
        "untagged": counts.untagged,
        "invalid": counts.invalid,
        "unreadable": counts.unreadable,
        "foreign_parent": counts.foreign_parent,
    }
    detail = f"KEY_INTEGRITY is {mode!r}: {counts.summary()}"
    if counts.bad:
        return fail(detail, _BAD_HINT, **data)
    if counts.untagged and mode == "require":
        return fail(f"{detail}; 'require' refuses untagged rows", _SIGN_HINT, **data)
    if counts.untagged:
        return warn(
            f"{detail}; 'sign' accepts them (rows written by other Asherah implementations)",
            _SIGN_HINT,
            **data,
        )
    return ok(detail, **data)
