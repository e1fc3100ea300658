"""Structured logs: one JSON object per line on stderr (journald and log shippers take them as is).

    {"ts": "2026-12-03T14:35:09.123Z", "level": "info", "event": "listening", "publish": "tcp://*:5556", ...}

`event` is a stable snake_case name; the other keys are that event's fields.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

LOGGER = "inspector.agent"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        t = time.gmtime(record.created)
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(entry, default=str)


def setup(level: str = "info", stream=None) -> logging.Logger:
    """Route the agent's logger to `stream` (stderr) as JSON lines; idempotent."""
    logger = logging.getLogger(LOGGER)
    logger.setLevel(level.upper())
    logger.propagate = False
    for h in list(logger.handlers):
        if getattr(h, "_inspector_json", False):
            logger.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._inspector_json = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    return logger


class Log:
    """log.info("event_name", key=value, ...): a thin structured wrapper over the stdlib logger."""

    def __init__(self, name: str = LOGGER):
        self._logger = logging.getLogger(name)

    def _emit(self, level: int, event: str, exc_info: bool = False, **fields: Any) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, event, extra={"fields": fields}, exc_info=exc_info)

    def debug(self, event: str, **fields: Any) -> None:
        self._emit(logging.DEBUG, event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit(logging.INFO, event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit(logging.WARNING, event, **fields)

    def error(self, event: str, exc_info: bool = False, **fields: Any) -> None:
        self._emit(logging.ERROR, event, exc_info=exc_info, **fields)


log = Log()
