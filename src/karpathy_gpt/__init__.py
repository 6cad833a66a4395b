"""Karpathy-GPT: question answering over lecture transcripts, offline by default."""

__version__ = "0.1.0"
