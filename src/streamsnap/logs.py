"""Logging set-up: plain text lines, or one JSON object a line with the session and stream in fields."""

from __future__ import annotations

import json
import logging
import re
import urllib.parse
from datetime import UTC, datetime
from typing import Any

CONTEXT_FIELDS = ("session", "stream")
"Attributes the server puts on log records (through `extra`) when it knows them."

FORMATS = ("text", "json")

CREDENTIAL_KEYS = frozenset({"access_token", "token", "auth_token", "authtoken", "jwt", "password", "secret",
                             "signature", "sig"})
"Query keys whose values never reach a log line (compared percent-decoded and case-insensitively)."

# A query parameter in a url anywhere in a line: `?key=value` or `&key=value`.
_QUERY_PARAMETER = re.compile(r"([?&;])([^=&;?\s\"'#]+)=([^&;\s\"'#]*)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    """`text` with control characters written as escapes (`\\x1b`), so that it cannot forge or colour a log line."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else f"\\u{ord(m.group()):04x}",
                        text)


def is_credential_key(key: str) -> bool:
    """Whether query key `key` names a credential, however percent-encoded (`access%5Ftoken`, `%61ccess_token`)."""
    name = key
    for _ in range(3):  # %2561ccess_token is decoded twice by some stacks
        decoded = urllib.parse.unquote_plus(name)
        if decoded == name:
            break
        name = decoded
    return name.strip().lower() in CREDENTIAL_KEYS


def hide_credentials(text: str) -> str:
    """`text` with the value of every credential query parameter replaced by `<hidden>`."""
    if "=" not in text:
        return text
    return _QUERY_PARAMETER.sub(
        lambda m: f"{m.group(1)}{m.group(2)}=<hidden>" if is_credential_key(m.group(2)) else m.group(0), text)


def safe_line(text: str) -> str:
    """`text` fit for a log line: no credentials in query strings, control characters escaped."""
    return escape_controls(hide_credentials(text))


class HideTokens(logging.Filter):
    """Keeps credentials in urls' queries (`?access_token=`, however encoded) out of every log line, and
    escapes control characters (a stream name with a newline or an ESC must not forge or colour a line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        safe = safe_line(message)
        if safe != message:
            record.msg, record.args = safe, ()
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
