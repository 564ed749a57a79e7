from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import demo_source  # noqa: E402

from gateway.testing import Harness  # noqa: E402


@pytest.fixture
async def demo(gateway_harness: Any) -> Harness:
    """A gateway with the demo source, a tenant ``acme`` bound to the recorder, one connection."""
    demo_source.SOURCE.originated.clear()
    h = await gateway_harness(plugins=[("demo", demo_source)])
    await h.create_tenant("acme")
    conn = await h.connect("acme", "demo", {"secret": "s3cret-s3cret"})
    h.connection_id = conn["id"]  # type: ignore[attr-defined]
    return h
