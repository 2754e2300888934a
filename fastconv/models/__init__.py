"""Models: Model (``Model(inputs, outputs)`` builds a functional model; a subclass with its own
``call`` is a subclassed model), Sequential, ``clone_model``, and loading saved models."""

from ..saving import load_model
from .cloning import clone_model
from .functional import Functional
from .model import Model, NonFiniteLossError
from .sequential import Sequential

__all__ = ["Model", "Functional", "Sequential", "clone_model", "load_model",
           "NonFiniteLossError"]
