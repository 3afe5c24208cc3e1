"""The multiscale wiring: groups, time scales and the synapses between them."""

from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path

import numpy as np
import pytest
from ncp_wiring_multiscale import Hierarchical, MultiScale

from ncp_core import plugins
from ncp_core.errors import WiringError


def fanin(density: float, size: int) -> int:
    return 0 if density == 0 else max(1, round(density * size))


def block(wiring, source: str, target: str) -> np.ndarray:
    """Synapse present, source neuron × target neuron, between two groups."""
    rows, cols = wiring.groups[source], wiring.groups[target]
    return wiring.adjacency[np.ix_(rows, cols)] != 0


def sources_per_target(wiring, source: str, target: str) -> np.ndarray:
    return block(wiring, source, target).sum(axis=0)


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


@pytest.fixture
def wiring() -> MultiScale:
    return MultiScale(10, 8, 6, 3, seed=3).build(5)


def test_multiscale_ids_run_motor_fast_medium_slow(wiring):
    assert [(k, v[0], v[-1]) for k, v in wiring.groups.items()] == [
        ("motor", 0, 2),
        ("fast", 3, 12),
        ("medium", 13, 20),
        ("slow", 21, 26),
    ]
    assert (wiring.units, wiring.output_dim) == (27, 3)


def test_multiscale_time_scales_follow_the_groups(wiring):
    scales = {k: set(wiring.time_scales[v].tolist()) for k, v in wiring.groups.items()}
    assert scales == {"motor": {1.0}, "fast": {1.0}, "medium": {4.0}, "slow": {16.0}}

    custom = MultiScale(2, 2, 2, 1, time_scales=[0.5, 2, 32])
    assert custom.time_scales.tolist() == [0.5, 0.5, 0.5, 2.0, 2.0, 32.0, 32.0]


def test_multiscale_inputs_reach_every_group_but_not_the_outputs(wiring):
    reads = (wiring.sensory_adjacency != 0).sum(axis=0)
    assert reads[wiring.groups["motor"]].tolist() == [0, 0, 0]
    for group in ("fast", "medium", "slow"):
        assert set(reads[wiring.groups[group]].tolist()) == {fanin(0.5, 5)}


def test_multiscale_only_fast_neurons_reach_the_outputs(wiring):
    assert set(sources_per_target(wiring, "fast", "motor").tolist()) == {5}
    assert not block(wiring, "medium", "motor").any()
    assert not block(wiring, "slow", "motor").any()
    assert not wiring.adjacency[wiring.groups["motor"]].any()


def test_multiscale_each_group_is_recurrent_within_itself(wiring):
    for group in ("fast", "medium", "slow"):
        size = wiring.groups[group].size
        counts = sources_per_target(wiring, group, group)
        assert set(counts.tolist()) == {fanin(0.3, size)}


def test_multiscale_slower_groups_modulate_faster_ones(wiring):
    assert set(sources_per_target(wiring, "slow", "medium").tolist()) == {2}
    assert set(sources_per_target(wiring, "medium", "fast").tolist()) == {2}
    assert set(sources_per_target(wiring, "slow", "fast").tolist()) == {2}

    direct_off = MultiScale(10, 8, 6, 3, slow_to_fast=False, seed=3)
    assert not block(direct_off, "slow", "fast").any()
    assert block(direct_off, "slow", "medium").any()


def test_multiscale_faster_groups_feed_the_next_slower_one(wiring):
    assert set(sources_per_target(wiring, "fast", "medium").tolist()) == {2}
    assert set(sources_per_target(wiring, "medium", "slow").tolist()) == {2}
    assert not block(wiring, "fast", "slow").any()


def test_multiscale_zero_densities_remove_those_synapses():
    wiring = MultiScale(
        6,
        5,
        4,
        2,
        recurrent_density=0.0,
        ascending_density=0.0,
        modulation_density=0.0,
    )
    assert wiring.synapse_count == 2 * fanin(0.5, 6)


@pytest.mark.parametrize(
    "sizes,densities",
    [
        ((7, 5, 3, 2), (0.5, 0.3, 0.2, 0.3, 0.5)),
        ((30, 20, 11, 4), (0.1, 0.9, 0.45, 0.05, 1.0)),
    ],
)
def test_multiscale_synapse_counts_follow_the_documented_formula(sizes, densities):
    fast, medium, slow, motor = sizes
    sensory, recurrent, ascending, modulation, output = densities
    wiring = MultiScale(
        *sizes,
        sensory_density=sensory,
        recurrent_density=recurrent,
        ascending_density=ascending,
        modulation_density=modulation,
        output_density=output,
    ).build(9)
    expected = (
        sum(n * fanin(recurrent, n) for n in (fast, medium, slow))
        + medium * fanin(ascending, fast)
        + slow * fanin(ascending, medium)
        + medium * fanin(modulation, slow)
        + fast * fanin(modulation, medium)
        + fast * fanin(modulation, slow)
        + motor * fanin(output, fast)
    )
    assert wiring.synapse_count == expected
    assert wiring.sensory_synapse_count == (fast + medium + slow) * fanin(sensory, 9)
    assert wiring.validate() == []


def test_multiscale_layers_put_the_three_groups_before_the_outputs(wiring):
    assert [layer.tolist() for layer in wiring.layers] == [
        list(range(3, 27)),
        [0, 1, 2],
    ]


def test_multiscale_excitatory_fraction_sets_the_polarities():
    positive = MultiScale(6, 5, 4, 2, excitatory=1.0).build(3)
    negative = MultiScale(6, 5, 4, 2, excitatory=0).build(3)
    assert set(positive.adjacency[positive.adjacency != 0].tolist()) == {1}
    assert set(positive.sensory_adjacency[positive.sensory_adjacency != 0]) == {1}
    assert set(negative.adjacency[negative.adjacency != 0].tolist()) == {-1}

    large = MultiScale(200, 150, 100, 10, excitatory=0.8)
    signs = large.adjacency[large.adjacency != 0]
    assert 0.77 < np.mean(signs == 1) < 0.83


def test_multiscale_same_seed_gives_the_same_graph():
    first = MultiScale(12, 8, 5, 2, seed=7).build(4)
    again = MultiScale(12, 8, 5, 2, seed=7).build(4)
    other = MultiScale(12, 8, 5, 2, seed=8).build(4)
    assert np.array_equal(first.adjacency, again.adjacency)
    assert np.array_equal(first.sensory_adjacency, again.sensory_adjacency)
    assert not np.array_equal(first.adjacency, other.adjacency)


def test_multiscale_round_trips_through_json_config(wiring):
    config = json.loads(json.dumps(wiring.config()))
    back = MultiScale.from_config(config)
    assert back == wiring
    assert back.params["time_scales"] == [1.0, 4.0, 16.0]
    assert np.array_equal(back.time_scales, wiring.time_scales)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"fast_neurons": 0}, "fast_neurons must be at least 1, got 0"),
        ({"slow_neurons": -2}, "slow_neurons must be at least 1, got -2"),
        ({"output_neurons": 1.5}, "output_neurons must be an integer, got 1.5"),
        ({"recurrent_density": 1.2}, "recurrent_density must be a number in"),
        ({"modulation_density": -0.1}, "modulation_density must be a number in"),
        ({"excitatory": 2}, "excitatory must be a number in"),
        ({"output_density": 0.0}, "output neurons 0..1 with no path"),
        ({"sensory_density": 0.0}, "sensory_density 0 leaves every neuron"),
        ({"time_scales": [1, 4]}, "time_scales must be 3 positive numbers"),
        ({"time_scales": [1, 0, 16]}, "time_scales must be 3 positive numbers"),
        ({"time_scales": [4, 1, 16]}, "must not decrease"),
    ],
)
def test_multiscale_rejects_bad_parameters_with_the_value(kwargs, message):
    params = {"fast_neurons": 4, "medium_neurons": 3, "slow_neurons": 2}
    params["output_neurons"] = 2
    params.update(kwargs)
    with pytest.raises(WiringError, match=re.escape(message)):
        MultiScale(**params)


def test_multiscale_validate_names_outputs_cut_off_from_the_inputs(wiring):
    wiring.remove_synapses(wiring.groups["fast"][:, None], [1])
    assert wiring.validate() == ["output neurons [1] have no path from the inputs"]


def test_multiscale_three_thousand_neurons_build_with_exact_counts():
    wiring = MultiScale(1000, 1000, 1000, 10).build(16)
    per_group = 1000 * fanin(0.3, 1000)
    expected = 3 * per_group + 2 * 1000 * 200 + 3 * per_group + 10 * 500
    assert wiring.synapse_count == expected
    assert wiring.sensory_synapse_count == 3000 * 8


def test_multiscale_docs_example_runs_and_gives_the_stated_sizes():
    namespace = docs_example("multiscale")
    assert namespace["counts"] == (86, 36)
    assert namespace["logits"].shape == (4, 24, 2)
    assert namespace["state"].shape == (4, 20)
    assert namespace["scales"] == {
        "motor": 1.0,
        "fast": 1.0,
        "medium": 4.0,
        "slow": 16.0,
    }


def test_multiscale_plugin_provides_both_wirings_through_its_entry_point():
    entry_points = importlib.metadata.entry_points(group="ncp")
    (entry,) = [ep for ep in entry_points if ep.name == "multiscale"]
    assert entry.value == "ncp_wiring_multiscale"

    wiring = plugins.get_wiring(
        "multiscale",
        fast_neurons=5,
        medium_neurons=4,
        slow_neurons=3,
        output_neurons=2,
        seed=9,
        input_dim=2,
    )
    assert type(wiring) is MultiScale
    assert wiring == MultiScale(5, 4, 3, 2, seed=9).build(2)
    layered = plugins.get_wiring("hierarchical", layer_sizes=[3, 2])
    assert type(layered) is Hierarchical
    for name in ("multiscale", "hierarchical"):
        info = plugins.wiring_info(name)
        assert (info.distribution, info.version) == ("ncp-wiring-multiscale", "0.1.0")


def test_multiscale_wiring_is_rebuilt_from_its_record_by_the_plugin(wiring):
    record = json.loads(json.dumps(plugins.wiring_record(wiring)))
    back = plugins.wiring_from_config(record)
    assert type(back) is MultiScale and back == wiring
