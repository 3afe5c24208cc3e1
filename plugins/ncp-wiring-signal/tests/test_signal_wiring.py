"""The signal wiring: dyadic bands, the cascade and the integrating output."""

from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path

import numpy as np
import pytest
from ncp_wiring_signal import Signal

from ncp_core import plugins
from ncp_core.errors import WiringError


def fanin(density: float, size: int) -> int:
    return 0 if density == 0 else max(1, round(density * size))


def sources_per_target(wiring, source: str, target: str) -> np.ndarray:
    rows, cols = wiring.groups[source], wiring.groups[target]
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


@pytest.fixture
def wiring() -> Signal:
    return Signal(3, num_scales=4, neurons_per_scale=6, output_neurons=2).build(3)


def test_signal_has_one_band_per_scale_after_the_outputs(wiring):
    assert [(k, v[0], v.size) for k, v in wiring.groups.items()] == [
        ("motor", 0, 2),
        ("band_0", 2, 6),
        ("band_1", 8, 6),
        ("band_2", 14, 6),
        ("band_3", 20, 6),
    ]


def test_signal_band_i_has_time_scale_two_to_the_i(wiring):
    for i in range(4):
        assert set(wiring.time_scales[wiring.groups[f"band_{i}"]].tolist()) == {2.0**i}
    assert wiring.time_scales[:2].tolist() == [1.0, 1.0]
    slow_readout = Signal(1, 2, 3, output_time_scale=8)
    assert slow_readout.time_scales[0] == 8.0


def test_signal_inputs_reach_only_the_finest_band_by_default(wiring):
    reads = (wiring.sensory_adjacency != 0).sum(axis=0)
    assert set(reads[wiring.groups["band_0"]].tolist()) == {3}
    assert not reads[: wiring.output_dim].any()
    assert not reads[wiring.groups["band_0"][-1] + 1 :].any()


def test_signal_inputs_reach_every_band_when_asked():
    wiring = Signal(4, 3, 5, inputs_to="all", sensory_density=0.5).build(4)
    reads = (wiring.sensory_adjacency != 0).sum(axis=0)
    assert reads[0] == 0
    assert set(reads[1:].tolist()) == {2}


def test_signal_each_band_is_recurrent_within_itself(wiring):
    for i in range(4):
        band = f"band_{i}"
        assert set(sources_per_target(wiring, band, band).tolist()) == {3}


def test_signal_coarse_bands_are_fed_by_the_next_finer_one_only(wiring):
    for i in range(4):
        for j in range(4):
            counts = sources_per_target(wiring, f"band_{i}", f"band_{j}")
            if j == i + 1:
                assert set(counts.tolist()) == {fanin(0.5, 6)}
            elif j != i:
                assert not counts.any(), (i, j)


def test_signal_every_band_reaches_every_output_neuron(wiring):
    for i in range(4):
        counts = sources_per_target(wiring, f"band_{i}", "motor")
        assert counts.tolist() == [3, 3]
    assert not wiring.adjacency[:2].any()


def test_signal_synapse_count_follows_the_documented_formula():
    scales, per_scale, motor = 5, 9, 3
    wiring = Signal(
        2,
        scales,
        per_scale,
        output_neurons=motor,
        recurrent_density=0.2,
        cascade_density=0.7,
        output_density=0.4,
    ).build(2)
    expected = (
        scales * per_scale * fanin(0.2, per_scale)
        + (scales - 1) * per_scale * fanin(0.7, per_scale)
        + scales * motor * fanin(0.4, per_scale)
    )
    assert wiring.synapse_count == expected
    assert wiring.sensory_synapse_count == per_scale * 2
    assert wiring.validate() == []


def test_signal_layers_put_the_bands_before_the_outputs(wiring):
    assert [layer.tolist() for layer in wiring.layers] == [
        list(range(2, 26)),
        [0, 1],
    ]


def test_signal_build_with_another_input_size_names_the_expected_one():
    wiring = Signal(3, 2, 4)
    with pytest.raises(WiringError, match="made for input_size 3 but is built "):
        wiring.build(5)
    with pytest.raises(WiringError, match=re.escape("input_size=5")):
        Signal(3, 2, 4).build(5)
    assert Signal(3, 2, 4).build(3).input_dim == 3


def test_signal_excitatory_fraction_sets_the_polarities():
    positive = Signal(2, 3, 4, excitatory=1.0).build(2)
    negative = Signal(2, 3, 4, excitatory=0.0).build(2)
    assert set(positive.adjacency[positive.adjacency != 0].tolist()) == {1}
    assert set(negative.adjacency[negative.adjacency != 0].tolist()) == {-1}
    assert set(negative.sensory_adjacency[negative.sensory_adjacency != 0]) == {-1}


def test_signal_round_trips_through_json_config(wiring):
    back = Signal.from_config(json.loads(json.dumps(wiring.config())))
    assert back == wiring
    assert np.array_equal(back.time_scales, wiring.time_scales)
    assert back.params["input_size"] == 3


def test_signal_same_seed_gives_the_same_graph():
    first = Signal(2, 3, 8, seed=4)
    assert np.array_equal(first.adjacency, Signal(2, 3, 8, seed=4).adjacency)
    assert not np.array_equal(first.adjacency, Signal(2, 3, 8, seed=5).adjacency)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"input_size": 0}, "input_size must be at least 1, got 0"),
        ({"num_scales": -1}, "num_scales must be at least 1, got -1"),
        ({"neurons_per_scale": "4"}, "neurons_per_scale must be an integer"),
        ({"inputs_to": "coarsest"}, "inputs_to must be 'finest' or 'all'"),
        ({"cascade_density": 1.1}, "cascade_density must be a number in"),
        ({"output_density": 0.0}, "output neurons 0..0 with no path"),
        ({"cascade_density": 0.0}, "leaves bands 1..2 with no path"),
        ({"output_time_scale": 0}, "output_time_scale must be a positive number"),
    ],
)
def test_signal_rejects_bad_parameters_with_the_value(kwargs, message):
    params = {"input_size": 2, "num_scales": 3, "neurons_per_scale": 4, **kwargs}
    with pytest.raises(WiringError, match=re.escape(message)):
        Signal(**params)


def test_signal_without_cascade_is_fine_when_inputs_reach_every_band():
    wiring = Signal(2, 3, 4, cascade_density=0.0, inputs_to="all").build(2)
    assert wiring.validate() == []


def test_signal_docs_example_runs_and_gives_the_stated_sizes():
    namespace = docs_example("signal")
    assert namespace["band_scales"] == [1.0, 2.0, 4.0, 8.0]
    assert namespace["counts"] == (86, 10)
    assert namespace["outputs_over_time"].shape == (4, 24, 2)
    assert namespace["state"].shape == (4, 22)


def test_signal_plugin_provides_the_wiring_through_its_entry_point():
    entry_points = importlib.metadata.entry_points(group="ncp")
    (entry,) = [ep for ep in entry_points if ep.name == "signal"]
    assert entry.value == "ncp_wiring_signal"

    wiring = plugins.get_wiring(
        "signal", input_size=2, num_scales=3, neurons_per_scale=4, seed=6
    )
    assert type(wiring) is Signal
    assert wiring == Signal(2, 3, 4, seed=6)
    info = plugins.wiring_info("signal")
    assert (info.distribution, info.version) == ("ncp-wiring-signal", "0.1.0")


def test_signal_wiring_is_rebuilt_from_its_record_by_the_plugin(wiring):
    record = json.loads(json.dumps(plugins.wiring_record(wiring)))
    back = plugins.wiring_from_config(record)
    assert type(back) is Signal and back == wiring
