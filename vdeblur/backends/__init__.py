"""Inference backends behind one small interface (after Polygraphy's runners)."""

from .base import Backend

__all__ = ["Backend"]
