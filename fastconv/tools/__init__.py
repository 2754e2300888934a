"""Tools for the command line: ``model_bench`` (``fastconv bench MODEL``)."""
