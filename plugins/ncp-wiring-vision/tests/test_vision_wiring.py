"""The ``vision`` wiring: maps, receptive fields, skips, errors, speed, docs."""

from __future__ import annotations

import importlib.metadata
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from ncp_wiring_vision import Vision

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


def input_space_fields(wiring: Vision):
    """Per neuron and per input feature: level and the input-pixel rectangle
    ``[row_lo, row_hi] × [col_lo, col_hi]`` its receptive field spans, found
    from the rule ``rows r·s − p … r·s − p + k − 1`` unclipped, level by
    level.

    Returns ``(levels, fields)`` for neurons and ``fields`` for input features.
    """
    k, s = wiring.kernel_size, wiring.stride
    p = (k - 1) // 2
    levels = np.full(wiring.units, len(wiring.map_shapes))  # readout level
    fields = np.zeros((wiring.units, 4), dtype=np.int64)
    for index in range(wiring.num_maps):
        ids = wiring.map_neurons(index)
        rows, cols, _ = ids.shape
        r = np.broadcast_to(np.arange(rows)[:, None, None], ids.shape).reshape(-1)
        c = np.broadcast_to(np.arange(cols)[None, :, None], ids.shape).reshape(-1)
        lo_r, hi_r, lo_c, hi_c = r, r, c, c
        for _ in range(index + 1):
            lo_r, hi_r = lo_r * s - p, hi_r * s - p + k - 1
            lo_c, hi_c = lo_c * s - p, hi_c * s - p + k - 1
        flat = ids.reshape(-1)
        levels[flat] = index + 1
        fields[flat] = np.stack([lo_r, hi_r, lo_c, hi_c], axis=1)
    height, width, depth = wiring.map_shapes[0]
    pixel = np.arange(height * width * depth) // depth
    pixel_fields = np.stack(
        [pixel // width, pixel // width, pixel % width, pixel % width], axis=1
    )
    return levels, fields, pixel_fields


def assert_inside(source_fields, target_fields):
    inside = (
        (source_fields[:, 0] >= target_fields[:, 0])
        & (source_fields[:, 1] <= target_fields[:, 1])
        & (source_fields[:, 2] >= target_fields[:, 2])
        & (source_fields[:, 3] <= target_fields[:, 3])
    )
    assert inside.all(), f"{np.count_nonzero(~inside)} synapses leave the field"


@pytest.mark.parametrize(
    "params",
    [
        dict(input_height=12, input_width=10, channels=2, layer_channels=[3, 2, 2]),
        dict(
            input_height=9,
            input_width=9,
            channels=1,
            kernel_size=5,
            stride=1,
            layer_channels=[2, 2],
            kernel_density=0.6,
        ),
        dict(
            input_height=16,
            input_width=8,
            channels=3,
            kernel_size=2,
            stride=3,
            layer_channels=[4],
        ),
    ],
)
def test_vision_neuron_sees_only_its_receptive_field(params):
    wiring = Vision(**params).build(
        params["input_height"] * params["input_width"] * params["channels"]
    )
    levels, fields, pixel_fields = input_space_fields(wiring)
    src, dst = np.nonzero(wiring.adjacency)
    into_maps = levels[dst] <= wiring.num_maps

    assert_inside(fields[src[into_maps]], fields[dst[into_maps]])
    # a map neuron hears only the one or two levels just below it
    assert set((levels[dst] - levels[src])[into_maps].tolist()) <= {1, 2}
    features, neurons = np.nonzero(wiring.sensory_adjacency)
    into_maps = levels[neurons] <= wiring.num_maps
    assert_inside(pixel_fields[features[into_maps]], fields[neurons[into_maps]])
    assert set(levels[neurons[into_maps]].tolist()) <= {1, 2}


def test_vision_local_window_covers_every_channel_in_the_clipped_window():
    wiring = Vision(
        6, 8, 2, kernel_size=3, layer_channels=[3], stride=2, skip=False
    ).build(96)
    corner = wiring.map_neurons(0)[0, 0, 1]
    inner = wiring.map_neurons(0)[1, 2, 0]

    def pixels(neuron):
        features = np.flatnonzero(wiring.sensory_adjacency[:, neuron])
        return sorted({(f // 2 // 8, f // 2 % 8, f % 2) for f in features.tolist()})

    assert pixels(corner) == [
        (r, c, ch) for r in (0, 1) for c in (0, 1) for ch in (0, 1)
    ]
    assert pixels(inner) == [
        (r, c, ch) for r in (1, 2, 3) for c in (3, 4, 5) for ch in (0, 1)
    ]


def test_vision_maps_shrink_by_the_stride_and_ids_follow_row_col_channel():
    wiring = Vision(28, 28, 1, layer_channels=[4, 8], stride=2, output_size=10)

    assert wiring.map_shapes == [(28, 28, 1), (14, 14, 4), (7, 7, 8)]
    assert wiring.units == 10 + 14 * 14 * 4 + 7 * 7 * 8
    assert list(wiring.groups) == ["readout", "map_0", "map_1"]
    assert wiring.groups["readout"].tolist() == list(range(10))
    assert wiring.map_neurons(0)[0, 0].tolist() == [10, 11, 12, 13]
    assert wiring.map_neurons(0)[0, 1, 0] == 14
    assert wiring.map_neurons(1)[0, 0, 0] == 10 + 784
    assert [layer.size for layer in wiring.layers] == [784, 392, 10]


def test_vision_readout_is_global_and_skips_reach_two_levels_up():
    wiring = Vision(8, 8, 1, layer_channels=[4, 8], skip_density=0.25).build(64)
    adjacency = wiring.adjacency != 0
    readout = wiring.groups["readout"]
    map_0, map_1 = wiring.groups["map_0"], wiring.groups["map_1"]

    assert adjacency[np.ix_(map_1, readout)].all()  # readout_density 1.0
    # skip map_0 -> readout: round(0.25 · 64) sources per readout neuron
    assert (adjacency[np.ix_(map_0, readout)].sum(axis=0) == 16).all()
    # skip input -> map_1: each map_1 neuron reads the centre pixel (4r, 4c)
    sensory = wiring.sensory_adjacency != 0
    for (r, c, _), neuron in np.ndenumerate(wiring.map_neurons(1)):
        assert np.flatnonzero(sensory[:, neuron]).tolist() == [4 * r * 8 + 4 * c]
    assert not adjacency[readout].any()


def test_vision_without_skip_has_only_local_and_readout_synapses():
    with_skip = Vision(8, 8, 1).build(64)
    without = Vision(8, 8, 1, skip=False).build(64)

    # map_0 -> map_1 windows over 4x4 -> 2x2: rows {0,1}, {1,2,3} per axis
    local = (2 + 3) ** 2 * 4 * 8
    assert without.synapse_count == local + 32 * 10
    assert with_skip.synapse_count == local + 32 * 10 + 16 * 10
    assert without.sensory_synapse_count == (2 + 3 + 3 + 3) ** 2 * 4
    assert with_skip.sensory_synapse_count == without.sensory_synapse_count + 4 * 8


def test_vision_kernel_density_thins_windows_without_emptying_a_neuron():
    dense = Vision(16, 16, 2, kernel_density=1.0).build(512)
    thin = Vision(16, 16, 2, kernel_density=0.2).build(512)

    ratio = thin.sensory_synapse_count / dense.sensory_synapse_count
    assert 0.15 < ratio < 0.3
    assert (
        np.count_nonzero(thin.sensory_adjacency[:, thin.groups["map_0"]], axis=0) >= 1
    ).all()
    assert thin.validate() == []


def test_vision_wrong_input_size_states_the_expected_one():
    with pytest.raises(WiringError) as error:
        Vision(28, 28, 1).build(10)
    assert str(error.value).startswith(
        "wiring 'vision' needs input_dim 784 (28×28×1) but got 10"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(kernel_size=5), "kernel_size 5 is larger than the 4×4 map of the input"),
        (
            dict(layer_channels=[2, 2, 2]),
            "kernel_size 3 is larger than the 2×2 map of feature map 0 that "
            "feature map 1",
        ),
        (dict(layer_channels=[]), "layer_channels is empty"),
        (dict(layer_channels=[4, 0]), r"layer_channels\[1\] must be at least 1"),
        (dict(stride=0), "stride must be at least 1"),
        (dict(input_height=0), "input_height must be at least 1"),
        (dict(kernel_density=0.0), r"kernel_density must be a number in \(0, 1\]"),
        (dict(skip_density=1.2), "skip_density"),
        (dict(excitatory=-0.5), "excitatory"),
    ],
)
def test_vision_rejects_bad_parameters_with_a_clear_error(kwargs, message):
    params = dict(input_height=4, input_width=4, channels=1)
    params.update(kwargs)
    with pytest.raises(WiringError, match=message):
        Vision(**params)


def test_vision_builds_28x28_with_two_maps_well_under_a_second():
    start = time.perf_counter()
    wiring = Vision(28, 28, 1, layer_channels=[4, 8]).build(784)
    elapsed = time.perf_counter() - start

    assert elapsed < 0.5, f"build took {elapsed:.3f} s"
    assert wiring.units == 1186
    assert wiring.synapse_count == 18680
    assert wiring.sensory_synapse_count == 7116
    assert wiring.validate() == []


def test_vision_config_round_trips_and_seed_decides_the_graph():
    wiring = Vision(6, 6, 2, layer_channels=[3, 2], kernel_density=0.5, seed=5)
    wiring.build(72)
    restored = Vision.from_config(json.loads(json.dumps(wiring.config())))

    assert restored == wiring
    assert restored.params["layer_channels"] == [3, 2]
    assert (
        Vision(6, 6, 2, layer_channels=[3, 2], kernel_density=0.5, seed=6).build(72)
        != wiring
    )


def test_vision_excitatory_fraction_sets_polarities():
    wiring = Vision(8, 8, 1, excitatory=1.0).build(64)

    assert set(np.unique(wiring.adjacency)) == {0, 1}
    assert set(np.unique(wiring.sensory_adjacency)) == {0, 1}
    balanced = Vision(16, 16, 1).build(256)
    signs = balanced.adjacency[balanced.adjacency != 0]
    assert 0.45 < np.mean(signs > 0) < 0.55


def test_vision_registers_through_its_entry_point():
    ours = [
        ep for ep in importlib.metadata.entry_points(group="ncp") if ep.name == "vision"
    ]
    assert [ep.value for ep in ours] == ["ncp_wiring_vision"]

    registered: list[type] = []
    ours[0].load().ncp_register_wirings(registered.append)
    assert registered == [Vision]


def test_vision_is_found_by_name_through_the_plugin_system():
    import ncp_core

    wiring = ncp_core.get_wiring("vision", input_height=8, input_width=8, channels=1)
    infos = {info.name: info for info in ncp_core.list_wirings()}

    assert wiring == Vision(8, 8, 1)
    assert infos["vision"].distribution == "ncp-wiring-vision"


def test_vision_doc_example_runs():
    namespace = run_doc_example("vision")

    assert isinstance(namespace["wiring"], Vision)
    assert namespace["outputs"].shape == namespace["expected_shape"] == (5, 3, 10)
    assert namespace["shapes"] == [(8, 8, 1), (4, 4, 4), (2, 2, 8)]
