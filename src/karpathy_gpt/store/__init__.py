"""Where chunks live and are searched: the embedded index (default) or PostgreSQL."""

from .base import Hit, Store, reciprocal_rank_fusion

__all__ = ["Hit", "Store", "reciprocal_rank_fusion"]
