"""Logging set-up: plain text lines, or one JSON object a line with the session and stream in fields."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

CONTEXT_FIELDS = ("session", "stream")
"Attributes the server puts on log records (through `extra`) when it knows them."

FORMATS = ("text", "json")

_TOKEN_IN_QUERY = re.compile(r"(access_token=)[^&\s\"]+")


class HideTokens(logging.Filter):
    """Keeps access tokens given in a url's query (`?access_token=`) out of every log line (the access log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "access_token=" in message:
            record.msg, record.args = _TOKEN_IN_QUERY.sub(r"\1<hidden>", message), ()
        return True


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message, session, stream, error."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class ContextAdapter(logging.LoggerAdapter[logging.Logger]):
    """A LoggerAdapter whose fixed context (e.g. the session id) is merged with each call's `extra`."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


def configure_logging(level: str, log_format: str) -> None:
    """Send the root logger to stderr, as text or JSON lines; quiet the WebRTC libraries."""
    if log_format not in FORMATS:
        raise ValueError(f"log_format must be one of {', '.join(FORMATS)}, not {log_format!r}")
    handler = logging.StreamHandler()
    handler.addFilter(HideTokens())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aioice").setLevel(logging.WARNING)
    logging.getLogger("aiortc").setLevel(logging.WARNING)
