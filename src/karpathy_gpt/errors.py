"""The one exception hierarchy: every failure this package reports on purpose.

Each carries a message a person can act on (what happened, what to do next) and what it
becomes over HTTP: a status, OpenAI's error ``type`` and ``code`` for /v1, the ``param`` at
fault, and a ``Retry-After`` when waiting helps. ``api.errors`` turns any of them into a
response in one place per response shape; the command line prints the message on one line.
"""

from __future__ import annotations


class KgptError(Exception):
    """A failure with a message for a person; the class says how it reaches a client."""

    status = 500
    type = "server_error"  # OpenAI's error type, for /v1
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        param: str | None = None,
        retry_after: int | None = None,
    ):
        super().__init__(message)
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.param = param
        self.retry_after = retry_after

    @property
    def message(self) -> str:
        return str(self)

    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else None


class RequestError(KgptError):
    """A request that cannot be answered as sent (4xx); the message says what to change."""

    status = 400
    type = "invalid_request_error"
