"""The hierarchical wiring: layers, skip and feedback connections."""

from __future__ import annotations

import json
import re
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from ncp_wiring_multiscale import Hierarchical

from ncp_core.errors import WiringError


def fanin(density: float, size: int) -> int:
    return 0 if density == 0 else max(1, round(density * size))


def sources_per_target(wiring, source: int, target: int) -> np.ndarray:
    rows, cols = wiring.layers[source], wiring.layers[target]
    return (wiring.adjacency[np.ix_(rows, cols)] != 0).sum(axis=0)


def docs_example(page: str) -> dict:
    """Run the first python block of ``docs/wirings/<page>.md``; its namespace."""
    root = Path(__file__).resolve().parent
    while not (
        (root / "pyproject.toml").is_file()
        and 'name = "ncp-core"' in (root / "pyproject.toml").read_text()
    ):
        if root.parent == root:
            raise FileNotFoundError("no ncp-core pyproject.toml above this test")
        root = root.parent
    text = (root / "docs" / "wirings" / f"{page}.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.DOTALL)
    assert code is not None, f"docs/wirings/{page}.md has no python block"
    namespace: dict = {}
    exec(compile(code.group(1), f"{page}.md", "exec"), namespace)
    return namespace


SIZES = [8, 6, 5, 4, 3]


@pytest.fixture
def wiring() -> Hierarchical:
    return Hierarchical(SIZES, seed=2).build(4)


def test_hierarchical_last_layer_holds_the_first_ids(wiring):
    assert wiring.layers[-1].tolist() == [0, 1, 2]
    assert wiring.output_dim == 3
    assert [layer.tolist()[0] for layer in wiring.layers] == [18, 12, 7, 3, 0]
    assert list(wiring.groups) == [f"layer_{i}" for i in (4, 3, 2, 1, 0)]


def test_hierarchical_layers_are_in_feed_forward_order(wiring):
    assert [layer.size for layer in wiring.layers] == SIZES
    for i, layer in enumerate(wiring.layers):
        assert np.array_equal(layer, wiring.groups[f"layer_{i}"])


def test_hierarchical_inputs_reach_only_the_first_layer(wiring):
    reads = (wiring.sensory_adjacency != 0).sum(axis=0)
    assert set(reads[wiring.layers[0]].tolist()) == {fanin(0.5, 4)}
    assert not reads[np.concatenate(wiring.layers[1:])].any()


def test_hierarchical_each_layer_feeds_the_next(wiring):
    for i in range(len(SIZES) - 1):
        counts = sources_per_target(wiring, i, i + 1)
        assert set(counts.tolist()) == {fanin(0.5, SIZES[i])}


def test_hierarchical_skips_span_exactly_one_layer(wiring):
    for i in range(len(SIZES) - 2):
        counts = sources_per_target(wiring, i, i + 2)
        assert set(counts.tolist()) == {fanin(0.25, SIZES[i])}
    for i in range(len(SIZES) - 3):
        assert not sources_per_target(wiring, i, i + 3).any()


def test_hierarchical_feedback_goes_one_layer_back(wiring):
    for i in range(len(SIZES) - 1):
        counts = sources_per_target(wiring, i + 1, i)
        assert set(counts.tolist()) == {fanin(0.25, SIZES[i + 1])}
    assert not sources_per_target(wiring, 2, 0).any()


def test_hierarchical_has_no_synapses_within_a_layer(wiring):
    for i in range(len(SIZES)):
        assert not sources_per_target(wiring, i, i).any()


def test_hierarchical_switches_remove_skip_and_feedback_synapses():
    plain = Hierarchical(SIZES, skip_connections=False, feedback=False, seed=2)
    expected = sum(k * fanin(0.5, n) for n, k in pairwise(SIZES))
    assert plain.synapse_count == expected
    for i in range(len(SIZES) - 1):
        assert not sources_per_target(plain, i + 1, i).any()
    assert not sources_per_target(plain, 0, 2).any()


def test_hierarchical_synapse_count_follows_the_documented_formula():
    sizes = [9, 7, 7, 4, 2]
    wiring = Hierarchical(
        sizes, forward_density=0.3, skip_density=0.6, feedback_density=0.1
    ).build(6)
    forward = sum(k * fanin(0.3, n) for n, k in pairwise(sizes))
    skip = sum(k * fanin(0.6, n) for n, k in zip(sizes, sizes[2:], strict=False))
    feedback = sum(k * fanin(0.1, n) for k, n in pairwise(sizes))
    assert wiring.synapse_count == forward + skip + feedback
    assert wiring.sensory_synapse_count == 9 * fanin(0.5, 6)
    assert wiring.validate() == []


def test_hierarchical_single_layer_is_its_own_output():
    wiring = Hierarchical([4]).build(2)
    assert (wiring.units, wiring.output_dim, wiring.synapse_count) == (4, 4, 0)
    assert wiring.validate() == []


def test_hierarchical_excitatory_fraction_sets_the_polarities():
    positive = Hierarchical(SIZES, excitatory=1.0).build(3)
    negative = Hierarchical(SIZES, excitatory=0.0).build(3)
    assert set(positive.adjacency[positive.adjacency != 0].tolist()) == {1}
    assert set(negative.adjacency[negative.adjacency != 0].tolist()) == {-1}
    assert set(negative.sensory_adjacency[negative.sensory_adjacency != 0]) == {-1}


def test_hierarchical_round_trips_through_json_config(wiring):
    back = Hierarchical.from_config(json.loads(json.dumps(wiring.config())))
    assert back == wiring
    assert back.params["layer_sizes"] == SIZES
    assert [layer.tolist() for layer in back.layers] == [
        layer.tolist() for layer in wiring.layers
    ]


def test_hierarchical_same_seed_gives_the_same_graph():
    first = Hierarchical(SIZES, seed=5)
    assert np.array_equal(first.adjacency, Hierarchical(SIZES, seed=5).adjacency)
    assert not np.array_equal(first.adjacency, Hierarchical(SIZES, seed=6).adjacency)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"layer_sizes": []}, "layer_sizes is empty"),
        ({"layer_sizes": 5}, "layer_sizes must be a list of layer sizes, got 5"),
        ({"layer_sizes": [4, 0, 2]}, "layer_sizes[1] must be at least 1, got 0"),
        ({"skip_density": 1.5}, "skip_density must be a number in [0.0, 1.0]"),
        ({"forward_density": 0.0}, "output neurons 0..1 (the last layer)"),
        ({"sensory_density": 0}, "sensory_density 0 leaves the first layer"),
    ],
)
def test_hierarchical_rejects_bad_parameters_with_the_value(kwargs, message):
    params = {"layer_sizes": [4, 3, 2], **kwargs}
    with pytest.raises(WiringError, match=re.escape(message)):
        Hierarchical(**params)


def test_hierarchical_docs_example_runs_and_gives_the_stated_sizes():
    namespace = docs_example("hierarchical")
    assert namespace["outputs"] == [0, 1]
    assert namespace["layer_sizes"] == [6, 5, 4, 2]
    assert namespace["counts"] == (52, 12)
    assert namespace["outputs_over_time"].shape == (4, 24, 2)
    assert namespace["state"].shape == (4, 17)
