"""How the test session is spread over pytest-xdist workers (``make test`` runs two).

``make test`` runs ``pytest -n 2 --dist loadfile --no-loadscope-reorder``: each test file runs
in one worker, in its order, since files keep module-level caches (test_synth_build.py builds
each board once for all its checks) and fixed build directories (test_cli.py's
``build/test_cli_verilog``) that two workers must not share. Files marked ``long`` (the board
builds, 9 of the suite's 19 single-process minutes) are moved to the front, so one worker
starts them at once while the other takes the rest; the scheduler keeps this order because of
``--no-loadscope-reorder`` (pytest-xdist's ``LoadScopeScheduling.schedule`` otherwise sorts
files by their number of tests, which would start the 2-test build file last).

``--dist loadgroup`` could split the two builds over the workers, but it does not group with
pytest 9.2: xdist 3.8 tags each item's ``_nodeid``, which pytest 9's ``Node.nodeid`` no longer
reads (it is built from ``Node._id``).

Without ``-n`` (plain ``pytest``) only the order changes.
"""

import pytest


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.get_closest_marker("long") is None)   # stable
