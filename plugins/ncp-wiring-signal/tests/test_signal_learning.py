"""The signal wiring in LTC and CfC models.

The bands move the slower the coarser they are, and the wiring learns to tell
winter from summer days in the bundled ItalyPowerDemand series (67 training
series of 24 hourly loads, 2 classes).
"""

from __future__ import annotations

from itertools import pairwise

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from ncp_wiring_signal import Signal

from ncp_core.data import encode_labels, load_bundled
from ncp_core.rnn import LTC, CfC
from ncp_core.training import make_train_step

# Full-batch Adam on all 67 series. LTC: 3 ODE unfolds instead of 6 keep the
# test quick; CfC takes a smaller step because its bounded outputs make the
# loss spiky at larger ones.
TRAINING = {
    LTC: {"steps": 25, "learning_rate": 0.015, "kwargs": {"ode_unfolds": 3}},
    CfC: {"steps": 40, "learning_rate": 0.005, "kwargs": {}},
}
LOSS_RATIO = 0.5
"""Loss at the end (mean of the last 3 steps) over the loss at the first step."""


@pytest.fixture(scope="module")
def italy_power_demand() -> tuple[mx.array, mx.array]:
    data = load_bundled("italy_power_demand")
    labels, _, classes = encode_labels(data.y_train, data.y_test)
    assert len(classes) == 2 and data.X_train.shape[1:] == (24, 1)
    return mx.array(data.X_train), mx.array(labels.astype(np.int32))


def last_step_cross_entropy(model, x, y):
    logits, _ = model(x)
    return nn.losses.cross_entropy(logits, y, reduction="mean")


@pytest.mark.parametrize("cls", [LTC, CfC], ids=["ltc", "cfc"])
def test_signal_model_learns_italy_power_demand(cls, italy_power_demand):
    x, y = italy_power_demand
    setup = TRAINING[cls]
    mx.random.seed(0)
    wiring = Signal(1, num_scales=3, neurons_per_scale=5, output_neurons=2, seed=0)
    model = cls(1, wiring, return_sequences=False, **setup["kwargs"])
    optimizer = optim.Adam(learning_rate=setup["learning_rate"])
    step = make_train_step(model, optimizer, last_step_cross_entropy)

    losses = [float(step(x, y)) for _ in range(setup["steps"])]

    assert np.mean(losses[-3:]) < LOSS_RATIO * losses[0], losses
    logits, _ = model(x)
    assert float(mx.mean(mx.argmax(logits, axis=-1) == y)) > 0.85


def band_movement(cls, wiring, time_scales, **kwargs) -> np.ndarray:
    """Mean |change| of each neuron over one step of elapsed time 1."""
    shown = wiring.copy()
    shown.set_time_scales(time_scales)
    mx.random.seed(1)
    model = cls(wiring.input_dim, shown, **kwargs)
    model.update(reference_parameters(cls, wiring, **kwargs))
    rng = np.random.default_rng(5)
    x = mx.array(rng.normal(size=(4, 1, wiring.input_dim)).astype(np.float32))
    h0 = mx.array(rng.normal(scale=0.5, size=(4, wiring.units)).astype(np.float32))
    _, h1 = model(x, h0, timespans=1.0)
    if cls is CfC:
        # A CfC state is a closed-form function of the elapsed time: measure
        # h(1) - h(0+) from the same input and previous state.
        _, h0 = model(x, h0, timespans=1e-6)
    return np.abs(np.array(h1 - h0)).mean(axis=0)


def reference_parameters(cls, wiring, **kwargs):
    mx.random.seed(1)
    return cls(wiring.input_dim, wiring, **kwargs).parameters()


@pytest.mark.parametrize(
    "cls,kwargs,coarsest_over_finest",
    [(LTC, {"ode_unfolds": 1}, 0.6), (CfC, {}, 0.25)],
    ids=["ltc", "cfc"],
)
def test_signal_coarser_bands_move_less_per_step(cls, kwargs, coarsest_over_finest):
    wiring = Signal(2, num_scales=4, neurons_per_scale=12, inputs_to="all").build(2)
    scaled = band_movement(cls, wiring, wiring.time_scales, **kwargs)
    uniform = band_movement(cls, wiring, 1.0, **kwargs)

    bands = [wiring.groups[f"band_{i}"] for i in range(4)]
    means = [scaled[ids].mean() for ids in bands]
    assert means[0] > means[1] > means[2] > means[3]
    assert means[3] < coarsest_over_finest * means[0]
    # Same parameters, same start: each band's step shrinks with its τ = 2^i.
    # (In the LTC, τ multiplies the capacitance, so a neuron with strong
    # synaptic conductance slows down by less than 1/τ.)
    ratios = [scaled[ids] / uniform[ids] for ids in bands]
    np.testing.assert_allclose(ratios[0], 1.0, rtol=1e-4)
    for finer, coarser in pairwise(ratios):
        assert np.all(coarser < 1.0)
        assert np.median(coarser) < np.median(finer)
