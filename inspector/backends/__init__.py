"""Inference backends behind one small interface (base.Backend). The pipeline never knows which one runs."""

from .base import Backend, open_backend

__all__ = ["Backend", "open_backend"]
