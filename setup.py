"""Package list for setuptools; everything else is in pyproject.toml.

``packages.find`` in pyproject.toml cannot add a package that lives outside its own folder, and
setuptools allows no explicit list next to it; so the list is built here: every ``fastconv*``
package under ``fastconv/``, discovered exactly as ``packages.find`` did (namespace packages
included, so new subpackages and data folders ship without touching this file), plus the
benchmark suite ``bench/``, installed as ``fastconv.bench``, and the CUDA C sources ``kernels/``,
installed as the package data ``fastconv.kernels`` (both mapped in pyproject.toml's
``[tool.setuptools.package-dir]``).
"""

from setuptools import find_namespace_packages, setup

setup(packages=[*find_namespace_packages(include=["fastconv*"]), "fastconv.bench",
                "fastconv.kernels", "fastconv.kernels.emulation"])
