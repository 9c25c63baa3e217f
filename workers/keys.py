"""The product's Redis key space, in one place: every key pattern with its type, lifetime and the
module that owns it (the only one that writes it), after arq's single `constants.py`.

Every key starts with `zxs:`, behind the deployment's namespace when ZXS_REDIS_NAMESPACE is set
(`NAMESPACE:zxs:...`), so two deployments can share one Redis without seeing each other's state;
the empty default keeps the keys as they always were. The broker's own keys (kombu's queues and
unacked bookkeeping) get the same namespace through kombu's `global_keyprefix`
(`broker_prefix`). Nothing outside this module spells a key (tests/test_keys.py checks it), and
operator commands find keys with SCAN on a pattern from here, never the blocking KEYS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from string import Formatter

from workers.settings import get_settings

ROOT = "zxs:"


def prefix() -> str:
    """What every product key starts with in this deployment."""
    namespace = get_settings().zxs_redis_namespace
    return f"{namespace}:{ROOT}" if namespace else ROOT


def broker_prefix() -> str:
    """kombu's `global_keyprefix` for the broker's keys: empty without a namespace."""
    namespace = get_settings().zxs_redis_namespace
    return f"{namespace}:" if namespace else ""


@dataclass(frozen=True)
class Key:
    """One key pattern: `pattern` after the prefix, its fields filled in order by a call."""

    pattern: str
    type: str  # the Redis type: string, hash, list, set, zset, stream, lock
    ttl: str  # how long it lives: "none" or when it expires
    owner: str  # the module that writes it
    fields: tuple[str, ...] = field(init=False)

    _positional: str = field(init=False, repr=False)  # the pattern with its fields numbered

    def __post_init__(self) -> None:
        parsed = list(Formatter().parse(self.pattern))
        names = tuple(name for _, name, _, _ in parsed if name)
        numbered = "".join(
            text.replace("{", "{{").replace("}", "}}")
            + (f"{{{names.index(name)}}}" if name else "")
            for text, name, _, _ in parsed
        )
        object.__setattr__(self, "fields", names)
        object.__setattr__(self, "_positional", numbered)

    def __call__(self, *parts: object) -> str:
        """The key for these field values, in the order of the pattern's fields (made a few
        thousand times a second in a burst: a numbered template, no dict per call)."""
        if len(parts) != len(self.fields):
            raise TypeError(f"{self.pattern} takes {len(self.fields)} parts, got {len(parts)}")
        return prefix() + self._positional.format(*parts)

    def match(self, **known: object) -> str:
        """A SCAN pattern: the fields given filled in, the others `*`."""
        return prefix() + self.pattern.format(
            **{name: known.get(name, "*") for name in self.fields}
        )

    def stem(self) -> str:
        """The key's text up to its first field (to read the fields back from a SCANned key)."""
        return prefix() + self.pattern.split("{", 1)[0]


# workers/history.py: records in flight (the record store proper is the database)
INFLIGHT = Key("inflight:{connection}", "hash", "none", "workers/history.py")
PROGRESS = Key("progress:{connection}", "zset", "none", "workers/history.py")
OUTCOMES = Key("outcomes:{connection}", "hash", "none", "workers/history.py")
# workers/activity.py: the console's counters
ACTIVITY_HOUR = Key("activity:{connection}:{hour}", "hash", "2 days", "workers/activity.py")
LAST_SYNC = Key("activity:{connection}:last_sync", "string", "none", "workers/activity.py")
XERO_429 = Key("activity:{connection}:xero_429", "string", "none", "workers/activity.py")
BEAT_HEARTBEAT = Key("beat:heartbeat", "string", "none", "workers/activity.py")
# workers/admission.py and workers/pipeline.py: the door and the waiting room
ADMIT = Key("admit:{connection}", "list", "none", "workers/admission.py")
ADMITTED = Key("admitted:{connection}", "zset", "none", "workers/admission.py")
PAUSED = Key("paused:{connection}", "string", "none", "workers/admission.py")
DOOR = Key("door:{connection}", "string", "1 hour", "workers/pipeline.py")
# workers/door.py: jobs sent to the door and not yet taken in (when sent; the job itself)
DOOR_SENT = Key("door-sent:{connection}", "zset", "until taken in", "workers/door.py")
DOOR_JOBS = Key("door-jobs:{connection}", "hash", "until taken in", "workers/door.py")
# workers/idempotency.py: event claims, coalescing marks, locks
EVENT = Key(
    "events:{connection}:{event_id}", "string", "ZXS_EVENT_TTL_SECONDS", "workers/idempotency.py"
)
PENDING = Key(
    "pending:{connection}:{module}:{record_id}:{kind}",
    "string",
    "1 hour",
    "workers/idempotency.py (set by relay/app.py)",
)
LOCK = Key("lock:{name}", "lock", "the lock's lease", "workers/idempotency.py")
# workers/stage.py: deliveries per attempt (poison messages)
DELIVERIES = Key(
    "deliveries:{task_id}:{retries}", "string", "24 hours", "workers/policies/poison.py"
)
# workers/deferral.py: jobs parked until the next daily window
DEFERRED = Key("deferred", "zset", "none", "workers/deferral.py")
DEFERRED_LOCK = Key("lock:release_deferred", "lock", "300 s", "workers/deferral.py")
# workers/ratelimit.py: limiter windows (each with an `:anchor` string) and slots
RATE_SLOTS = Key("rl:{scope}:slots", "zset", "2 leases", "workers/ratelimit.py")
XERO_MINUTE = Key("rl:xero:{tenant_id}:minute", "zset", "2 windows", "workers/ratelimit.py")
XERO_DAY = Key("rl:xero:{tenant_id}:day", "zset", "2 windows", "workers/ratelimit.py")
XERO_APP_MINUTE = Key("rl:xero-app:{client_id}:minute", "zset", "2 windows", "workers/ratelimit.py")
ZOHO_MINUTE = Key("rl:zoho:{org_id}:minute", "zset", "2 windows", "workers/ratelimit.py")
ZOHO_DAY = Key("rl:zoho:{org_id}:day", "zset", "2 windows", "workers/ratelimit.py")
ANCHOR = ":anchor"  # suffix of a window's anchor (string, 2 days at least)
# suffix of a fixed window's edge calls (zset, 3 windows): a call admitted within a guard of
# the window's edge, scored in the neighbouring window too (Xero may count it in either)
EDGES = ":edges"
# workers/polling.py: when each connection's poll is due
POLL = Key("poll:{kind}:{connection}", "hash", "none", "workers/polling.py")
# workers/batching/: one buffer per kind and connection (workers/batching/buffer.py)
BATCH_ACTIVE = Key("batch:active", "set", "none", "workers/batching/buffer.py")
BATCH_RESUMED = Key("batch:resumed:{task_id}", "string", "24 hours", "workers/batching/resume.py")
BATCH_PACE = Key("batch:pace:{connection}", "hash", "2 minutes", "workers/batching/policy.py")
# the flush lock's name has always held the buffer's whole prefix (`zxs:` twice)
BATCH_LOCK = Key(
    "lock:zxs:batch:{kind}:{connection}", "lock", "10 s, renewed", "workers/batching/flush.py"
)
_BUFFER = "batch:{kind}:{connection}:"
BUFFER = {
    "items": Key(_BUFFER + "items", "hash", "none", "workers/batching/buffer.py"),
    "queue": Key(_BUFFER + "queue", "zset", "none", "workers/batching/buffer.py"),
    "claimed": Key(_BUFFER + "claimed", "zset", "none", "workers/batching/buffer.py"),
    "suspect": Key(_BUFFER + "suspect", "set", "none", "workers/batching/buffer.py"),
    "tries": Key(_BUFFER + "tries", "hash", "none", "workers/batching/buffer.py"),
    "waiting": Key(_BUFFER + "waiting", "set", "none", "workers/batching/buffer.py"),
    "hold": Key(_BUFFER + "hold", "string", "until the hold ends", "workers/batching/buffer.py"),
    "server": Key(_BUFFER + "server", "string", "none", "workers/batching/buffer.py"),
    "fence": Key(_BUFFER + "fence", "string", "none", "workers/batching/fence.py"),
    "sent": Key(_BUFFER + "sent", "hash", "none", "workers/batching/fence.py"),
    "due": Key(_BUFFER + "due", "string", "ZXS_BATCH_MAX_WAIT + 1 s", "workers/batching/policy.py"),
    "scheduled": Key(
        _BUFFER + "scheduled",
        "string",
        "the wait + ZXS_BATCH_MAX_WAIT + 1 s",
        "workers/batching/policy.py",
    ),
}
BUFFER_WAITERS = Key(_BUFFER + "waiters:{element_id}", "list", "none", "workers/batching/buffer.py")
# tasks/: per-connection marks of the polls and sweeps, caches
ZOHO_CHANNEL = Key("zoho:channel:{connection}", "string", "none", "tasks/zoho_channels.py")
ZOHO_SWEEP = Key("zoho:sweep:{connection}:{module}", "string", "none", "tasks/zoho_sweep.py")
PO_POLL = Key("po_poll:{connection}", "string", "none", "tasks/po_status_poll.py")
RECONCILE = Key("payments:reconcile:{connection}", "string", "none", "tasks/payment_feedback.py")
TAX_RATES = Key("cache:{tenant_id}:taxrates", "string", "1 hour", "tasks/tax_rates.py")
TAX_RATES_FETCH = Key("cache:{tenant_id}:taxrates:fetch", "string", "30 s", "tasks/tax_rates.py")
# clients/tokens.py: each connection's OAuth tokens (encrypted)
TOKENS = Key("tokens:{provider}:{connection}", "string", "none", "clients/tokens.py")
# relay/app.py: webhook deliveries already accepted
RELAY = Key("relay:{delivery}", "string", "ZXS_EVENT_TTL_SECONDS", "relay/app.py")
# console/: the console's own state
SHORTCODES = Key("console:xero_shortcode", "hash", "none", "console/lookup.py")
LOGIN_FAILURES = Key("console:login_failures:{user}", "string", "15 minutes", "console/app.py")
# zxsync/backfill.py: how far a backfill read
BACKFILL = Key("backfill:{connection}:{module}", "string", "none", "zxsync/backfill.py")
# before the system of record (issue #20) these lived in Redis; `zxsync migrate-state` reads them
LEGACY_LINKS = Key("links:{connection}:{kind}", "hash", "none (legacy)", "zxsync/state.py")
LEGACY_HISTORY = Key("history:{record}", "list", "none (legacy)", "zxsync/state.py")
LEGACY_DLQ = Key("dlq", "stream", "none (legacy)", "workers/deadletter.py")
