"""Where the PyTorch reference (ncps 1.0.1) is wrong, ncp does the right thing.

Each test names the bug id of the reference notes (section 1.9).
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

from ncp_core.cells import CfCCell, LTCCell, WiredCfCCell
from ncp_core.classic import AutoNCP, FullyConnected, Random
from ncp_core.errors import CheckpointError
from ncp_core.rnn import LTC, CfC


@pytest.mark.parametrize(
    "build",
    [lambda: CfC(3, 8), lambda: LTC(3, AutoNCP(12, 2)), lambda: CfC(3, AutoNCP(12, 2))],
)
def test_s1_batched_timespans_apply_per_sample(build):
    """S1: each sample's timespans drive that sample, not a unit axis."""
    mx.random.seed(3)
    model = build()
    x = mx.random.normal((4, 5, 3))
    spans = mx.random.uniform(0.3, 2.0, (4, 5))

    y, h = model(x, timespans=spans)
    y0, h0 = model(x[:1], timespans=spans[:1])
    y_column, _ = model(x, timespans=spans[:, :, None])

    np.testing.assert_allclose(np.array(y[:1]), np.array(y0), atol=1e-6)
    np.testing.assert_allclose(np.array(h[:1]), np.array(h0), atol=1e-6)
    np.testing.assert_allclose(np.array(y_column), np.array(y), atol=1e-6)
    y_ones, _ = model(x)
    assert np.abs(np.array(y) - np.array(y_ones)).max() > 1e-3


def test_c1_single_layer_wired_cfc_outputs_the_motor_neurons():
    """C1: a FullyConnected(16, 4) CfC gives 4 outputs, and a projection fits."""
    model = CfC(8, FullyConnected(16, 4))
    projected = CfC(8, FullyConnected(16, 4), proj_size=2)
    x = mx.random.normal((2, 5, 8))

    y, h = model(x)
    y_projected, _ = projected(x)

    assert y.shape == (2, 5, 4)
    assert model.output_size == 4
    np.testing.assert_array_equal(np.array(y[:, -1]), np.array(h[:, :4]))
    assert y_projected.shape == (2, 5, 2)


def test_c2_backbone_dropout_follows_every_layer_and_is_active_in_training():
    """C2: a one-layer backbone drops units in training mode, none in eval."""
    cell = CfCCell(3, 4, backbone_layers=1, backbone_units=64, backbone_dropout=0.5)
    z = mx.random.normal((8, 7))

    cell.train()
    trained = np.array(cell.backbone(z))
    cell.eval()
    evaluated = np.array(cell.backbone(z))

    assert (trained == 0).mean() > 0.3
    assert (evaluated == 0).mean() < 0.05
    kept = trained != 0
    np.testing.assert_allclose(trained[kept], 2.0 * evaluated[kept], rtol=1e-5)


def test_c2_dropout_follows_each_of_several_layers():
    """C2: with two layers, dropout acts after the first layer too."""
    cell = CfCCell(3, 4, backbone_layers=2, backbone_units=64, backbone_dropout=0.9)
    cell.train()
    first = cell.backbone.layers[0]
    activation = cell.backbone.activation
    z = mx.random.normal((16, 7))

    after_first = cell.backbone.dropout(activation(first(z)))

    assert (np.array(after_first) == 0).mean() > 0.8


def test_c3_pure_mode_starts_with_w_tau_zero_and_a_one():
    """C3: pure mode's w_tau is initialised to 0 and A to 1."""
    cell = CfCCell(3, 5, mode="pure")

    np.testing.assert_array_equal(np.array(cell.w_tau), np.zeros((1, 5)))
    np.testing.assert_array_equal(np.array(cell.A), np.ones((1, 5)))


def test_l1_sensory_synapse_count_counts_the_sensory_synapses():
    """L1: the cells report the wiring's sensory count, not the internal one."""
    wiring = AutoNCP(16, 4)
    wiring.build(8)
    expected = int(np.count_nonzero(wiring.sensory_adjacency))

    ltc_cell = LTCCell(wiring)
    wired_cfc = WiredCfCCell(None, wiring)
    model = LTC(8, wiring)

    assert expected != wiring.synapse_count
    assert ltc_cell.sensory_synapse_count == expected
    assert wired_cfc.sensory_synapse_count == expected
    assert model.sensory_synapse_count == expected
    assert model.synapse_count == wiring.synapse_count


@pytest.mark.parametrize("kernel", ["dense", "sparse", "native"])
def test_l3_zero_elapsed_time_is_finite_and_keeps_the_state(kernel):
    """L3: elapsed time 0 gives a finite step that leaves the state unchanged."""
    wiring = AutoNCP(12, 2)
    cell = LTCCell(wiring, in_features=3, kernel=kernel)
    x = mx.random.normal((2, 3))
    h = mx.random.normal((2, 12)) * 0.3

    y, new = cell(x, h, 0.0)
    _, per_sample = cell(x, h, mx.array([0.0, 1.0]))

    assert np.isfinite(np.array(y)).all()
    np.testing.assert_allclose(np.array(new), np.array(h), atol=1e-4)
    np.testing.assert_allclose(np.array(per_sample[0]), np.array(h[0]), atol=1e-4)
    assert np.abs(np.array(per_sample[1] - h[1])).max() > 1e-3


def test_l4_masks_are_not_parameters_and_are_never_saved(tmp_path):
    """L4: masks stay out of parameters() and of saved weights."""
    model = LTC(4, FullyConnected(8))
    path = tmp_path / "w.safetensors"

    model.save_weights(str(path))

    names = [name for name, _ in tree_flatten(model.parameters())]
    saved = list(mx.load(str(path)))
    assert not any("mask" in name for name in names + saved)
    assert not any("gains" in name for name in names + saved)
    assert "rnn_cell._sparsity_mask" in dict(tree_flatten(model.state))


def test_l4_loading_weights_of_another_wiring_keeps_this_models_masks(tmp_path):
    """L4: weights of a same-size model with another wiring leave masks intact."""
    fully = LTC(4, FullyConnected(8))
    sparse = LTC(4, Random(8, sparsity_level=0.5))
    mask_before = np.array(sparse.rnn_cell._sparsity_mask)
    path = tmp_path / "fully.safetensors"
    fully.save_weights(str(path))

    sparse.load_weights(str(path))

    np.testing.assert_array_equal(np.array(sparse.rnn_cell._sparsity_mask), mask_before)
    assert mask_before.sum() == 32
    x = mx.random.normal((2, 3, 4))
    assert np.abs(np.array(sparse(x)[0] - fully(x)[0])).max() > 1e-4


def test_l4_loading_weights_of_another_size_is_a_clear_error(tmp_path):
    """L4: a wiring of another size cannot be loaded, and the error says why."""
    small = LTC(4, AutoNCP(12, 2))
    large = LTC(4, AutoNCP(16, 2))
    path = tmp_path / "small.safetensors"
    small.save_weights(str(path))

    with pytest.raises(CheckpointError, match="another wiring"):
        large.load_weights(str(path))


def test_l4_weights_naming_a_mask_are_refused():
    """L4: a weights list that carries a mask is refused, not loaded."""
    model = LTC(4, FullyConnected(8))
    weights = list(tree_flatten(model.parameters()))
    weights.append(("rnn_cell._sparsity_mask", mx.zeros((8, 8))))

    with pytest.raises(CheckpointError, match="never loaded"):
        model.load_weights(weights)

    assert float(model.rnn_cell._sparsity_mask.sum()) == 64


def test_w4_a_wiring_shared_by_two_models_keeps_its_synapses():
    """W4: building models on one wiring does not add synapses again."""
    wiring = AutoNCP(16, 4)
    wiring.build(8)
    synapses = wiring.synapse_count
    sensory = wiring.sensory_adjacency.copy()

    first = LTC(8, wiring)
    second = CfC(8, wiring)

    assert wiring.synapse_count == synapses
    np.testing.assert_array_equal(wiring.sensory_adjacency, sensory)
    assert first.synapse_count == second.synapse_count == synapses


def test_l2_sequence_ltc_exposes_weight_constraints():
    """L2: the LTC module offers apply_weight_constraints like its cell."""
    model = LTC(3, AutoNCP(12, 2), implicit_param_constraints=False)
    model.rnn_cell.w = -mx.ones_like(model.rnn_cell.w)

    model.apply_weight_constraints()

    assert float(model.rnn_cell.w.min()) == 0.0


def test_c4_intra_layer_wiring_option_uses_the_wirings_recurrent_synapses():
    """C4: intra_layer="wiring" masks the within-layer block by the wiring."""
    wiring = AutoNCP(16, 3)
    wiring.build(4)
    cell = WiredCfCCell(None, wiring, intra_layer="wiring")
    command = wiring.layers[1]
    inter = wiring.layers[0]
    layer = cell.layers[1]

    mask = np.array(layer._sparsity_mask)

    expected_intra = np.abs(wiring.adjacency[np.ix_(command, command)]).T
    np.testing.assert_array_equal(mask[:, inter.size :], expected_intra)
    dense = WiredCfCCell(None, wiring)
    assert np.array(dense.layers[1]._sparsity_mask)[:, inter.size :].min() == 1
