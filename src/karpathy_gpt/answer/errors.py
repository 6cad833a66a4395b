"""How answering fails: an error a person can act on, and "busy, come back later"."""

from __future__ import annotations

from ..errors import KgptError

#: What a client is told when answering failed for a reason of ours (the traceback is logged).
INTERNAL_ERROR = "internal error while answering; see the server log"


class AnswerError(KgptError):
    """The provider could not answer; the message tells a person what to do about it."""

    status = 502
    type = "api_error"
    code = "answerer_failed"


class AnswerBusy(AnswerError):
    """No place for another answer now; ``retry_after`` is a fair guess (s) of when there is."""

    status = 503
    type = "server_error"
    code = "busy"

    def __init__(self, message: str, retry_after: int):
        super().__init__(message, retry_after=retry_after)
