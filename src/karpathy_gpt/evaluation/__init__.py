"""Measuring retrieval and answers on labelled questions (see docs/evaluation.md)."""

from .labels import (
    DEFAULT_LABELLED,
    DEFAULT_OFFTOPIC,
    DEFAULT_QUESTIONS,
    DEFAULT_TEST_SET,
    Labelled,
    LabelProblem,
    OffTopic,
    label_problems,
    load_offtopic,
    load_questions,
    load_test_set,
    rouge_l_recall,
)

__all__ = [
    "DEFAULT_LABELLED",
    "DEFAULT_OFFTOPIC",
    "DEFAULT_QUESTIONS",
    "DEFAULT_TEST_SET",
    "LabelProblem",
    "Labelled",
    "OffTopic",
    "label_problems",
    "load_offtopic",
    "load_questions",
    "load_test_set",
    "rouge_l_recall",
]
