"""The Xero sandbox's core: organisations by id, call counters, outages and faults, and the
change stamp every resource uses (UpdatedDateUTC, Xero's order, webhooks)."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping

from sandbox.config import SandboxConfig
from sandbox.faults import Faults
from sandbox.xero.common import JSON, Tenant, _ms_of, _utc, ms_date
from sandbox.xero_webhooks import CATEGORIES, XeroWebhooks


class SandboxBase:
    """The state and bookkeeping every resource room builds on."""

    def __init__(self, config: SandboxConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.lock = threading.RLock()
        self.webhooks = XeroWebhooks()
        self._init_state()

    def _init_state(self) -> None:
        """The state this room owns; each room adds its own (and calls this first)."""
        self._tenants: dict[str, Tenant] = {}
        self.faults = Faults(self.config)
        self._rng = random.Random(self.config.seed)
        self._calls: Counter[str] = Counter()
        self._by_route: Counter[str] = Counter()
        self._status: Counter[str] = Counter()
        self._outages: dict[str, int] = {}

    def tenant(self, tenant_id: str) -> Tenant:
        return self._tenants[tenant_id]

    def record(self, route: str, status: int, tenant_id: str | None) -> None:
        """Count one answered call for `stats()`."""
        with self.lock:
            self._by_route[route] += 1
            self._status[str(status)] += 1
            if tenant_id is not None:
                self._calls[tenant_id] += 1

    def outage(self, tenant_id: str, status: int | None) -> None:
        """Every Accounting call for this tenant answers `status` (404, 503...) until cleared
        with None: one organisation's trouble, the others unaffected."""
        with self.lock:
            if status is None:
                self._outages.pop(tenant_id, None)
            else:
                self._outages[tenant_id] = status

    def outage_of(self, tenant_id: str) -> int | None:
        with self.lock:
            return self._outages.get(tenant_id)

    def roll_fault(self) -> bool:
        """Whether this call is one of the `fault_rate` share answered with a 503."""
        with self.lock:
            return self.config.fault_rate > 0 and self._rng.random() < self.config.fault_rate

    @staticmethod
    def ordered(t: Tenant, store: Mapping[str, JSON], id_field: str) -> list[JSON]:
        """Xero's default order: UpdatedDateUTC, then the internal (creation) id."""
        return sorted(
            store.values(), key=lambda o: (_ms_of(o["UpdatedDateUTC"]), t.seq.get(o[id_field], 0))
        )

    def _touch(self, t: Tenant, obj: JSON, id_field: str, now: float) -> None:
        """Stamp a change, and tell the webhook subscriber (a payment is an INVOICE UPDATE)."""
        obj["UpdatedDateUTC"] = ms_date(_utc(now))
        created = obj[id_field] not in t.seq
        t.seq.setdefault(obj[id_field], len(t.seq) + 1)
        category = CATEGORIES.get(id_field)
        if category is not None:
            note = category == "CREDITNOTE"
            data = {"Type": obj["Type"], "Status": obj["Status"]} if note else {}
            self.webhooks.emit(t.tenant_id, category, obj[id_field], created, **data)
