"""Keras's HDF5 files, read through ``fastconv.io.hdf5``: parsed in a bounded child process into
an in-memory tree of groups, attributes and float arrays, every object validated (no external
storage, links or virtual datasets, no filters, sizes checked against the file's).

``read_h5`` returns that tree (``HDF5File``); the readers of ``weights`` use its small API:
``group``, ``attr``, ``text_attr``, ``names_attr``, ``array`` and ``error``.
"""

from __future__ import annotations

from ..io.hdf5 import HDF5_SIGNATURE, HDF5File, is_hdf5, read_hdf5, require_h5py

__all__ = ["HDF5_SIGNATURE", "H5Reader", "is_hdf5", "read_h5", "require_h5py"]

#: The reader type the Keras loaders work on.
H5Reader = HDF5File


def read_h5(source, label: str, what: str = "file") -> HDF5File:
    """The HDF5 file ``source`` (a path, an open regular file, or the bytes of
    ``model.weights.h5`` from a ``.keras`` archive), parsed and validated; ``label`` names it in
    every error."""
    return read_hdf5(source, label, what)
