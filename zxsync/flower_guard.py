"""Flower as `zxsync flower` runs it: Prometheus' `/metrics` behind the same basic auth as the
rest (Flower 2.x serves it to anyone, and it names every task and worker); its access log
without query strings, like the relay's.

Run as `python -m zxsync.flower_guard <celery flower arguments>`; it patches the handler in this
process, then hands over to Celery's own command line.
"""

from __future__ import annotations

import sys

import tornado.web
from flower.views.monitor import Metrics


def protect_metrics() -> None:
    """Require the logged-in user for GET /metrics (a 401 without valid basic auth)."""
    if not getattr(Metrics.get, "__zxs_protected__", False):
        guarded = tornado.web.authenticated(Metrics.get)
        setattr(guarded, "__zxs_protected__", True)  # noqa: B010
        Metrics.get = guarded


def main(argv: list[str]) -> None:
    import logging

    from celery.bin.celery import main as celery_main

    from workers.logs import RedactingFilter

    protect_metrics()
    logging.getLogger("tornado.access").addFilter(RedactingFilter())  # no query strings
    sys.argv = ["celery", "-A", "workers.app", "flower", *argv]
    celery_main()


if __name__ == "__main__":
    main(sys.argv[1:])
