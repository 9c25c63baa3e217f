"""Structured logs (structlog): JSON in production, readable in a terminal.

Stages bind connection, module, record id, stage and attempt, so one record's journey can be
followed across workers with a single filter. Every line goes through the same redaction as
dead letters (workers/redact.py) after it is rendered, so no field, however a secret got into
it, reaches the log in clear; so do stdlib records (Celery's, uvicorn's, tornado's: message,
arguments and traceback), and access logs also lose their query strings.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

from workers.redact import mask_query, redact


def configure_logging(level: str, json_output: bool) -> None:
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            redacting(renderer),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
    )
    # stdlib logging (Celery's task and worker logs) through the same redaction: on every root
    # handler there is now, e.g. the ones a Celery pool process inherits
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def redacting(renderer: structlog.types.Processor) -> structlog.types.Processor:
    """The renderer, its output redacted (a renderer returns the final line)."""

    def render(logger: Any, name: str, event_dict: Any) -> Any:
        line = renderer(logger, name, event_dict)
        return redact(line) if isinstance(line, str) else line

    return render


class RedactingFilter(logging.Filter):
    """For stdlib loggers (uvicorn, tornado): each string argument redacted and, in access
    logs, stripped of its query string; the arguments keep their shape, which uvicorn's access
    formatter unpacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        access = record.name.endswith(".access")

        def clean(value: object) -> object:
            if not isinstance(value, str):
                return value
            return redact(mask_query(value) if access else value)

        if record.exc_info and not record.exc_text:  # the traceback, formatted once, redacted
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        if isinstance(record.msg, str):
            record.msg = clean(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(clean(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: clean(v) for k, v in record.args.items()}
        return True


log = structlog.get_logger("zxsync")
