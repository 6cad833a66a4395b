"""Answer providers behind one interface (``base``), the registry that chooses among them from
the settings (``registry``), and admission: how many answers are written at once."""

from __future__ import annotations

from .admission import Admission, JointTicket, Place, Ticket, admit_all
from .base import AnswerBusy, Answerer, AnswerError, Message
from .registry import CHOICES, PROVIDERS, check_answerer, choose_answerer, make_answerer
from .usage import Usage

__all__ = [
    "Admission",
    "Answerer",
    "AnswerBusy",
    "AnswerError",
    "CHOICES",
    "JointTicket",
    "Message",
    "PROVIDERS",
    "Place",
    "Ticket",
    "Usage",
    "admit_all",
    "check_answerer",
    "choose_answerer",
    "make_answerer",
]
