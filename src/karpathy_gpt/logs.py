"""The server's logging: our level from ``KGPT_LOG_LEVEL``, and secrets masked in every line.

Secrets (``OPENAI_API_KEY``, the ``KGPT_API_KEYS``, the password in ``KGPT_DATABASE_URL``) are
replaced by ``***`` in each record that reaches a handler of ours, uvicorn's or the root
logger's, tracebacks included, and in the error messages sent to clients (``redact``). Questions
and passages are logged only at ``debug`` level, by the loggers under ``karpathy_gpt``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from urllib.parse import urlsplit

from .config import Settings

LOGGER = logging.getLogger("karpathy_gpt")
MASK = "***"
# The loggers whose handlers print what a server run shows: ours, uvicorn's, everything else.
HANDLED_LOGGERS = ("karpathy_gpt", "uvicorn", "uvicorn.error", "uvicorn.access", "")

_secrets: list[str] = []


def secrets_of(settings: Settings) -> list[str]:
    """Every secret the settings hold, longest first (so no secret is masked only in part)."""
    found = [settings.openai_api_key or "", *settings.api_key_list()]
    if settings.database_url:
        found.append(urlsplit(settings.database_url).password or "")
    return sorted({s for s in found if len(s) >= 4}, key=len, reverse=True)


def redact(text: str) -> str:
    for secret in _secrets:
        text = text.replace(secret, MASK)
    return text


class RedactSecrets(logging.Filter):
    """Masks the secrets in a record's message, arguments and traceback text.

    Arguments stay arguments (uvicorn's access formatter reads them as a tuple); one whose text
    holds a secret, an exception say, is replaced by that text masked.
    """

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if not _secrets:
            return True
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_masked(arg) for arg in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {key: _masked(arg) for key, arg in record.args.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _masked(arg: object) -> object:
    if isinstance(arg, int | float | bool | None):
        return arg
    text = str(arg)
    masked = redact(text)
    return arg if masked == text else masked


def configure_logging(settings: Settings) -> None:
    """Our handler and level, and the secret filter on every handler a server run prints with."""
    _secrets[:] = secrets_of(settings)
    if not LOGGER.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        LOGGER.addHandler(handler)
    LOGGER.setLevel(settings.log_level.upper())
    handlers = [h for name in HANDLED_LOGGERS for h in logging.getLogger(name).handlers]
    for handler in [*handlers, logging.lastResort]:
        if handler is not None and not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())
