"""Zoho CRM notification channels in the sandbox: `/actions/watch` and the callbacks it sends.

Faithful to FACTS §7 and §11: a channel (`channel_id` a long, `events` like `Invoices.all` or
`Invoices.edit`, `notify_url`, `token` of at most 50 characters, `channel_expiry`) is created
with POST and replaced (renewed) with PUT. Without `channel_expiry` a channel lives 1 hour; more
than a week ahead, or a time already past, is INVALID_DATA (the docs disagree, 1 day in v2-v3
pages, 1 week in v4+; the sandbox takes the longer, so a client that renews within a day is safe
under both). After its expiry a channel sends nothing, and Zoho does not warn (§11).

A callback is a POST of JSON `{server_time, module, resource_uri, ids, operation, channel_id,
token, query_params, affected_fields}` (operation insert/update/delete), delivered on a daemon
thread after the change, like Zoho's. The sandbox notifies for changes made as a UI user would
(`ZohoSandbox.insert`/`update`); whether Zoho also notifies for API writes sent with
`"trigger": []` is not modelled (not verified).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

JSON = dict[str, Any]
DEFAULT_SECONDS = 3600.0
MAX_SECONDS = 7 * 86400.0
OPERATIONS = {"all", "create", "edit", "delete"}
EVENT_OF = {"insert": "create", "update": "edit", "delete": "delete"}


class WatchError(ValueError):
    """A channel Zoho would refuse: the API error's code and details."""

    def __init__(self, code: str, message: str, details: JSON) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details


@dataclass
class Channel:
    channel_id: str
    events: list[str]
    notify_url: str
    token: str
    expiry: float


@dataclass
class Notification:
    channel_id: str
    status: int | None
    body: JSON


@dataclass
class ZohoNotifications:
    """Channels per org and the thread that posts their callbacks."""

    clock: Any = time.time
    api_base: str = "https://www.zohoapis.com/crm/v8"
    sent: list[Notification] = field(default_factory=list)
    _channels: dict[str, dict[str, Channel]] = field(default_factory=dict)
    _queue: queue.Queue[tuple[str, JSON] | None] = field(default_factory=queue.Queue)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def watch(self, org_id: str, items: Any, modules: set[str], replace: bool) -> list[JSON]:
        """POST (create) or PUT (replace) channels; Zoho's per-channel success details."""
        if not isinstance(items, list) or not items:
            raise WatchError(
                "MANDATORY_NOT_FOUND", "required field not found", {"api_name": "watch"}
            )
        channels = [self._channel(item, modules, n) for n, item in enumerate(items)]
        with self._lock:
            mine = self._channels.setdefault(org_id, {})
            for channel in channels:
                if replace and channel.channel_id not in mine:
                    raise WatchError(
                        "INVALID_DATA", "the channel does not exist", {"api_name": "channel_id"}
                    )
                mine[channel.channel_id] = channel
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, daemon=True, name="zoho-notifications"
                )
                self._thread.start()
        return [self._details(c) for c in channels]

    def channels(self, org_id: str) -> list[JSON]:
        """GET /actions/watch: the org's channels that have not expired."""
        now = self.clock()
        with self._lock:
            live = [c for c in self._channels.get(org_id, {}).values() if c.expiry > now]
        return [self._details(c) for c in live]

    def notify(
        self, org_id: str, module: str, record_id: str, operation: str, fields: list[str]
    ) -> None:
        """Queue a callback on every live channel of the org that watches this change."""
        now = self.clock()
        with self._lock:
            targets = [
                c
                for c in self._channels.get(org_id, {}).values()
                if c.expiry > now
                and (f"{module}.all" in c.events or f"{module}.{EVENT_OF[operation]}" in c.events)
            ]
        for channel in targets:
            body: JSON = {
                "server_time": int(now * 1000),
                "module": module,
                "resource_uri": f"{self.api_base}/{module}",
                "ids": [record_id],
                "operation": operation,
                "channel_id": int(channel.channel_id),
                "token": channel.token,
                "query_params": {},
                "affected_fields": fields,
            }
            self._queue.put((channel.notify_url, body))

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def _channel(self, item: Any, modules: set[str], n: int) -> Channel:
        path = f"$.watch[{n}]"
        if not isinstance(item, dict):
            raise WatchError("INVALID_DATA", "invalid data", {"json_path": path})
        channel_id = str(item.get("channel_id", ""))
        if not channel_id.isdigit():
            raise WatchError("INVALID_DATA", "invalid data", {"api_name": "channel_id"})
        events = item.get("events")
        if not isinstance(events, list) or not events:
            raise WatchError(
                "MANDATORY_NOT_FOUND", "required field not found", {"api_name": "events"}
            )
        for event in events:
            module, _, operation = str(event).partition(".")
            if module not in modules or operation not in OPERATIONS:
                raise WatchError("INVALID_DATA", "invalid data", {"api_name": "events"})
        url = str(item.get("notify_url", ""))
        if not url.startswith(("http://", "https://")):
            raise WatchError("INVALID_DATA", "invalid data", {"api_name": "notify_url"})
        token = str(item.get("token") or "")
        if len(token) > 50:
            raise WatchError(
                "INVALID_DATA",
                "token exceeds 50 characters",
                {"api_name": "token", "maximum_length": 50},
            )
        now = self.clock()
        expiry = now + DEFAULT_SECONDS
        if item.get("channel_expiry"):
            try:
                when = datetime.fromisoformat(str(item["channel_expiry"]))
            except ValueError:
                when = None
            if when is None or when.tzinfo is None:
                raise WatchError("INVALID_DATA", "invalid data", {"api_name": "channel_expiry"})
            expiry = when.timestamp()
            if not now < expiry <= now + MAX_SECONDS:
                raise WatchError(
                    "INVALID_DATA",
                    "channel_expiry must be within a week",
                    {"api_name": "channel_expiry"},
                )
        return Channel(channel_id, [str(e) for e in events], url, token, expiry)

    def _details(self, channel: Channel) -> JSON:
        from sandbox.zoho_state import iso

        return {
            "code": "SUCCESS",
            "details": {
                "events": [
                    {
                        "channel_expiry": iso(channel.expiry),
                        "resource_uri": f"{self.api_base}/{e.partition('.')[0]}",
                        "resource_name": e.partition(".")[0],
                        "channel_id": int(channel.channel_id),
                    }
                    for e in channel.events
                ]
            },
            "message": "Successfully subscribed for actions-watch of the given module",
            "status": "success",
        }

    def _run(self) -> None:
        with httpx.Client(timeout=5.0) as client:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                url, body = item
                status: int | None = None
                try:
                    status = client.post(url, json=body).status_code
                except httpx.HTTPError:
                    status = None
                self.sent.append(Notification(str(body["channel_id"]), status, body))
