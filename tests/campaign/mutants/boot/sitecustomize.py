"""Imported by every Python process of a mutant run (this folder is first on PYTHONPATH).

fastconv is installed in the environment in editable mode: a finder on ``sys.meta_path`` maps
``fastconv``, ``fastconv.kernels`` and ``fastconv.bench`` to the checkout the environment was
installed from. PYTHONPATH already puts the mutated copy's ``fastconv`` first, but
``fastconv.kernels`` (the CUDA C sources) and ``fastconv.bench`` would still come from that
checkout. Here the finder's folders are pointed at the copy named by ``FASTCONV_MUTANT_TREE``,
in this process and in every process it starts (they inherit the environment).
"""

import os
import sys

_tree = os.environ.get("FASTCONV_MUTANT_TREE")
if _tree:
    for _name, _module in list(sys.modules.items()):
        _mapping = getattr(_module, "MAPPING", None)
        if not (_name.startswith("__editable__") and isinstance(_mapping, dict)
                and "fastconv" in _mapping):
            continue
        _root = os.path.dirname(_mapping["fastconv"].rstrip("/"))

        def _moved(path, root=_root):
            return _tree + path[len(root):] if path.startswith(root + "/") else path

        _module.MAPPING = {k: _moved(v) for k, v in _mapping.items()}
        _spaces = getattr(_module, "NAMESPACES", None)
        if isinstance(_spaces, dict):
            _module.NAMESPACES = {k: [_moved(p) for p in v] for k, v in _spaces.items()}
