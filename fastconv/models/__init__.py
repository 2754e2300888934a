"""Models: Sequential, and loading saved models."""

from ..saving import load_model
from .model import Model, NonFiniteLossError
from .sequential import Sequential

__all__ = ["Model", "Sequential", "load_model", "NonFiniteLossError"]
