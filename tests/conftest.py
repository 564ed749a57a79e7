from __future__ import annotations

from typing import Any

import pytest

import demo_source
from gateway.testing import Harness

from demo_secret import SECRET


@pytest.fixture
async def demo(gateway_harness: Any) -> Harness:
    """A gateway with the demo source, a tenant ``acme`` bound to the recorder, one connection."""
    demo_source.SOURCE.originated.clear()
    h = await gateway_harness()
    await h.create_tenant("acme")
    conn = await h.connect("acme", "demo", {"secret": SECRET})
    h.connection_id = conn["id"]  # type: ignore[attr-defined]
    return h
