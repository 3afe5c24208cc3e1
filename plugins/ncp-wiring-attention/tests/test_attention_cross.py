"""The ``cross_attention`` wiring: context columns, heads, errors, config, docs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from ncp_wiring_attention import CrossAttention

from ncp_core.errors import WiringError


def repo_root() -> Path:
    """The ncp-core checkout: the first parent whose pyproject names ncp-core."""
    for folder in Path(__file__).resolve().parents:
        project = folder / "pyproject.toml"
        if project.is_file() and 'name = "ncp-core"' in project.read_text():
            return folder
    raise RuntimeError(f"no ncp-core checkout above {__file__}")


def run_doc_example(page: str) -> dict:
    """Execute the first python block of ``docs/wirings/<page>.md``."""
    text = (repo_root() / "docs" / "wirings" / f"{page}.md").read_text(encoding="utf-8")
    block = re.search(r"```python\n(.*?)```", text, re.DOTALL)
    assert block is not None, f"docs/wirings/{page}.md has no python example"
    namespace: dict = {}
    exec(compile(block.group(1), f"{page}.md", "exec"), namespace)
    return namespace


def small(**overrides) -> CrossAttention:
    params = dict(query_size=6, key_size=4, value_size=8, num_heads=2)
    params.update(overrides)
    return CrossAttention(**params)


def test_cross_attention_ids_put_integration_first_then_query_and_value():
    wiring = small(output_size=3)

    assert wiring.units == 3 + 6 + 8
    assert wiring.output_dim == 3
    assert list(wiring.groups) == ["integration", "query", "value"]
    assert wiring.groups["integration"].tolist() == [0, 1, 2]
    assert wiring.groups["query"].tolist() == list(range(3, 9))
    assert wiring.groups["value"].tolist() == list(range(9, 17))
    assert [layer.size for layer in wiring.layers] == [14, 3]


def test_cross_attention_context_is_the_last_key_size_columns():
    wiring = small().build(7)  # 3 main features, then 4 context features
    sensory = wiring.sensory_adjacency != 0
    query, value = wiring.groups["query"], wiring.groups["value"]

    assert wiring.context_features().tolist() == [3, 4, 5, 6]
    # main features reach every query neuron and no value neuron
    assert sensory[np.ix_([0, 1, 2], query)].all()
    assert not sensory[np.ix_([0, 1, 2], value)].any()
    # context never reaches the query neurons
    assert not sensory[np.ix_([3, 4, 5, 6], query)].any()
    assert not sensory[:, wiring.groups["integration"]].any()


def test_cross_attention_context_reaches_values_head_by_head():
    wiring = small().build(7)
    sensory = wiring.sensory_adjacency != 0
    heads = wiring.heads("value")

    # head 0 owns context columns 3, 4; head 1 owns 5, 6
    assert sensory[np.ix_([3, 4], heads[0])].all()
    assert sensory[np.ix_([5, 6], heads[1])].all()
    assert not sensory[np.ix_([3, 4], heads[1])].any()
    assert not sensory[np.ix_([5, 6], heads[0])].any()


def test_cross_attention_query_gates_values_of_its_own_head_only():
    wiring = small(gate_density=0.5)
    queries, values = wiring.heads("query"), wiring.heads("value")
    adjacency = wiring.adjacency != 0

    for h in range(2):
        block = adjacency[np.ix_(queries[h], values[h])]
        assert (block.sum(axis=0) == 2).all()  # round(0.5 · 3) query sources
        assert not adjacency[np.ix_(queries[h], values[1 - h])].any()
    assert not adjacency[np.ix_(wiring.groups["value"], wiring.groups["query"])].any()


def test_cross_attention_gated_values_and_residual_are_integrated():
    wiring = small(output_size=8)
    adjacency = wiring.adjacency != 0
    integration = wiring.groups["integration"]
    query, value = wiring.groups["query"], wiring.groups["value"]

    assert adjacency[np.ix_(value, integration)].all()
    # residual: query j mod 6 -> integration j, nothing else from the queries
    residual = adjacency[np.ix_(query, integration)]
    expected = np.zeros((6, 8), dtype=bool)
    expected[np.arange(8) % 6, np.arange(8)] = True
    assert (residual == expected).all()
    assert not adjacency[integration].any()
    assert wiring.synapse_count == 2 * 3 * 4 + 8 * 8 + 8


def test_cross_attention_without_residual_integrates_only_values():
    wiring = small(residual=False)
    adjacency = wiring.adjacency != 0

    assert not adjacency[
        np.ix_(wiring.groups["query"], wiring.groups["integration"])
    ].any()
    assert wiring.synapse_count == 2 * 3 * 4 + 8 * 6


def test_cross_attention_main_size_fixes_the_input_size():
    wiring = small(main_size=3)

    with pytest.raises(WiringError) as error:
        wiring.build(9)
    assert "needs input_dim 7 (3 main + 4 context features) but got 9" in str(
        error.value
    )
    assert small(main_size=3).build(7).input_dim == 7


def test_cross_attention_needs_more_inputs_than_context_features():
    with pytest.raises(WiringError, match="needs input_dim > key_size 4") as error:
        small().build(4)
    assert "got 4" in str(error.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"query_size": 5}, "query_size 5 is not divisible by num_heads 2"),
        ({"key_size": 3}, "key_size 3 is not divisible by num_heads 2"),
        ({"value_size": 7}, "value_size 7 is not divisible by num_heads 2"),
        ({"num_heads": 0}, "num_heads must be at least 1"),
        ({"main_size": 0}, "main_size must be at least 1"),
        ({"input_density": -0.1}, "input_density must be a number in"),
        ({"integration_density": 0}, "integration_density must be a number in"),
    ],
)
def test_cross_attention_rejects_bad_parameters_with_a_clear_error(overrides, message):
    with pytest.raises(WiringError, match=message) as error:
        small(**overrides)
    assert "'cross_attention'" in str(error.value)


def test_cross_attention_sparse_densities_still_reach_every_neuron():
    wiring = CrossAttention(
        16,
        8,
        16,
        4,
        main_size=10,
        input_density=0.05,
        gate_density=0.05,
        integration_density=0.05,
        residual=False,
    ).build(18)
    sensory = wiring.sensory_adjacency != 0

    assert (sensory[:, wiring.groups["query"]].sum(axis=0) == 1).all()
    assert (sensory[:, wiring.groups["value"]].sum(axis=0) == 1).all()
    assert wiring.validate() == []


def test_cross_attention_config_round_trips_through_json():
    wiring = small(gate_density=0.5, seed=11).build(9)
    restored = CrossAttention.from_config(json.loads(json.dumps(wiring.config())))

    assert restored == wiring
    assert restored.context_features().tolist() == [5, 6, 7, 8]
    assert restored != small(gate_density=0.5, seed=12).build(9)


def test_cross_attention_doc_example_runs():
    namespace = run_doc_example("cross_attention")

    wiring = namespace["wiring"]
    assert isinstance(wiring, CrossAttention)
    assert namespace["outputs"].shape == namespace["expected_shape"] == (4, 10, 1)
    assert namespace["context_columns"] == [2, 3, 4, 5]
