"""The organisation's tax rates, which the invoice and purchase order stages map lines with:
cached per tenant for an hour, and fetched ahead by the tenant's Xero flushes.

A stage the flusher runs on may not call Xero (workers/context.py `CallsNotHere`), so while the
rates were not cached a tenant's first invoice, and its first after each hourly expiry, left the
flusher for a task of its own that waited behind the queue: 3-4 s of the tenants bench's quiet
tenants' p99 (README "Seventh pass"). Every flush of a Xero kind for the tenant now fetches them
on a thread beside its batch while they are missing or within `REFRESH_AHEAD_SECONDS` of
expiring, once per tenant at a time, so the stage finds them when the flusher runs it.
"""

from __future__ import annotations

from decimal import Decimal

from schemas.wire import dumps, loads
from workers import keys
from workers.batching import prefetched_by_flushes
from workers.context import StageContext

TAX_RATE_CACHE_SECONDS = 3600
REFRESH_AHEAD_SECONDS = 600
FETCHING_SECONDS = 30  # one flusher fetches at a time; a dead one's claim lapses


def tax_rates(ctx: StageContext) -> dict[str, Decimal]:
    """The organisation's tax rates from the cache, or one call to Xero (cached for an hour)."""
    cached = ctx.redis.get(keys.TAX_RATES(ctx.connection.xero_tenant_id))
    if cached:
        return {k: Decimal(v) for k, v in loads(str(cached)).items()}
    return _fetch(ctx)


def _due(ctx: StageContext) -> bool:
    """Missing or about to expire, and no other flusher is fetching them (this one claims it)."""
    tenant = ctx.connection.xero_tenant_id
    if ctx.redis.ttl(keys.TAX_RATES(tenant)) >= REFRESH_AHEAD_SECONDS:
        return False
    return bool(ctx.redis.set(keys.TAX_RATES_FETCH(tenant), 1, nx=True, ex=FETCHING_SECONDS))


@prefetched_by_flushes(_due)
def _fetch(ctx: StageContext) -> dict[str, Decimal]:
    rates = ctx.xero.tax_rates()
    ctx.redis.set(
        keys.TAX_RATES(ctx.connection.xero_tenant_id),
        dumps({k: str(v) for k, v in rates.items()}),
        ex=TAX_RATE_CACHE_SECONDS,
    )
    return rates
