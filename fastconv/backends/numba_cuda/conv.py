"""Launchers of the numba-cuda convolution kernels: one ConvAlgorithm class per algorithm."""

from __future__ import annotations

from ..base import ConvAlgorithm, WinogradAlgorithm


class DirectConv(ConvAlgorithm):
    name = "direct"


class Im2colConv(ConvAlgorithm):
    name = "im2col"


class WinogradF2Conv(WinogradAlgorithm):
    name = "winograd"


class WinogradF4Conv(WinogradAlgorithm):
    name = "winograd4"
