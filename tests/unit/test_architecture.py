"""The layout the code promises (tests/helpers/architecture.py reads it from the source): no import cycle
between modules or between the packages of tools/, no upward import (tools/ imports no graph and no door,
graphs/ no door), at most 10 modules at the top of tools/, and thin graph nodes."""

from __future__ import annotations

from architecture import cycles, import_graph, node_lengths, package_cycles, tools_tree, upward_imports


def test_no_module_imports_another_that_imports_it_back():
    graph = import_graph()
    assert len(graph) > 100  # the whole product was read
    assert cycles(graph) == []
    assert package_cycles(graph) == []


def test_a_cycle_is_found_when_there_is_one():  # the check itself can fail
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_imports_go_down_the_layers_only():
    assert upward_imports(import_graph()) == []
    assert upward_imports({"tools.x": {"graphs.y"}, "graphs.y": {"agent.z"}}) == [("graphs.y", "agent.z"),
                                                                                   ("tools.x", "graphs.y")]


def test_tools_is_grouped_by_capability():
    top = [name for name in tools_tree()["."] if name != "__init__.py"]
    assert len(top) <= 10, top


def test_every_node_of_the_graph_is_thin():
    lengths = node_lengths()
    assert len(lengths) >= 10  # every specialist's node was found
    assert max(lengths.values()) <= 60, lengths
