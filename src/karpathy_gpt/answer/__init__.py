"""Answer providers behind one interface (``base``), the registry that chooses among them from
the settings (``registry``), the refusal of what the lectures do not cover (``refusal``), and
admission: how many answers are written at once."""

from __future__ import annotations

from .admission import Admission, JointTicket, Place, Ticket, admit_all
from .base import AnswerBusy, Answerer, AnswerError, Message
from .refusal import NOT_COVERED, REFUSAL, answering
from .registry import (
    CHOICES,
    PROVIDERS,
    check_answerer,
    choose_answerer,
    make_answerer,
    refuses_offtopic,
)
from .usage import Usage

__all__ = [
    "Admission",
    "Answerer",
    "AnswerBusy",
    "AnswerError",
    "CHOICES",
    "JointTicket",
    "Message",
    "NOT_COVERED",
    "PROVIDERS",
    "Place",
    "REFUSAL",
    "Ticket",
    "Usage",
    "admit_all",
    "answering",
    "check_answerer",
    "choose_answerer",
    "make_answerer",
    "refuses_offtopic",
]
