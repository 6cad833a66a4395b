"""Measuring retrieval and answers on labelled questions (see docs/evaluation.md)."""

from .labels import (
    DEFAULT_LABELLED,
    DEFAULT_OFFTOPIC,
    DEFAULT_QUESTIONS,
    Labelled,
    LabelProblem,
    OffTopic,
    label_problems,
    load_offtopic,
    load_questions,
)

__all__ = [
    "DEFAULT_LABELLED",
    "DEFAULT_OFFTOPIC",
    "DEFAULT_QUESTIONS",
    "LabelProblem",
    "Labelled",
    "OffTopic",
    "label_problems",
    "load_offtopic",
    "load_questions",
]
