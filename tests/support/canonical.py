"""The canonical DataRowRecord layout check in plain Python: the reference for the C
accelerator's ``canonical_created`` (tests/unit/core/test_speedups.py and the fuzz targets of
tests/cproof/speedups_targets.py)."""

from __future__ import annotations

from asherah_django.core import session as session_module


def reference_created(record: str, middle: str) -> int:
    """The checks of Session._decrypt_py's fast path: the intermediate key's Created, or -1."""
    head, label, tail = session_module._HEAD, session_module._KEY_LABEL, session_module._TAIL
    start, key_start = session_module._CREATED_START, session_module._KEY_START
    end = session_module._KEY_END + len(middle)
    if (
        record[:start] == head
        and record[start + 10 : key_start] == label
        and record[session_module._KEY_END : end] == middle
        and record[end + 10 : end + 21] == tail
        and record[-2:] == '"}'
    ):
        numbers = record[start : start + 10] + record[end : end + 10]
        if numbers.isascii() and numbers.isdigit() and numbers[0] != "0" != numbers[10]:
            return int(numbers[10:])
    return -1
