"""Datasets: ``from fastconv.datasets import mnist``."""

from . import mnist

__all__ = ["mnist"]
