"""The Wiring protocol and the classic wirings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ncp_core.classic import NCP, AutoNCP, FullyConnected, Random
from ncp_core.errors import WiringError
from ncp_core.wiring import SENSORY, Wiring


def roundtrip(wiring: Wiring) -> Wiring:
    return type(wiring).from_config(json.loads(json.dumps(wiring.config())))


# -- the base class ------------------------------------------------------------


def test_adjacency_is_int8_with_source_rows_and_target_columns():
    wiring = Wiring(4, 2)
    wiring.add_synapse(0, 3, -1)
    wiring.add_synapses([1, 2], [0, 0], 1)

    assert wiring.adjacency.dtype == np.int8
    assert wiring.adjacency[0, 3] == -1
    assert wiring.adjacency[1, 0] == wiring.adjacency[2, 0] == 1
    assert wiring.synapse_count == 3


def test_vectorised_synapses_broadcast_and_take_polarity_arrays():
    wiring = Wiring(5)
    wiring.add_synapses(np.array([0, 1, 2]), 4, np.array([1, -1, 1]))

    assert wiring.adjacency[:, 4].tolist() == [1, -1, 1, 0, 0]


@pytest.mark.parametrize("polarity", [0, 2, -3])
def test_polarity_other_than_plus_minus_one_is_an_error(polarity):
    wiring = Wiring(3)
    with pytest.raises(WiringError, match=f"polarity {polarity}.*expected -1 or \\+1"):
        wiring.add_synapse(0, 1, polarity)


@pytest.mark.parametrize(("src", "dst"), [(3, 0), (0, 3), (-1, 0)])
def test_synapse_index_out_of_range_names_the_neuron(src, dst):
    wiring = Wiring(3)
    with pytest.raises(WiringError, match="out of range.*3 units"):
        wiring.add_synapse(src, dst, 1)


def test_sensory_synapses_need_build_and_a_valid_feature():
    wiring = Wiring(3)
    with pytest.raises(WiringError, match="before build"):
        wiring.add_sensory_synapse(0, 0, 1)
    wiring.build(2)
    with pytest.raises(WiringError, match="input feature 2 is out of range"):
        wiring.add_sensory_synapse(2, 0, 1)
    wiring.add_sensory_synapse(1, 2, -1)
    assert wiring.sensory_adjacency[1, 2] == -1
    assert wiring.sensory_synapse_count == 1


@pytest.mark.parametrize("units", [0, -4, 2.5, True])
def test_sizes_must_be_positive_integers(units):
    with pytest.raises(WiringError, match="units must be"):
        Wiring(units)


def test_output_dim_larger_than_units_is_an_error():
    with pytest.raises(WiringError, match="output_dim 5 is larger than units 4"):
        Wiring(4, 5)


def test_build_is_idempotent_for_the_same_size_and_refuses_another():
    wiring = AutoNCP(16, 4)
    wiring.build(8)
    sensory = wiring.sensory_adjacency.copy()
    count = wiring.synapse_count

    wiring.build(8)
    assert wiring.synapse_count == count
    assert np.array_equal(wiring.sensory_adjacency, sensory)
    with pytest.raises(
        WiringError, match="built for input_dim 8 but is now asked for 9"
    ):
        wiring.build(9)


def test_unknown_constructor_parameter_lists_accepted_ones():
    with pytest.raises(WiringError, match="sparsity_level=0.5"):
        AutoNCP(16, 4, sparsity=0.3)


def test_group_builders_respect_group_boundaries():
    rng = np.random.default_rng(0)
    wiring = Wiring(10, 2)
    wiring.add_group("out", range(2))
    wiring.add_group("a", range(2, 6))
    wiring.add_group("b", range(6, 10))

    wiring.connect_fanout("a", "b", 3, rng=rng)
    sub = wiring.adjacency[2:6, 6:10]
    assert (np.count_nonzero(sub, axis=1) == 3).all()
    assert np.count_nonzero(wiring.adjacency) == 12

    wiring.connect_fanin("b", "out", 2, polarity=-1, rng=rng)
    assert (np.count_nonzero(wiring.adjacency[6:10, :2], axis=0) == 2).all()
    assert set(wiring.adjacency[6:10, :2][wiring.adjacency[6:10, :2] != 0]) == {-1}

    wiring.connect_one_to_one(range(2, 4), "out")
    assert wiring.adjacency[2, 0] == 1 and wiring.adjacency[3, 1] == 1
    # nothing leaves the declared groups
    assert np.count_nonzero(wiring.adjacency[:2]) == 0


def test_dense_builder_can_leave_out_self_connections():
    wiring = Wiring(4)
    wiring.connect_dense(range(4), range(4), 1, self_connections=False)
    assert wiring.synapse_count == 12
    assert np.all(np.diag(wiring.adjacency) == 0)


def test_probability_builder_density_matches_the_probability():
    wiring = Wiring(200)
    wiring.connect_probability(
        range(200), range(200), 0.25, rng=np.random.default_rng(1)
    )
    assert wiring.density == pytest.approx(0.25, abs=0.01)


def test_excitatory_fraction_sets_the_polarity_mix():
    wiring = Wiring(300)
    wiring.connect_dense(range(300), range(300), 0.8, rng=np.random.default_rng(2))
    excitatory = np.mean(wiring.adjacency[wiring.adjacency != 0] > 0)
    assert excitatory == pytest.approx(0.8, abs=0.01)


def test_fanout_larger_than_target_group_is_an_error():
    wiring = Wiring(6)
    with pytest.raises(
        WiringError, match="fan-out 4 is larger than the target group of 3"
    ):
        wiring.connect_fanout(range(3), range(3, 6), 4)


def test_skip_residual_and_attention_patterns():
    wiring = Wiring(12, 2)
    wiring.add_group("out", range(2))
    wiring.add_group("q", range(2, 4))
    wiring.add_group("k", range(4, 6))
    wiring.add_group("v", range(6, 8))
    wiring.add_group("h", range(8, 12))

    wiring.connect_attention_head("q", "k", "v", rng=np.random.default_rng(0))
    assert np.count_nonzero(wiring.adjacency[2:4, 4:6]) == 4
    assert np.count_nonzero(wiring.adjacency[4:6, 6:8]) == 4
    assert np.count_nonzero(wiring.adjacency[2:4, 6:8]) == 0

    wiring.connect_residual("v", "h", "out")
    assert np.count_nonzero(wiring.adjacency[6:8, 8:12]) == 8
    assert np.count_nonzero(wiring.adjacency[8:12, 0:2]) == 8
    assert wiring.adjacency[6, 0] == 1 and wiring.adjacency[7, 1] == 1

    wiring.connect_skip("q", "out", density=1.0)
    assert np.count_nonzero(wiring.adjacency[2:4, 0:2]) == 4


def test_sensory_group_name_connects_input_features():
    wiring = Wiring(5)
    wiring.add_group("hidden", range(5))
    wiring.build(3)
    wiring.connect_fanout(SENSORY, "hidden", 2, rng=np.random.default_rng(0))
    assert (np.count_nonzero(wiring.sensory_adjacency, axis=1) == 2).all()


def test_validate_names_unreachable_outputs_and_neurons():
    wiring = Wiring(4, 1)
    wiring.build(2)
    wiring.add_sensory_synapse(0, 2, 1)
    wiring.add_synapse(2, 3, 1)

    problems = wiring.validate()
    assert any("output neurons [0]" in p for p in problems)
    assert any("neurons [1]" in p for p in problems)

    wiring.add_synapse(3, 0, 1)
    wiring.add_sensory_synapse(1, 1, 1)
    assert wiring.validate() == []


def test_unbuilt_wiring_validation_asks_for_build():
    assert any("build(input_dim)" in p for p in AutoNCP(10, 2).validate())


def test_base_wiring_from_config_keeps_the_structure_of_an_unknown_class():
    wiring = AutoNCP(12, 2)
    wiring.build(3)
    plain = Wiring.from_config(json.loads(json.dumps(wiring.config())))

    assert type(plain) is Wiring
    assert plain.name == "auto_ncp"
    assert np.array_equal(plain.adjacency, wiring.adjacency)
    assert np.array_equal(plain.sensory_adjacency, wiring.sensory_adjacency)
    assert [g.tolist() for g in plain.layers] == [g.tolist() for g in wiring.layers]
    assert plain.neuron_type(0) == "motor"


def test_from_config_restores_synapses_changed_after_construction():
    wiring = FullyConnected(5, 2)
    wiring.build(2)
    wiring.remove_synapses([0, 1], [1, 2])
    restored = roundtrip(wiring)
    assert restored == wiring
    assert restored.adjacency[0, 1] == 0


# -- the classic wirings -------------------------------------------------------


@pytest.mark.parametrize(
    "wiring",
    [
        FullyConnected(6, 2),
        FullyConnected(5, self_connections=False),
        Random(8, 3, sparsity_level=0.4),
        NCP(6, 4, 2, 3, 2, 3, 2),
        AutoNCP(20, 4),
    ],
    ids=repr,
)
def test_config_round_trips_to_an_equal_wiring_before_and_after_build(wiring):
    before = roundtrip(wiring)
    assert before == wiring and before.config()["params"] == wiring.config()["params"]
    wiring.build(5)
    after = roundtrip(wiring)
    assert after == wiring
    assert type(after) is type(wiring)


def test_construction_is_reproducible_from_the_seed():
    a, b = AutoNCP(40, 5, seed=7), AutoNCP(40, 5, seed=7)
    a.build(6), b.build(6)
    assert a == b
    c = AutoNCP(40, 5, seed=8).build(6)
    assert not np.array_equal(a.adjacency, c.adjacency)


def test_config_does_not_disturb_later_construction():
    """The reference re-seeds its generator in get_config (bug W1)."""
    a = AutoNCP(16, 4)
    a.config()
    a.build(8)
    b = AutoNCP(16, 4).build(8)
    assert a == b


def test_fully_connected_connects_everything_with_two_thirds_excitatory():
    wiring = FullyConnected(60, 4).build(30)
    assert wiring.synapse_count == 3600
    assert wiring.sensory_synapse_count == 1800
    excitatory = np.mean(wiring.adjacency > 0)
    assert excitatory == pytest.approx(2 / 3, abs=0.03)
    assert wiring.output_dim == 4 and wiring.neuron_type(3) == "motor"
    assert wiring.neuron_type(4) == "inter"


def test_fully_connected_without_self_connections_has_empty_diagonal():
    wiring = FullyConnected(7, self_connections=False)
    assert wiring.synapse_count == 42
    assert not np.diag(wiring.adjacency).any()


def test_random_keeps_the_requested_number_of_synapses():
    wiring = Random(20, 5, sparsity_level=0.75).build(8)
    assert wiring.synapse_count == 100
    assert wiring.sensory_synapse_count == 40


@pytest.mark.parametrize("level", [-0.1, 1.0, 1.5])
def test_random_sparsity_outside_unit_interval_is_an_error(level):
    with pytest.raises(WiringError, match=f"invalid sparsity_level {level}"):
        Random(10, sparsity_level=level)


def ncp_blocks(wiring: NCP):
    motor, command, inter = (wiring.groups[g] for g in ("motor", "command", "inter"))
    adj, sens = wiring.adjacency, wiring.sensory_adjacency
    return motor, command, inter, adj, sens


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ncp_follows_the_layered_rule(seed):
    wiring = NCP(
        10,
        6,
        3,
        sensory_fanout=4,
        inter_fanout=2,
        recurrent_command_synapses=5,
        motor_fanin=3,
        seed=seed,
    ).build(7)
    motor, command, inter, adj, sens = ncp_blocks(wiring)

    assert motor.tolist() == [0, 1, 2]
    assert command.tolist() == list(range(3, 9))
    assert inter.tolist() == list(range(9, 19))
    # every input reaches exactly sensory_fanout inter neurons, or more only by
    # the top-up of unreached inter neurons; nothing else
    assert (np.count_nonzero(sens[:, inter], axis=1) >= 4).all()
    assert np.count_nonzero(sens[:, np.r_[motor, command]]) == 0
    assert np.count_nonzero(sens[:, inter], axis=0).min() >= 1
    # inter -> command only, each inter neuron exactly inter_fanout targets
    assert (np.count_nonzero(adj[np.ix_(inter, command)], axis=1) == 2).all()
    assert np.count_nonzero(adj[np.ix_(inter, np.r_[motor, inter])]) == 0
    assert np.count_nonzero(adj[np.ix_(inter, command)], axis=0).min() >= 1
    # every motor neuron has at least motor_fanin command sources
    assert (np.count_nonzero(adj[np.ix_(command, motor)], axis=0) >= 3).all()
    assert np.count_nonzero(adj[np.ix_(command, motor)], axis=1).min() >= 1
    # motor neurons send nothing; command recurrence at most the draws
    assert np.count_nonzero(adj[motor]) == 0
    assert np.count_nonzero(adj[np.ix_(command, command)]) <= 5
    assert set(np.unique(adj)) <= {-1, 0, 1}
    assert wiring.validate() == []
    assert [layer.tolist() for layer in wiring.layers] == [
        inter.tolist(),
        command.tolist(),
        motor.tolist(),
    ]


def test_ncp_exact_fanout_when_every_inter_neuron_is_reached():
    wiring = NCP(
        4,
        3,
        2,
        sensory_fanout=4,
        inter_fanout=3,
        recurrent_command_synapses=0,
        motor_fanin=3,
    ).build(5)
    _, _, inter, _, sens = ncp_blocks(wiring)
    assert (np.count_nonzero(sens[:, inter], axis=1) == 4).all()
    assert wiring.sensory_synapse_count == 20


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(motor_fanin=5), "motor_fanin 5 is larger than the 4 command"),
        (dict(sensory_fanout=9), "sensory_fanout 9 is larger than the 8 inter"),
        (dict(inter_fanout=6), "inter_fanout 6 is larger than the 4 command"),
        (dict(inter_neurons=0), "inter_neurons must be at least 1"),
    ],
)
def test_ncp_rejects_fanouts_larger_than_their_groups(kwargs, message):
    params = dict(
        inter_neurons=8,
        command_neurons=4,
        motor_neurons=2,
        sensory_fanout=3,
        inter_fanout=2,
        recurrent_command_synapses=3,
        motor_fanin=2,
    )
    params.update(kwargs)
    with pytest.raises(WiringError, match=message):
        NCP(**params)


@pytest.mark.parametrize(
    ("args", "sizes"),
    [
        ((16, 4), (8, 4, 4, 4, 2, 4, 2)),
        ((28, 10), (11, 7, 10, 5, 3, 7, 3)),
        ((28, 4), (15, 9, 4, 7, 4, 9, 4)),
        ((16, 1), (9, 6, 1, 4, 3, 6, 3)),
        ((64, 10), (33, 21, 10, 16, 10, 21, 10)),
        ((12, 3, 0.5), (6, 3, 3, 3, 1, 3, 1)),
        ((16, 4, 0.9), (8, 4, 4, 1, 1, 1, 1)),
        ((16, 4, 1.0), (8, 4, 4, 1, 1, 1, 1)),
    ],
)
def test_auto_ncp_derives_the_reference_layer_sizes(args, sizes):
    wiring = AutoNCP(*args)
    got = (
        wiring.num_inter_neurons,
        wiring.num_command_neurons,
        wiring.output_dim,
        wiring.sensory_fanout,
        wiring.inter_fanout,
        wiring.recurrent_command_synapses,
        wiring.motor_fanin,
    )
    assert got == sizes


def test_auto_ncp_sensory_synapse_count_matches_the_reference():
    # With every inter neuron reached, the count is inputs x fan-out exactly.
    assert AutoNCP(28, 4).build(20).sensory_synapse_count == 140
    assert AutoNCP(64, 10).build(20).sensory_synapse_count == 320
    assert AutoNCP(16, 4).build(8).sensory_synapse_count == 32


def test_auto_ncp_output_size_must_leave_room_for_inter_and_command():
    with pytest.raises(WiringError, match="output_size 8 must be less than units - 2"):
        AutoNCP(10, 8)


@pytest.mark.parametrize("level", [0.05, 1.2])
def test_auto_ncp_sparsity_outside_range_is_an_error_that_says_the_range(level):
    with pytest.raises(
        WiringError, match=r"sparsity_level must be a number in \[0.1, 1.0\]"
    ):
        AutoNCP(16, 4, level)


def test_large_auto_ncp_is_valid():
    wiring = AutoNCP(1024, 8).build(16)
    assert wiring.validate() == []
    assert 0.05 < wiring.density < 0.3


# -- graphs and drawings -------------------------------------------------------


def test_networkx_graph_has_every_synapse_with_its_polarity():
    pytest.importorskip("networkx")
    wiring = AutoNCP(12, 2).build(3)
    graph = wiring.to_networkx()
    assert (
        graph.number_of_edges() == wiring.synapse_count + wiring.sensory_synapse_count
    )
    src, dst = np.argwhere(wiring.adjacency)[0]
    edge = graph.edges[f"neuron_{src}", f"neuron_{dst}"]
    assert edge["polarity"] == wiring.adjacency[src, dst]
    assert graph.nodes["neuron_0"]["group"] == "motor"
    assert graph.nodes["sensory_0"]["group"] == "sensory"
    assert graph.number_of_nodes() == 15
    assert wiring.to_networkx(include_sensory=False).number_of_nodes() == 12


@pytest.mark.parametrize(("units", "kind"), [(12, "graph"), (300, "matrix")])
def test_draw_writes_a_picture_for_small_and_large_wirings(tmp_path, units, kind):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wiring = AutoNCP(units, 2).build(4)
    ax = wiring.draw()
    path = tmp_path / "wiring.png"
    ax.figure.savefig(path)
    plt.close(ax.figure)
    assert path.stat().st_size > 5000
    if kind == "matrix":
        assert len(ax.images) == 1
        assert ax.images[0].get_array().shape == (units, units)
    else:
        assert len(ax.images) == 0
