"""Concurrent rate-limit hits share Redis calls and each still gets its own exact count."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from service.counterbatch import BUMP_SCRIPT, CounterBatch
from service.localredis import free_port

T = TypeVar("T")


def run_apart(coroutine: Coroutine[Any, Any, T]) -> T:
    """asyncio.run in a thread of its own: the session may already run a loop in this one
    (Playwright's sync API, when the browser tests ran first)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


class CountingScript:
    """The real registered script, with a count of the calls that reach Redis."""

    def __init__(self, script: Any) -> None:
        self.script = script
        self.calls = 0

    async def __call__(self, **kwargs: Any) -> Any:
        self.calls += 1
        return await self.script(**kwargs)


async def _bumps(url: str, hits: list[tuple[list[str], int]]) -> tuple[list[Any], int]:
    client = aioredis.Redis.from_url(url)
    try:
        script = CountingScript(client.register_script(BUMP_SCRIPT))
        batch = CounterBatch(script, timeout_seconds=2.0)
        results = await asyncio.gather(
            *(batch.bump(keys, window) for keys, window in hits), return_exceptions=True
        )
        return results, script.calls
    finally:
        await client.aclose()


def test_concurrent_hits_share_calls_and_each_count_is_exact(redis_url: str) -> None:
    key = f"intake:test:batch:{secrets.token_hex(6)}"
    other = f"intake:test:batch:{secrets.token_hex(6)}"
    hits = [([key], 60_000) if i % 2 else ([key, other], 5_000) for i in range(60)]
    results, calls = run_apart(_bumps(redis_url, hits))
    assert calls < len(hits)  # batched: the first goes alone, the rest wait and go together
    counts_for_key = sorted(result[0][0] for result in results)
    assert counts_for_key == list(range(1, 61))  # every hit counted once, none lost
    assert sorted(result[1][0] for result in results if len(result) == 2) == list(range(1, 31))
    for result in results:
        assert all(0 < ttl <= 60_000 for _, ttl in result)


def test_a_lone_hit_goes_out_at_once(redis_url: str) -> None:
    results, calls = run_apart(
        _bumps(redis_url, [([f"intake:test:{secrets.token_hex(6)}"], 1_000)])
    )
    assert calls == 1
    assert results[0][0][0] == 1 and 0 < results[0][0][1] <= 1_000


def test_an_unreachable_redis_fails_every_waiting_hit() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    results, _ = run_apart(_bumps(url, [([f"k{i}"], 1_000) for i in range(5)]))
    assert all(isinstance(result, RedisConnectionError | OSError) for result in results)


@pytest.mark.parametrize("cancelled", [0, 2])
def test_a_cancelled_hit_does_not_disturb_the_others(redis_url: str, cancelled: int) -> None:
    async def scenario() -> list[Any]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            batch = CounterBatch(client.register_script(BUMP_SCRIPT), timeout_seconds=2.0)
            key = f"intake:test:batch:{secrets.token_hex(6)}"
            tasks = [asyncio.create_task(batch.bump([key], 10_000)) for _ in range(5)]
            await asyncio.sleep(0)
            tasks[cancelled].cancel()
            return await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await client.aclose()

    results = run_apart(scenario())
    assert isinstance(results[cancelled], asyncio.CancelledError)
    assert all(isinstance(r, list) for i, r in enumerate(results) if i != cancelled)
