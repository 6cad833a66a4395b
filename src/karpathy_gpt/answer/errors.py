"""How answering fails: an error a person can act on, and "busy, come back later"."""

from __future__ import annotations

#: What a client is told when answering failed for a reason of ours (the traceback is logged).
INTERNAL_ERROR = "internal error while answering; see the server log"


class AnswerError(Exception):
    """The provider could not answer; the message tells a person what to do about it."""


class AnswerBusy(AnswerError):
    """No place for another answer now; ``retry_after`` is a fair guess (s) of when there is."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after
