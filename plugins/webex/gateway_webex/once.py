"""Single use across processes: an OAuth ``state`` or a pin link is accepted once.

Used ids are kept in the plugin's storage (of the connection's tenant) until they expire,
so a second gateway process sharing the store refuses them too; the check and the write
happen under the tenant's lease, so two callbacks racing with one state cannot both win.
"""

from __future__ import annotations

import time

from gateway import PluginContext

KIND = "used"


async def use(ctx: PluginContext, tenant: str, what: str, token_id: str, expires_at: float) -> bool:
    """Remember ``what``/``token_id`` until ``expires_at``; ``False`` when it was used already."""
    st = ctx.storage(tenant)
    key = f"{what}:{token_id}"
    async with st.lease("oauth-once", ttl=10.0, wait=10.0):
        if await st.get(KIND, key) is not None:
            return False
        now = time.time()
        for old, value in await st.all(KIND):  # forget what can no longer be presented
            if not isinstance(value, dict) or float(value.get("until", 0)) < now:
                await st.delete(KIND, old)
        await st.put(KIND, key, {"until": expires_at})
    return True
