"""Keyed locks serialise one key, leave others free, and forget idle keys."""

from __future__ import annotations

import asyncio

from gateway.locks import KeyedLocks


async def test_same_key_is_serialised_other_keys_are_not():
    locks = KeyedLocks()
    order: list[str] = []
    inside = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with locks.hold("call-1"):
            order.append("first in")
            inside.set()
            await release.wait()
            order.append("first out")

    async def second() -> None:
        async with locks.hold("call-1"):
            order.append("second in")

    async def other() -> None:
        async with locks.hold("call-2"):
            order.append("other in")

    t1 = asyncio.create_task(first())
    await inside.wait()
    t2 = asyncio.create_task(second())
    t3 = asyncio.create_task(other())
    await t3
    assert order == ["first in", "other in"]
    release.set()
    await asyncio.gather(t1, t2)
    assert order == ["first in", "other in", "first out", "second in"]
    assert len(locks) == 0
