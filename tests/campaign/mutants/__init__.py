"""The mutation campaign: faults planted one at a time in a copy of the tree, each against the
tests expected to catch it (``catalogue.py``: the mutants; ``runner.py``: the copy, the runs,
the outcomes; ``python -m tests.campaign.mutants``: the command). CI runs a sample
(``tests/campaign/test_mutants_sample.py``); ``tests/campaign/README.md`` gives the full run.
"""
