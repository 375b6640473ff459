"""One JSON log format for every batchgate process: the API (gunicorn), workers and beat.

Each line is one JSON object: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
``process``, plus ``request_id``, ``job_id`` and ``chunk`` when the line is about a request or
a job (``workers.logcontext``), plus any ``extra=`` fields. Libraries that log full URLs at
DEBUG or INFO (urllib3, httpx, httpcore) are held at WARNING: a webhook or upstream URL may
carry a token in its query, and no secret may reach a log line.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from workers import logcontext

FIELDS = ["asctime", "levelname", "name", "message", "process"]
RENAMED = {"asctime": "time", "levelname": "level", "name": "logger"}
URL_LOGGERS = ("urllib3", "httpx", "httpcore")
"""Loggers that print request URLs below WARNING."""


class JsonFormatter(_JsonFormatter):
    """python-json-logger's formatter with batchgate's fields and the log context."""

    def __init__(self) -> None:
        super().__init__(FIELDS, rename_fields=RENAMED)

    def formatTime(self, record: logging.LogRecord,
                   datefmt: str | None = None) -> str:
        """UTC with milliseconds: lines from several processes sort and compare."""
        moment = datetime.fromtimestamp(record.created, tz=UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord,
                   message_dict: dict[str, Any]) -> None:
        """The standard fields, then the request/job context (an explicit extra wins)."""
        super().add_fields(log_data, record, message_dict)
        for name, value in logcontext.current().items():
            log_data.setdefault(name, value)


def _level(level: int | str) -> int:
    if isinstance(level, str):
        named = logging.getLevelName(level.upper())
        return named if isinstance(named, int) else logging.INFO
    return level


def setup_logging(level: int | str = logging.INFO) -> None:
    """Send this process's log lines, as JSON, to stderr at ``level``."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_level(level))
    logging.captureWarnings(True)  # a warning is a log line too, not raw stderr text
    for name in URL_LOGGERS:
        logging.getLogger(name).setLevel(max(_level(level), logging.WARNING))


def gunicorn_logger_class() -> type:
    """gunicorn's ``logger_class``: its own lines in our JSON format. (Not ``logconfig_dict``,
    which would also turn on gunicorn's access log: a line per request, where batchgate logs
    one at DEBUG only, to keep the hot path lean.)"""
    from gunicorn.glogging import Logger

    class JsonGunicornLogger(Logger):  # type: ignore[misc]
        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            for handler in self.error_log.handlers:
                handler.setFormatter(JsonFormatter())

    return JsonGunicornLogger


def on_celery_setup_logging(loglevel: int | str | None = None, **_: Any) -> None:
    """Celery's ``setup_logging`` signal: with a receiver connected, Celery leaves logging
    to us, in the worker and in beat alike."""
    setup_logging(loglevel if loglevel is not None else logging.INFO)
