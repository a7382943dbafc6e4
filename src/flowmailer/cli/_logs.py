"""Where the command's log records go: standard error, plainly or as one JSON object a line.

The package itself only has a ``NullHandler`` (a library never decides where its records go); the command
installs this one, so that a relay under systemd or in a container logs lines a collector can parse, each with
the message's outbox id, client reference, message id and attempt when the record is about a message.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

__all__ = ["JsonFormatter", "configure_logging"]

_HANDLER = "flowmailer-cli"

#: Attributes every LogRecord has; anything else on a record came in through ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, and every ``extra`` attribute."""

    def format(self, record: logging.LogRecord) -> str:
        item: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                item[key] = value if isinstance(value, str | int | float | bool | None) else str(value)
        if record.exc_info:
            item["exception"] = self.formatException(record.exc_info)
        return json.dumps(item, ensure_ascii=False)


class _Stderr(logging.StreamHandler[TextIO]):
    """Standard error as it is when a record comes, not when the handler was made (as Python's last resort does)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # a test's captured stream, or a redirected one, not a closed one
        super().emit(record)


def configure_logging(level: str | None, log_format: str, stream: TextIO | None = None) -> None:
    """The ``flowmailer`` loggers to ``stream`` (standard error): warnings only and plainly unless told otherwise.

    No token, secret or message body is ever logged, at any level.
    """
    handler: logging.StreamHandler[TextIO] = _Stderr() if stream is None else logging.StreamHandler(stream)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    elif level is None:
        handler.setFormatter(logging.Formatter("%(message)s"))  # what Python's last-resort handler printed
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.set_name(_HANDLER)
    logger = logging.getLogger("flowmailer")
    for old in [h for h in logger.handlers if h.get_name() == _HANDLER]:  # main() again in one process: replace
        logger.removeHandler(old)
    logger.addHandler(handler)
    handler.setLevel((level or "warning").upper())
    if level is not None:  # else the logger keeps its level: an application's (or a test's) choice
        logger.setLevel(level.upper())
