"""The MLX cells, the sequence modules and the compiled training step."""

from __future__ import annotations

import json
import math
from functools import partial

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from mlx.utils import tree_flatten

from ncp_core import rnn as rnn_module
from ncp_core.cells import (
    CfCCell,
    LSTMCell,
    LTCCell,
    WiredCfCCell,
    choose_kernel,
)
from ncp_core.cells import cfc as cfc_module
from ncp_core.cells import ltc as ltc_module
from ncp_core.cells import synapses as syn
from ncp_core.cells.synapses import sigmoid
from ncp_core.classic import AutoNCP, FullyConnected
from ncp_core.errors import CheckpointError, ModelError
from ncp_core.rnn import LTC, CfC, model_from_config
from ncp_core.training import make_train_step

LTC_PARAMETERS = [
    "gleak",
    "vleak",
    "cm",
    "sigma",
    "mu",
    "w",
    "erev",
    "sensory_sigma",
    "sensory_mu",
    "sensory_w",
    "sensory_erev",
    "input_w",
    "input_b",
    "output_w",
    "output_b",
]


def close(a, b, atol=1e-5) -> None:
    np.testing.assert_allclose(np.array(a), np.array(b), rtol=0, atol=atol)


def copy_parameters(source: nn.Module, target: nn.Module) -> None:
    target.update(source.parameters())


# -- LTCCell ---------------------------------------------------------------------


def test_ltc_cell_has_the_reference_parameters_and_no_mask_parameters():
    wiring = AutoNCP(16, 4)
    cell = LTCCell(wiring, in_features=5)

    names = [name for name, _ in tree_flatten(cell.parameters())]

    assert sorted(names) == sorted(LTC_PARAMETERS)
    assert cell.sigma.shape == (16, 16) and cell.sensory_w.shape == (5, 16)
    assert float(cell.sigma.min()) >= 3.0 and float(cell.sigma.max()) <= 8.0
    assert float(cell.cm.min()) >= 0.4 and float(cell.cm.max()) <= 0.6
    np.testing.assert_array_equal(np.array(cell.erev), wiring.adjacency)
    np.testing.assert_array_equal(
        np.array(cell._sparsity_mask), np.abs(wiring.adjacency)
    )


def test_ltc_cell_without_input_size_asks_for_it():
    with pytest.raises(ModelError, match="in_features"):
        LTCCell(AutoNCP(16, 4))


def test_ltc_cell_rejects_unknown_mapping_and_kernel():
    with pytest.raises(ModelError, match="'affin'"):
        LTCCell(AutoNCP(16, 4), 3, input_mapping="affin")
    with pytest.raises(ModelError, match="'csr'.*'sparse'"):
        LTCCell(AutoNCP(16, 4), 3, kernel="csr")


def test_auto_kernel_is_sparse_only_for_large_sparse_wirings():
    assert choose_kernel(AutoNCP(24, 4)) == "dense"
    assert choose_kernel(AutoNCP(64, 8)) == "sparse"
    assert choose_kernel(FullyConnected(100)) == "dense"
    assert LTCCell(AutoNCP(64, 8), 4).kernel == "sparse"


@pytest.mark.parametrize(
    "wiring", [lambda: AutoNCP(24, 4), lambda: FullyConnected(10, 3)]
)
@pytest.mark.parametrize("implicit", [False, True])
def test_dense_and_sparse_kernels_agree_on_values_and_gradients(wiring, implicit):
    wiring = wiring()
    dense = LTC(5, wiring, kernel="dense", implicit_param_constraints=implicit)
    sparse = LTC(5, wiring, kernel="sparse", implicit_param_constraints=implicit)
    copy_parameters(dense, sparse)
    x = mx.random.normal((3, 4, 5))
    spans = mx.random.uniform(0.5, 1.5, (3, 4))

    def loss(model):
        y, h = model(x, timespans=spans)
        return mx.mean(y**2) + 0.1 * mx.sum(h), (y, h)

    (_, (y_dense, h_dense)), g_dense = nn.value_and_grad(dense, loss)(dense)
    (_, (y_sparse, h_sparse)), g_sparse = nn.value_and_grad(sparse, loss)(sparse)

    close(y_dense, y_sparse)
    close(h_dense, h_sparse)
    g_sparse = dict(tree_flatten(g_sparse))
    for name, grad in tree_flatten(g_dense):
        np.testing.assert_allclose(
            np.array(g_sparse[name]), np.array(grad), rtol=1e-4, atol=1e-5
        )


@pytest.mark.parametrize("kernel", ["dense", "sparse"])
def test_loss_gradients_flow_only_through_present_synapses(kernel):
    wiring = AutoNCP(16, 3)
    model = LTC(4, wiring, kernel=kernel)
    x = mx.random.normal((2, 3, 4))

    grads = nn.value_and_grad(model, lambda m: mx.sum(m(x)[0] ** 2))(model)[1]

    absent = wiring.adjacency == 0
    assert np.all(np.array(grads["rnn_cell"]["w"])[absent] == 0)
    assert np.any(np.array(grads["rnn_cell"]["w"])[~absent] != 0)


def test_dense_sensory_drive_in_chunks_equals_all_steps_at_once(monkeypatch):
    model = LTC(5, AutoNCP(16, 3), kernel="dense")
    x = mx.random.normal((3, 9, 5))
    whole, _ = model(x)

    monkeypatch.setattr(ltc_module, "DENSE_SENSORY_BUDGET", 3 * 5 * 16 * 2)
    chunked, _ = model(x)

    close(chunked, whole, atol=0)


def test_ltc_cell_elapsed_time_array_applies_per_sample():
    cell = LTCCell(AutoNCP(12, 2), 3)
    x = mx.random.normal((2, 3))
    h = mx.random.normal((2, 12)) * 0.2

    _, both = cell(x, h, mx.array([0.5, 2.0]))
    _, first = cell(x[:1], h[:1], 0.5)
    _, second = cell(x[1:], h[1:], 2.0)

    close(both, mx.concatenate([first, second]), atol=1e-6)


@pytest.mark.parametrize("kernel", ["dense", "sparse"])
def test_ltc_time_scale_divides_the_elapsed_time(kernel):
    scaled = AutoNCP(12, 2)
    scaled.set_time_scales(2.0)
    slow = LTCCell(scaled, 3, kernel=kernel)
    reference = LTCCell(AutoNCP(12, 2), 3, kernel=kernel)
    copy_parameters(slow, reference)
    x, h = mx.random.normal((2, 3)), mx.random.normal((2, 12)) * 0.2

    close(slow(x, h, 1.0)[1], reference(x, h, 0.5)[1], atol=1e-6)


@pytest.mark.parametrize("kernel", ["dense", "sparse"])
def test_ltc_time_scales_act_per_neuron(kernel):
    scaled = AutoNCP(12, 2)
    scaled.set_time_scales(np.linspace(0.5, 3.0, 12))
    # one unfold: each neuron's update depends only on the state before it
    slow = LTCCell(scaled, 3, ode_unfolds=1, kernel=kernel)
    reference = LTCCell(AutoNCP(12, 2), 3, ode_unfolds=1, kernel=kernel)
    copy_parameters(slow, reference)
    x, h = mx.random.normal((1, 3)), mx.random.normal((1, 12)) * 0.2

    _, new = slow(x, h, 1.0)

    for neuron, tau in enumerate(scaled.time_scales):
        _, expected = reference(x, h, 1.0 / float(tau))
        close(new[0, neuron], expected[0, neuron], atol=1e-6)


def test_wired_cfc_time_scale_divides_the_elapsed_time():
    plain = AutoNCP(12, 2)
    scaled = AutoNCP(12, 2)
    scaled.set_time_scales(2.0)
    slow = WiredCfCCell(3, scaled)
    reference = WiredCfCCell(3, plain)
    copy_parameters(slow, reference)
    x, h = mx.random.normal((2, 3)), mx.random.normal((2, 12))

    close(slow(x, h, 1.0)[1], reference(x, h, 0.5)[1], atol=1e-6)


@pytest.mark.parametrize("kernel", ["dense", "sparse"])
def test_growing_a_synapse_sets_its_erev_to_the_polarity(kernel):
    wiring = AutoNCP(16, 3)
    cell = LTCCell(wiring, 4, kernel=kernel)
    cell.erev = cell.erev * 0.7
    adjacency = wiring.adjacency.copy()
    free = np.argwhere(adjacency == 0)[0]
    present = np.argwhere(adjacency != 0)[0]
    adjacency[tuple(free)] = -1

    cell.set_wiring_masks(adjacency=adjacency)

    erev = np.array(cell.erev)
    assert erev[tuple(free)] == -1.0
    assert erev[tuple(present)] == pytest.approx(0.7 * wiring.adjacency[tuple(present)])
    assert cell.synapse_count == wiring.synapse_count + 1


@pytest.mark.parametrize("kernel", ["dense", "sparse"])
def test_removed_synapses_act_as_if_never_wired(kernel):
    wiring = AutoNCP(16, 3)
    cell = LTCCell(wiring, 4, kernel=kernel)
    pruned = wiring.copy()
    pruned.adjacency[wiring.groups["command"], :] = 0
    fresh = LTCCell(pruned, 4, kernel=kernel)
    copy_parameters(cell, fresh)
    x, h = mx.random.normal((2, 4)), mx.random.normal((2, 16)) * 0.2

    cell.set_wiring_masks(adjacency=pruned.adjacency)

    close(cell(x, h)[1], fresh(x, h)[1], atol=1e-6)


@pytest.mark.parametrize("kernel", ["dense", "sparse"])
def test_synapse_gains_scale_the_maximal_conductance(kernel):
    wiring = AutoNCP(16, 3)
    cell = LTCCell(wiring, 4, kernel=kernel)
    doubled = LTCCell(wiring, 4, kernel=kernel)
    copy_parameters(cell, doubled)
    doubled.w = cell.w * 2.0
    doubled.sensory_w = cell.sensory_w * 0.5
    x, h = mx.random.normal((2, 4)), mx.random.normal((2, 16)) * 0.2

    cell.set_synapse_gains(np.full((16, 16), 2.0), np.full((4, 16), 0.5))

    close(cell(x, h)[1], doubled(x, h)[1], atol=1e-6)
    with pytest.raises(ModelError, match=r"\(16, 16\)"):
        cell.set_synapse_gains(np.ones((4, 4)))


def test_apply_weight_constraints_clips_only_explicit_cells():
    explicit = LTCCell(AutoNCP(12, 2), 3)
    implicit = LTCCell(AutoNCP(12, 2), 3, implicit_param_constraints=True)
    for cell in (explicit, implicit):
        cell.cm = -mx.ones_like(cell.cm)
        cell.apply_weight_constraints()

    assert float(explicit.cm.max()) == 0.0
    assert float(implicit.cm.max()) == -1.0


def test_segment_sums_and_scatter_adds_give_the_same_currents_and_gradients():
    wiring = AutoNCP(20, 3)
    cell = LTCCell(wiring, 4, kernel="sparse", implicit_param_constraints=True)
    u = mx.random.normal((20, 3)) * 0.5

    def currents(w, u, segmented):
        cell.w = w
        synapses = cell._prepare()["synapses"]
        num, den = syn.sparse_currents(synapses, u, 20, segmented)
        return mx.sum(num * mx.arange(3)) + mx.sum(den**2)

    results = [
        mx.value_and_grad(currents, argnums=(0, 1))(cell.w, u, segmented)
        for segmented in (True, False)
    ]

    (value_a, (dw_a, du_a)), (value_b, (dw_b, du_b)) = results
    close(value_a, value_b, atol=1e-5)
    close(dw_a, dw_b, atol=1e-5)
    close(du_a, du_b, atol=1e-5)
    assert float(mx.abs(du_a).sum()) > 0


def test_fast_sigmoid_matches_the_logistic_function_and_its_gradient():
    x = mx.array(np.linspace(-60, 60, 4001, dtype=np.float32))

    value = sigmoid(x)
    grad = mx.grad(lambda v: mx.sum(sigmoid(v) * v))(x)

    expected = 1.0 / (1.0 + np.exp(-np.array(x, dtype=np.float64)))
    close(value, expected, atol=2e-7)
    expected_grad = expected + np.array(x) * expected * (1 - expected)
    np.testing.assert_allclose(np.array(grad), expected_grad, rtol=1e-5, atol=1e-6)


def test_fast_tanh_matches_tanh_and_its_gradient():
    x = mx.array(np.linspace(-30, 30, 4001, dtype=np.float32))

    value = syn.tanh(x)
    grad = mx.grad(lambda v: mx.sum(syn.tanh(v) * v))(x)

    expected = np.tanh(np.array(x, dtype=np.float64))
    close(value, expected, atol=2e-7)
    expected_grad = expected + np.array(x) * (1 - expected**2)
    np.testing.assert_allclose(np.array(grad), expected_grad, rtol=1e-5, atol=1e-6)


def test_slot_table_sums_every_segment_including_empty_and_long_ones():
    rng = np.random.default_rng(0)
    # segment 1 is empty, segment 3 spans several rows of 4 slots
    segment = np.array([0, 0, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4])
    table = syn.slot_table(segment, 5, width=4)
    values = rng.normal(size=(segment.size, 3)).astype(np.float32)
    slots = np.zeros((table.size, 3), np.float32)
    slots[table.position] = values
    rows_of = None if table.rows_of is None else mx.array(table.rows_of)

    sums = syn._segment_sum(
        mx.array(slots), mx.zeros((table.rows, table.width)), rows_of
    )

    expected = np.zeros((5, 3), np.float32)
    np.add.at(expected, segment, values)
    close(sums, expected, atol=1e-6)
    assert table.fan == 3 and np.all(slots[table.pad_slot :] == 0)


def reference_solve(synapses, u, cm, num_c, den_c, unfolds, epsilon):
    """The sparse ODE through scatter-adds and MLX's own gradients."""
    for _ in range(unfolds):
        num, den = syn.sparse_currents(synapses, u, u.shape[0], segmented=False)
        u = (cm * u + num_c + num) / (cm + den_c + den + epsilon)
    return u


@pytest.mark.parametrize("per_row", ["none", "broadcast", "per_sample"])
def test_sparse_solver_gradient_equals_automatic_differentiation(per_row):
    mx.random.seed(3)
    wiring = AutoNCP(20, 3)
    cell = LTCCell(wiring, 4, kernel="sparse")
    batch = 3
    synapses = cell._prepare()["synapses"]
    if per_row == "per_sample":
        synapses = synapses._replace(
            w=synapses.w * mx.random.uniform(0.5, 1.5, (synapses.w.shape[0], batch))
        )
    u = mx.random.normal((20, batch)) * 0.5
    cm = mx.random.uniform(1.0, 3.0, (20, 1))
    num_c, den_c = mx.random.normal((20, batch)), mx.random.uniform(0.5, 2, (20, batch))
    weights = mx.random.normal((20, batch))

    def loss(solve, params, u, cm, num_c, den_c):
        s = synapses._replace(
            w=params[0], sigma=params[1], mu=params[2], erev=params[3]
        )
        if per_row == "broadcast" and solve is syn.sparse_solve:
            s = syn.broadcast_synapses(s, batch)
        out = solve(s, u, cm, num_c, den_c, 4, 1e-8)
        return mx.sum(out * weights)

    params = [synapses.w, synapses.sigma, synapses.mu, synapses.erev]
    results = [
        mx.value_and_grad(partial(loss, solve), argnums=(0, 1, 2, 3, 4))(
            params, u, cm, num_c, den_c
        )
        for solve in (syn.sparse_solve, reference_solve)
    ]

    (value, grads), (expected_value, expected_grads) = results
    close(value, expected_value, atol=1e-5)
    # padding slots have w = 0 and pass nothing to the dense weights: their
    # own gradient is not compared
    present = synapses.edges["present"]
    grads[0][0] = grads[0][0] * present
    expected_grads[0][0] = expected_grads[0][0] * present
    pairs = zip(tree_flatten(grads), tree_flatten(expected_grads), strict=True)
    for (_, ours), (_, theirs) in pairs:
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(
            np.array(ours), np.array(theirs), rtol=1e-4, atol=1e-5
        )
    assert float(mx.abs(grads[0][1]).sum()) > 0


def test_large_dense_activations_use_the_vectorised_sigmoid_with_equal_results(
    monkeypatch,
):
    model = LTC(5, AutoNCP(16, 3), kernel="dense")
    x = mx.random.normal((2, 3, 5))

    def loss(model):
        return mx.sum(model(x)[0] ** 2)

    fused, fused_grads = nn.value_and_grad(model, loss)(model)
    monkeypatch.setattr(syn, "DENSE_FUSED_SIGMOID", 0)
    vectorised, vectorised_grads = nn.value_and_grad(model, loss)(model)

    close(fused, vectorised, atol=1e-5)
    pairs = zip(tree_flatten(fused_grads), tree_flatten(vectorised_grads), strict=True)
    for (_, a), (_, b) in pairs:
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-4, atol=1e-6)


def test_a_new_elapsed_time_gives_the_eager_result_of_the_compiled_step():
    cell = LTCCell(AutoNCP(12, 2), 3, kernel="dense")
    x, h = mx.random.normal((2, 3)), mx.random.normal((2, 12)) * 0.2

    for elapsed in (1.0, 0.25, 3.0):
        _, compiled = cell(x, h, elapsed)
        _, eager = cell._step(x, h, mx.full((1, 1), elapsed))
        close(compiled, eager, atol=1e-7)
    assert not np.allclose(np.array(cell(x, h, 0.25)[1]), np.array(cell(x, h, 3.0)[1]))


# -- CfCCell, WiredCfCCell, LSTMCell -------------------------------------------


def test_cfc_cell_errors_name_the_value_and_the_options():
    with pytest.raises(ModelError, match="'fast'.*'default', 'pure', 'no_gate'"):
        CfCCell(3, 4, mode="fast")
    with pytest.raises(ModelError, match="'swish'.*'lecun_tanh'"):
        CfCCell(3, 4, backbone_activation="swish")
    with pytest.raises(ModelError, match="backbone_layers=0"):
        CfCCell(3, 4, sparsity_mask=np.ones((7, 4)))


def test_cfc_cell_parameters_map_to_reference_names():
    cell = CfCCell(3, 4, backbone_layers=2, backbone_units=8)

    names = sorted(name for name, _ in tree_flatten(cell.parameters()))

    assert names == sorted(
        [f"backbone.layers.{i}.{p}" for i in (0, 1) for p in ("weight", "bias")]
        + [
            f"{h}.{p}"
            for h in ("ff1", "ff2", "time_a", "time_b")
            for p in ("weight", "bias")
        ]
    )


def test_cfc_cell_sparsity_mask_zeroes_the_masked_weights():
    mask = np.ones((5, 3))
    mask[0, :] = 0  # input 0 reaches nobody
    cell = CfCCell(2, 3, backbone_layers=0, sparsity_mask=mask)
    cell.time_a.weight = mx.zeros_like(cell.time_a.weight)
    cell.time_b.weight = mx.zeros_like(cell.time_b.weight)
    h = mx.random.normal((1, 3))

    a, _ = cell(mx.array([[1.0, 0.3]]), h)
    b, _ = cell(mx.array([[-5.0, 0.3]]), h)

    close(a, b, atol=1e-7)


def test_wired_cfc_state_is_in_neuron_id_order_with_motor_neurons_first():
    wiring = AutoNCP(16, 3)
    cell = WiredCfCCell(4, wiring)
    x, h = mx.random.normal((2, 4)), mx.zeros((2, 16))

    y, new = cell(x, h)

    command = new[:, mx.array(wiring.groups["command"])]
    expected, _ = cell.layers[2](command, h[:, :3])
    close(y, expected, atol=1e-6)
    close(new[:, :3], y, atol=0)
    assert cell.layer_sizes == [wiring.layers[i].size for i in range(3)]


def test_wired_cfc_rejects_layers_that_miss_neurons():
    wiring = AutoNCP(16, 3)
    wiring.layers = wiring.layers[:2]

    with pytest.raises(ModelError, match="every neuron exactly once"):
        WiredCfCCell(4, wiring)


@pytest.mark.parametrize("mode", ["default", "no_gate"])
@pytest.mark.parametrize("array_ts", [False, True])
def test_cfc_heads_gradient_equals_that_of_the_plain_formula(mode, array_ts):
    z = mx.random.normal((3, 8)) * 2
    ts = mx.array([[0.5], [1.0], [2.0]]) if array_ts else 0.7
    weights = mx.random.normal((3, 2))

    def plain(z, ts):
        ff1, ff2, t_a, t_b = mx.split(z, 4, axis=-1)
        gate = mx.sigmoid(t_a * ts + t_b)
        if mode == "default":
            return mx.tanh(ff1) * (1 - gate) + gate * mx.tanh(ff2)
        return mx.tanh(ff1) + gate * mx.tanh(ff2)

    def loss(head, z, ts):
        return mx.sum(head(z, ts) * weights)

    argnums = (0, 1) if array_ts else 0
    ours = mx.value_and_grad(
        lambda z, ts: loss(
            lambda a, b: cfc_module.gated_heads(a, b, mode == "default"), z, ts
        ),
        argnums=argnums,
    )(z, ts)
    theirs = mx.value_and_grad(lambda z, ts: loss(plain, z, ts), argnums=argnums)(z, ts)

    close(ours[0], theirs[0], atol=1e-5)
    for a, b in zip(tree_flatten(ours[1]), tree_flatten(theirs[1]), strict=True):
        close(a[1], b[1], atol=2e-6)


def test_sequence_steps_have_the_gradient_of_slices():
    x = mx.random.normal((2, 5, 3))

    def loss(x, cut):
        steps = cut(x)
        return sum(mx.sum(mx.tanh(step) * (t + 1)) for t, step in enumerate(steps))

    ours = mx.grad(lambda x: loss(x, lambda a: rnn_module._steps(a, 1)))(x)
    theirs = mx.grad(lambda x: loss(x, lambda a: [a[:, t] for t in range(5)]))(x)

    close(ours, theirs, atol=1e-6)


def test_lstm_cell_follows_its_gate_equations():
    cell = LSTMCell(3, 2)
    x, h, c = (
        mx.random.normal((1, 3)),
        mx.random.normal((1, 2)),
        mx.random.normal((1, 2)),
    )

    h_new, c_new = cell(x, (h, c))

    z = np.array(cell.input_map(x) + cell.recurrent_map(h))[0]
    i, ig, fg, og = np.split(z, 4)
    logistic = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    c_ref = np.array(c)[0] * logistic(fg + 1) + np.tanh(i) * logistic(ig)
    close(c_new[0], c_ref, atol=1e-6)
    close(h_new[0], np.tanh(c_ref) * logistic(og), atol=1e-6)
    w = np.array(cell.recurrent_map.weight)
    close(w.T @ w, np.eye(2), atol=1e-5)


# -- sequence modules ------------------------------------------------------------


@pytest.fixture(params=["ltc", "cfc", "wired_cfc", "ltc_mixed", "cfc_mixed"])
def model(request):
    mx.random.seed(7)
    return {
        "ltc": lambda: LTC(3, AutoNCP(12, 2)),
        "cfc": lambda: CfC(3, 6, backbone_units=8),
        "wired_cfc": lambda: CfC(3, AutoNCP(12, 2)),
        "ltc_mixed": lambda: LTC(3, AutoNCP(12, 2), mixed_memory=True),
        "cfc_mixed": lambda: CfC(3, 6, backbone_units=8, mixed_memory=True),
    }[request.param]()


def final_h(state):
    return state[0] if isinstance(state, tuple) else state


def test_sequence_shapes_for_batched_unbatched_and_time_major_inputs(model):
    x = mx.random.normal((2, 5, 3))

    y, state = model(x)
    y_single, state_single = model(x[1])
    model.batch_first = False
    y_time_major, _ = model(x.transpose(1, 0, 2))
    model.batch_first = True

    assert y.shape == (2, 5, model.output_size)
    assert final_h(state).shape == (2, model.state_size)
    assert y_single.shape == (5, model.output_size)
    assert final_h(state_single).shape == (model.state_size,)
    close(y_single, y[1], atol=1e-6)
    close(y_time_major.transpose(1, 0, 2), y, atol=1e-6)


def test_final_state_continues_the_sequence(model):
    x = mx.random.normal((2, 6, 3))

    y, _ = model(x)
    _, middle = model(x[:, :3])
    y_rest, _ = model(x[:, 3:], hx=middle)

    close(y_rest, y[:, 3:], atol=1e-5)


def test_without_return_sequences_only_the_last_output_comes_back(model):
    x = mx.random.normal((2, 4, 3))
    y, state = model(x)
    model.return_sequences = False

    last, last_state = model(x)

    close(last, y[:, -1], atol=1e-6)
    close(final_h(last_state), final_h(state), atol=1e-6)


def test_masked_steps_carry_the_state_of_the_last_real_step(model):
    x = mx.random.normal((2, 6, 3))
    padded = mx.concatenate([x[:, :4], mx.zeros((2, 2, 3))], axis=1)
    mask = mx.array([[True] * 6, [True] * 4 + [False] * 2])
    spans = mx.concatenate([mx.ones((2, 4)), mx.zeros((2, 2))], axis=1)

    _, full = model(x)
    y, state = model(padded, timespans=mx.where(mask, 1.0, spans), mask=mask)
    _, short = model(x[1:, :4])

    close(final_h(state)[1], final_h(short)[0], atol=1e-6)
    close(y[1, 4], y[1, 3], atol=1e-6)
    assert np.abs(np.array(final_h(state)[0] - final_h(full)[0])).max() > 1e-4


def test_padding_with_zero_timespans_is_allowed_under_the_mask():
    model = LTC(3, AutoNCP(12, 2))
    x = mx.random.normal((1, 4, 3))
    mask = mx.array([[True, True, False, False]])
    spans = mx.array([[1.0, 0.5, 0.0, 0.0]])

    y, h = model(x, timespans=spans, mask=mask)
    _, short = model(x[:, :2], timespans=spans[:, :2])

    close(h, short, atol=1e-6)
    assert np.isfinite(np.array(y)).all()


def test_initial_state_and_timespan_errors_are_clear():
    model = LTC(3, AutoNCP(12, 2))
    mixed = CfC(3, 6, mixed_memory=True)
    x = mx.random.normal((2, 5, 3))

    with pytest.raises(ModelError, match=r"\(2, 12\).*\(2, 7\)"):
        model(x, hx=mx.zeros((2, 7)))
    with pytest.raises(ModelError, match=r"tuple \(h, c\)"):
        mixed(x, hx=mx.zeros((2, 6)))
    with pytest.raises(ModelError, match=r"\(2, 4\) fit neither \(2, 5\)"):
        model(x, timespans=mx.ones((2, 4)))
    with pytest.raises(ModelError, match="positive and finite.*-1"):
        model(x, timespans=-mx.ones((2, 5)))
    with pytest.raises(ModelError, match="positive and finite.*nan"):
        model(x, timespans=mx.full((2, 5), float("nan")))


def test_input_errors_name_the_shape_and_the_expected_size():
    model = CfC(3, AutoNCP(12, 2))

    with pytest.raises(ModelError, match=r"got shape \(2, 5, 3, 1\)"):
        model(mx.zeros((2, 5, 3, 1)))
    with pytest.raises(ModelError, match="3 input features but the input has 4"):
        model(mx.zeros((2, 5, 4)))


def test_model_construction_errors_name_the_culprit():
    with pytest.raises(ModelError, match="backbone_units=64 cannot be used"):
        CfC(3, AutoNCP(12, 2), backbone_units=64)
    with pytest.raises(ModelError, match="'gated'"):
        CfC(3, 8, mode="gated")
    with pytest.raises(ModelError, match="'swish'"):
        CfC(3, 8, activation="swish")


def test_timespan_values_are_not_read_inside_a_compiled_function():
    model = LTC(3, AutoNCP(12, 2))
    x = mx.random.normal((2, 4, 3))
    spans = mx.random.uniform(0.5, 1.5, (2, 4))

    compiled = mx.compile(lambda x, s: model(x, timespans=s)[0], inputs=model.state)

    close(compiled(x, spans), model(x, timespans=spans)[0], atol=1e-6)


def test_config_rebuilds_the_model_and_weights_round_trip(tmp_path, model):
    path = tmp_path / "model.safetensors"
    x = mx.random.normal((2, 4, 3))
    model.save_weights(str(path))

    config = json.loads(json.dumps(model.config()))
    rebuilt = model_from_config(config)
    rebuilt.load_weights(str(path))

    assert type(rebuilt) is type(model)
    close(rebuilt(x)[0], model(x)[0], atol=1e-6)


def test_from_config_refuses_the_config_of_another_class():
    config = LTC(3, 6).config()

    with pytest.raises(CheckpointError, match="'LTC' model, not a 'CfC'"):
        CfC.from_config(config)


def test_weights_of_another_wiring_are_refused_with_a_clear_error(tmp_path):
    path = tmp_path / "w.safetensors"
    CfC(3, AutoNCP(12, 2)).save_weights(str(path))

    with pytest.raises(CheckpointError, match="another wiring"):
        CfC(3, AutoNCP(14, 2)).load_weights(str(path))


# -- compiled training ------------------------------------------------------------


def mse(model, x, y):
    out, _ = model(x)
    return mx.mean((out - y) ** 2)


@pytest.mark.parametrize(
    "build",
    [
        lambda: LTC(3, AutoNCP(12, 2), implicit_param_constraints=False),
        lambda: LTC(3, AutoNCP(64, 2), kernel="sparse"),
        lambda: CfC(3, AutoNCP(12, 2)),
        lambda: CfC(3, 8, backbone_units=8, backbone_dropout=0.3),
    ],
)
def test_compiled_and_eager_steps_reach_the_same_parameters(build):
    results = []
    for compile_step in (True, False):
        mx.random.seed(0)
        model = build()
        x = mx.random.normal((4, 5, 3))
        y = mx.random.normal((4, 5, model.output_size))
        step = make_train_step(model, optim.Adam(1e-2), mse, compile=compile_step)
        mx.random.seed(1)
        for _ in range(3):
            step(x, y)
        results.append(dict(tree_flatten(model.parameters())))

    compiled, eager = results
    for name, value in compiled.items():
        close(value, eager[name], atol=1e-5)


def test_train_step_keeps_explicitly_constrained_parameters_non_negative():
    model = LTC(3, AutoNCP(12, 2), implicit_param_constraints=False)
    model.rnn_cell.gleak = model.rnn_cell.gleak - 0.9
    step = make_train_step(model, optim.SGD(0.0), mse)

    step(mx.zeros((1, 2, 3)), mx.zeros((1, 2, 2)))

    assert float(model.rnn_cell.gleak.min()) == 0.0


@pytest.mark.parametrize("cell", ["ltc_dense", "ltc_sparse", "wired_cfc"])
def test_compiled_step_sees_mask_and_gain_changes(cell):
    mx.random.seed(0)
    wiring = AutoNCP(16, 2)
    model = {
        "ltc_dense": lambda: LTC(3, wiring, kernel="dense"),
        "ltc_sparse": lambda: LTC(3, wiring, kernel="sparse"),
        "wired_cfc": lambda: CfC(3, wiring),
    }[cell]()
    x, y = mx.random.normal((2, 4, 3)), mx.zeros((2, 4, 2))
    step = make_train_step(model, optim.SGD(0.0), mse)
    before = step(x, y).item()

    pruned = wiring.adjacency.copy()
    pruned[wiring.groups["inter"], :] = 0
    model.set_wiring_masks(adjacency=pruned)
    after_mask = step(x, y).item()
    model.set_synapse_gains(np.full((16, 16), 0.3), np.full((3, 16), 2.0))
    after_gains = step(x, y).item()

    assert abs(after_mask - before) > 1e-4
    assert abs(after_gains - after_mask) > 1e-4
    assert after_gains == pytest.approx(mse(model, x, y).item(), abs=1e-6)


def test_small_wired_cfc_learns_to_predict_the_next_sine_value():
    mx.random.seed(0)
    rng = np.random.default_rng(0)
    starts = rng.uniform(0, 2 * math.pi, (16, 1))
    t = starts + 0.3 * np.arange(21)
    series = np.sin(t).astype(np.float32)[:, :, None]
    x, y = mx.array(series[:, :-1]), mx.array(series[:, 1:])
    model = CfC(1, AutoNCP(10, 1))
    step = make_train_step(model, optim.Adam(0.03), mse)

    first = step(x, y).item()
    for _ in range(40):
        last = step(x, y).item()

    assert last < first / 10
