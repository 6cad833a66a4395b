"""Where chunks live and are searched: the embedded index (default) or PostgreSQL."""

from .base import DatabaseError, Hit, Store, reciprocal_rank_fusion

__all__ = ["DatabaseError", "Hit", "Store", "reciprocal_rank_fusion"]
