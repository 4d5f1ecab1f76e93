"""tests/conftest.py's order: files marked ``long`` first, everything else as collected."""

import pytest

from conftest import pytest_collection_modifyitems


class _Item:
    def __init__(self, name, long=False):
        self.name = name
        self._marks = {"long": pytest.mark.long.mark} if long else {}

    def get_closest_marker(self, name):
        return self._marks.get(name)


def test_long_tests_go_first_and_the_rest_keep_their_order():
    items = [_Item("a1"), _Item("a2"), _Item("build1", long=True), _Item("b1"),
             _Item("build2", long=True)]
    pytest_collection_modifyitems(None, items)
    assert [item.name for item in items] == ["build1", "build2", "a1", "a2", "b1"]


def test_the_board_builds_are_marked_long():
    from test_synth_build import pytestmark
    assert pytestmark.name == "long"
