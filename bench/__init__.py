"""fastconv's benchmark suite (installed as ``fastconv.bench``).

Run it with ``fastconv bench [--quick]`` or ``pytest bench/ [--quick | --smoke]`` from a checkout;
see ``README.md`` in this folder for the workloads, the options and the report's columns.

Modules: ``workloads`` (the documented layer set and its quick and smoke variants), ``references``
(PyTorch and onnxruntime, imported lazily), ``lesson`` (the lesson network in fastconv, PyTorch and
ONNX with the same weights), ``measure`` (timing on top of pytest-benchmark), ``report`` (markdown
and PNG plots), ``conftest`` (options, parametrisation, writing the report) and the ``test_*``
modules. Importing this package imports none of them.
"""
