"""asherah_django.session(): with, async with, decorator, nesting, isolation."""

from __future__ import annotations

import asyncio
import threading

import pytest

import asherah_django
from asherah_django.context import current_partition, current_session, require_partition
from asherah_django.core.errors import InvalidPartitionError, NoActiveSessionError


def test_with_sets_and_restores_nested_scopes() -> None:
    assert current_partition() is None
    with asherah_django.session("outer") as outer:
        assert outer.partition_id == "outer"
        assert current_partition() == "outer"
        with asherah_django.session("inner"):
            assert current_partition() == "inner"
        assert current_partition() == "outer"
    assert current_partition() is None


def test_scope_is_restored_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError), asherah_django.session("a"):
        raise RuntimeError("boom")
    assert current_partition() is None


def test_one_object_can_be_entered_again_and_nested() -> None:
    scope = asherah_django.session("x")
    with scope, scope:
        assert current_partition() == "x"
    assert current_partition() is None
    with scope:
        assert current_partition() == "x"


def test_none_opens_no_scope_inside_another() -> None:
    with asherah_django.session("a"):
        with asherah_django.session(None):
            assert current_partition() is None
            with pytest.raises(NoActiveSessionError, match=r"no asherah_django\.session"):
                require_partition()
        assert current_partition() == "a"


@pytest.mark.parametrize("bad", ["", 42, b"bytes"])
def test_invalid_partition_ids_are_refused(bad: object) -> None:
    with pytest.raises(InvalidPartitionError):
        asherah_django.session(bad)  # type: ignore[arg-type]


def test_sync_decorator_opens_a_fresh_scope_per_call() -> None:
    @asherah_django.session("deco")
    def job(x: int) -> tuple[int, str | None]:
        return x, current_partition()

    assert job(3) == (3, "deco")
    assert job.__name__ == "job"
    assert current_partition() is None


def test_async_decorator_and_async_with() -> None:
    @asherah_django.session("adeco")
    async def job() -> str | None:
        await asyncio.sleep(0)
        return current_partition()

    async def main() -> tuple[str | None, str | None, str | None]:
        inside = await job()
        async with asherah_django.session("awith"):
            await asyncio.sleep(0)
            in_with = current_partition()
        return inside, in_with, current_partition()

    assert asyncio.iscoroutinefunction(job)
    assert asyncio.run(main()) == ("adeco", "awith", None)


def test_threads_never_see_each_others_partition() -> None:
    barrier = threading.Barrier(8)
    seen: dict[int, list[str | None]] = {}

    def worker(n: int) -> None:
        with asherah_django.session(f"t{n}"):
            barrier.wait()
            seen[n] = [current_partition() for _ in range(200)]

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {n: [f"t{n}"] * 200 for n in range(8)}
    assert current_partition() is None


def test_asyncio_tasks_never_see_each_others_partition() -> None:
    async def task(n: int) -> list[str | None]:
        async with asherah_django.session(f"task{n}"):
            out = []
            for _ in range(20):
                await asyncio.sleep(0)  # interleave with the other tasks
                out.append(current_partition())
            return out

    async def main() -> list[list[str | None]]:
        return await asyncio.gather(*(task(n) for n in range(10)))

    assert asyncio.run(main()) == [[f"task{n}"] * 20 for n in range(10)]


@pytest.mark.django_db
def test_current_session_is_the_factorys_session_for_the_partition() -> None:
    with pytest.raises(NoActiveSessionError):
        current_session()
    with asherah_django.session("cs"):
        assert current_session().partition_id == "cs"
        record = current_session().encrypt_text("hi")
    with asherah_django.session("cs"):
        assert current_session().decrypt_text(record) == "hi"
