"""The HTTP layer: the original /karpathy-* contract on a FastAPI app."""

from .app import create_app

__all__ = ["create_app"]
