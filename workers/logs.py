"""Structured logs (structlog): JSON in production, readable in a terminal.

Stages bind connection, module, record id, stage and attempt, so one record's journey can be
followed across workers with a single filter.
"""

from __future__ import annotations

import logging

import structlog


def configure_logging(level: str, json_output: bool) -> None:
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
    )


log = structlog.get_logger("zxsync")
