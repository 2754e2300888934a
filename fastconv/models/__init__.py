"""Models: Model (``Model(inputs, outputs)`` builds a functional model), Sequential, and
loading saved models."""

from ..saving import load_model
from .functional import Functional
from .model import Model, NonFiniteLossError
from .sequential import Sequential

__all__ = ["Model", "Functional", "Sequential", "load_model", "NonFiniteLossError"]
