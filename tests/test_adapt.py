"""Run-time support for changing wirings: masks, gains, scores, subsets."""

from __future__ import annotations

import itertools

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

from ncp_core import adapt
from ncp_core.classic import AutoNCP, Random
from ncp_core.errors import ModelError, WiringError
from ncp_core.rnn import LTC, CfC


def build(kind: str, units: int = 12):
    mx.random.seed(0)
    wiring = AutoNCP(units, 2, seed=1)
    if kind == "ltc-dense":
        return LTC(3, wiring, kernel="dense")
    if kind == "ltc-sparse":
        return LTC(3, wiring, kernel="sparse")
    if kind == "cfc-pure":
        return CfC(3, wiring, mode="pure", intra_layer="wiring")
    return CfC(3, wiring, intra_layer="wiring")


def squared_error(model, x, y):
    return mx.mean(mx.square(model(x)[0] - y))


@pytest.fixture
def batch():
    key = mx.random.key(0)
    x = mx.random.normal((3, 5, 3), key=key)
    y = mx.random.normal((3, 5, 2), key=mx.random.key(1))
    return x, y


KINDS = ["ltc-dense", "ltc-sparse", "cfc", "cfc-pure"]


@pytest.mark.parametrize("kind", KINDS)
def test_per_sample_gains_equal_the_cells_own_gains(kind, batch):
    model = build(kind)
    x, _ = batch
    n = model.state_size
    plain, plain_state = model(x)
    ones, ones_state = adapt.run_with_gains(model, x, lambda h: None)
    # run_with_gains takes the MLX kernels; model(x) may run the native ones
    np.testing.assert_allclose(np.array(ones), np.array(plain), atol=1e-6)
    np.testing.assert_allclose(np.array(ones_state), np.array(plain_state), atol=1e-6)

    gains = np.random.default_rng(0).uniform(0.2, 2.0, (n, n)).astype(np.float32)
    model.set_synapse_gains(gains)
    static, _ = model(x)
    model.set_synapse_gains(None)
    per_sample, _ = adapt.run_with_gains(
        model, x, lambda h: mx.broadcast_to(mx.array(gains), (h.shape[0], n, n))
    )
    assert np.allclose(np.array(per_sample), np.array(static), atol=1e-5)
    assert not np.allclose(np.array(static), np.array(plain), atol=1e-3)


def test_per_sample_gains_act_on_each_sample_alone(batch):
    model = build("ltc-dense")
    x, _ = batch
    n = model.state_size
    scale = mx.array([1.0, 0.5, 2.0])[:, None, None]
    out, _ = adapt.run_with_gains(model, x, lambda h: mx.ones((3, n, n)) * scale)
    for sample, value in enumerate([1.0, 0.5, 2.0]):
        model.set_synapse_gains(np.full((n, n), value, np.float32))
        alone, _ = model(x[sample : sample + 1])
        assert np.allclose(np.array(out[sample]), np.array(alone[0]), atol=1e-5)


def test_run_with_gains_refuses_a_model_without_a_wiring(batch):
    with pytest.raises(ModelError, match="built with a wiring"):
        adapt.run_with_gains(CfC(3, 8), batch[0], lambda h: None)
    with pytest.raises(ModelError, match="holds no wired"):
        adapt.wired_cells(CfC(3, 8))


@pytest.mark.parametrize("kind", ["ltc-dense", "cfc"])
def test_growth_gradient_is_the_slope_of_switching_a_synapse_on(kind, batch):
    model = build(kind)
    wiring = model.wiring
    x, y = batch
    loss = squared_error(model, x, y).item()
    parameters = dict(tree_flatten(model.parameters()))
    polarity = np.where(np.arange(144).reshape(12, 12) % 2, 1, -1).astype(np.int8)
    slopes = adapt.growth_gradients(model, squared_error, (x, y), polarity)
    # nothing is left changed
    assert squared_error(model, x, y).item() == loss
    for key, value in tree_flatten(model.parameters()):
        assert np.array_equal(np.array(value), np.array(parameters[key]))

    usable = adapt.synapse_usage(model)
    open_pairs = np.argwhere((wiring.adjacency == 0) & usable)
    i, j = open_pairs[np.argmax(slopes[tuple(open_pairs.T)])]
    saved = model.parameters()
    switched = wiring.adjacency.copy()
    switched[i, j] = polarity[i, j]
    model.set_wiring_masks(switched)
    gains = np.ones((12, 12), np.float32)
    gains[i, j] = 1e-3
    model.set_synapse_gains(gains)
    slope = abs(squared_error(model, x, y).item() - loss) / 1e-3
    assert slope == pytest.approx(slopes[i, j], rel=0.05)
    model.update(saved)


def test_cfc_usage_is_consecutive_layers_and_optionally_within():
    wiring = AutoNCP(12, 2, seed=1)
    dense = CfC(3, wiring)
    within = CfC(3, wiring, intra_layer="wiring")
    layers = [np.asarray(ids) for ids in wiring.layers]
    expected = np.zeros((12, 12), bool)
    for before, after in itertools.pairwise(layers):
        expected[np.ix_(before, after)] = True
    assert np.array_equal(adapt.synapse_usage(dense), expected)
    for ids in layers:
        expected[np.ix_(ids, ids)] = True
    assert np.array_equal(adapt.synapse_usage(within), expected)
    assert adapt.synapse_usage(build("ltc-dense")).all()


def test_apply_wiring_keeps_trained_values_and_can_keep_every_parameter():
    model = build("ltc-dense")
    wiring = model.wiring
    old_erev = np.array(model.rnn_cell.erev)
    absent = np.argwhere(wiring.adjacency == 0)[0]
    wiring.adjacency[tuple(absent)] = -1
    assert adapt.apply_wiring(model, wiring, keep_parameters=True) == 1
    assert np.array_equal(np.array(model.rnn_cell.erev), old_erev)
    assert model.synapse_count == wiring.synapse_count
    wiring.adjacency[tuple(absent)] = 1
    adapt.apply_wiring(model)
    new_erev = np.array(model.rnn_cell.erev)
    assert new_erev[tuple(absent)] == 1.0
    changed = np.argwhere(new_erev != old_erev)
    assert changed.tolist() == [absent.tolist()]


def test_zero_new_synapses_leave_a_wired_cfc_unchanged(batch):
    model = build("cfc")
    wiring = model.wiring
    x, _ = batch
    before = np.array(model(x)[0])
    usable = adapt.synapse_usage(model)
    grow = np.argwhere((wiring.adjacency == 0) & usable)[:5]
    wiring.adjacency[tuple(grow.T)] = 1
    adapt.apply_wiring(model, new_synapses="zero")
    assert model.synapse_count == wiring.synapse_count
    assert np.allclose(np.array(model(x)[0]), before, atol=1e-6)
    with pytest.raises(ModelError, match="new_synapses"):
        adapt.apply_wiring(model, new_synapses="random")


def test_parameter_mask_has_the_structure_of_the_trainable_parameters():
    model = build("cfc")
    mask = adapt.synapse_parameter_mask(model, [0, 1])
    shapes = {k: v.shape for k, v in tree_flatten(model.trainable_parameters())}
    assert {k: v.shape for k, v in tree_flatten(mask)} == shapes
    # motor neurons 0 and 1 form the last layer: only its rows are selected
    flat = {k: np.array(v) for k, v in tree_flatten(mask)}
    last = f"rnn_cell.layer_{len(model.wiring.layers) - 1}.ff1.weight"
    assert flat[last][:2].all() and flat[last].sum() == flat[last][:2].size
    assert sum(v.sum() for k, v in flat.items() if k != last and "weight" in k) == (
        3 * flat[last][:2].size
    )
    ones = {k: mx.ones(v.shape) for k, v in flat.items()}
    masked = adapt.mask_gradients(ones, {k: mx.array(v) for k, v in flat.items()})
    assert np.array_equal(np.array(masked[last]), flat[last])


def test_parameter_mask_names_an_unknown_group():
    with pytest.raises(WiringError, match="unknown neuron group 'fast'"):
        adapt.synapse_parameter_mask(build("ltc-dense"), "fast")


def test_wiring_callbacks_forward_to_the_wirings_own_callbacks():
    calls = []

    class Recorder:
        def __getattr__(self, hook):
            return lambda *args: calls.append(hook)

    class Changing(Random):
        def training_callbacks(self, **options):
            calls.append(options)
            return [Recorder()]

    class FakeRun:
        wiring = Changing(6, 2)

    callbacks = adapt.WiringCallbacks(adapt_every=2, adapt_fraction=None)
    run = FakeRun()
    callbacks.on_train_begin(run)
    callbacks.on_epoch_end(run, 1, {})
    callbacks.on_train_end(run, {})
    assert calls == [
        {"adapt_every": 2},
        "on_train_begin",
        "on_epoch_end",
        "on_train_end",
    ]

    class StillRun:
        wiring = Random(6, 2)

    with pytest.raises(WiringError, match="does not change during training"):
        adapt.WiringCallbacks(adapt_every=2).on_train_begin(StillRun())
    adapt.WiringCallbacks().on_train_begin(StillRun())  # no options: nothing to do


def test_magnitudes_are_nan_where_a_wired_cfc_ignores_the_pair():
    model = build("cfc")
    magnitudes = adapt.synapse_magnitudes(model)
    usable = adapt.synapse_usage(model)
    assert np.isnan(magnitudes[~usable]).all()
    assert (magnitudes[usable] >= 0).all()
    layer = model.rnn_cell.layers[1]
    ids = [np.asarray(i) for i in model.wiring.layers]
    source, target = ids[0][0], ids[1][0]
    expected = np.hypot(
        np.array(layer.ff1.weight)[0, 0], np.array(layer.ff2.weight)[0, 0]
    )
    assert magnitudes[source, target] == pytest.approx(expected, rel=1e-6)
