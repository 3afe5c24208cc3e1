"""The multiscale and hierarchical wirings in LTC and CfC models.

The cells honour the multiscale time scales (slow neurons move less per step),
and both wirings learn to tell winter from summer days in the bundled
ItalyPowerDemand series (67 training series of 24 hourly loads, 2 classes).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from ncp_wiring_multiscale import Hierarchical, MultiScale

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
    assert len(classes) == 2
    return mx.array(data.X_train), mx.array(labels.astype(np.int32))


def last_step_cross_entropy(model, x, y):
    logits, _ = model(x)
    return nn.losses.cross_entropy(logits, y, reduction="mean")


def train(model, x, y, steps: int, learning_rate: float) -> list[float]:
    optimizer = optim.Adam(learning_rate=learning_rate)
    step = make_train_step(model, optimizer, last_step_cross_entropy)
    return [float(step(x, y)) for _ in range(steps)]


def learns(cls, wiring, data) -> tuple[list[float], float]:
    """Train a classifier whose output neurons are the two class logits."""
    x, y = data
    setup = TRAINING[cls]
    mx.random.seed(0)
    model = cls(1, wiring, return_sequences=False, **setup["kwargs"])
    losses = train(model, x, y, setup["steps"], setup["learning_rate"])
    logits, _ = model(x)
    accuracy = float(mx.mean(mx.argmax(logits, axis=-1) == y))
    return losses, accuracy


@pytest.mark.parametrize("cls", [LTC, CfC], ids=["ltc", "cfc"])
def test_multiscale_model_learns_italy_power_demand(cls, italy_power_demand):
    wiring = MultiScale(8, 6, 4, output_neurons=2, seed=0)
    losses, accuracy = learns(cls, wiring, italy_power_demand)
    assert np.mean(losses[-3:]) < LOSS_RATIO * losses[0], losses
    assert accuracy > 0.85


@pytest.mark.parametrize("cls", [LTC, CfC], ids=["ltc", "cfc"])
def test_hierarchical_model_learns_italy_power_demand(cls, italy_power_demand):
    wiring = Hierarchical([8, 6, 2], seed=0)
    losses, accuracy = learns(cls, wiring, italy_power_demand)
    assert np.mean(losses[-3:]) < LOSS_RATIO * losses[0], losses
    assert accuracy > 0.85


def twins(cls, wiring, time_scales, **kwargs):
    """Two models with equal parameters; the second's wiring has other time scales."""
    other = wiring.copy()
    other.set_time_scales(time_scales)
    mx.random.seed(1)
    model = cls(wiring.input_dim, wiring, **kwargs)
    twin = cls(wiring.input_dim, other, **kwargs)
    twin.update(model.parameters())
    return model, twin


def start(wiring) -> tuple[mx.array, mx.array]:
    """One input step ``(B, 1, S)`` and an initial state ``(B, N)``."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 1, wiring.input_dim)).astype(np.float32)
    h0 = rng.normal(scale=0.5, size=(4, wiring.units)).astype(np.float32)
    return mx.array(x), mx.array(h0)


def ltc_movement(model, x, h0) -> np.ndarray:
    _, h1 = model(x, h0, timespans=1.0)
    return np.abs(np.array(h1 - h0)).mean(axis=0)


def cfc_movement(model, x, h0) -> np.ndarray:
    # A CfC state is a closed-form function of the elapsed time; its movement
    # over one step is h(1) - h(0+), from the same input and previous state.
    _, h1 = model(x, h0, timespans=1.0)
    _, h_start = model(x, h0, timespans=1e-6)
    return np.abs(np.array(h1 - h_start)).mean(axis=0)


def group_means(wiring, values: np.ndarray) -> dict[str, float]:
    return {
        g: float(values[wiring.groups[g]].mean()) for g in ("fast", "medium", "slow")
    }


def test_ltc_slow_neurons_move_less_per_step_than_fast_ones():
    wiring = MultiScale(20, 20, 20, 2, seed=1).build(3)
    model, uniform = twins(LTC, wiring, 1.0)
    x, h0 = start(wiring)
    moved = group_means(wiring, ltc_movement(model, x, h0))
    assert moved["slow"] < moved["medium"] < moved["fast"]
    assert moved["slow"] < 0.4 * moved["fast"]

    # With one ODE unfold every neuron sees the same presynaptic state in both
    # models, so each neuron's step shrinks by (cm/dt + D) / (τ cm/dt + D).
    model, uniform = twins(LTC, wiring, 1.0, ode_unfolds=1)
    ratio = ltc_movement(model, x, h0) / ltc_movement(uniform, x, h0)
    fast, medium, slow = (ratio[wiring.groups[g]] for g in ("fast", "medium", "slow"))
    np.testing.assert_allclose(fast, 1.0, rtol=1e-5)
    assert np.all((medium >= 1 / 4) & (medium < 1.0))
    assert np.all((slow >= 1 / 16) & (slow < 1.0))
    assert slow.max() < medium.min()


def test_cfc_slow_neurons_move_less_per_step_than_fast_ones():
    wiring = MultiScale(20, 20, 20, 2, seed=1).build(3)
    model, uniform = twins(CfC, wiring, 1.0)
    x, h0 = start(wiring)
    movement = cfc_movement(model, x, h0)
    moved = group_means(wiring, movement)
    assert moved["slow"] < 0.2 * moved["fast"]
    assert moved["medium"] < 0.5 * moved["fast"]

    ratio = movement / cfc_movement(uniform, x, h0)
    fast, medium, slow = (ratio[wiring.groups[g]] for g in ("fast", "medium", "slow"))
    np.testing.assert_allclose(fast, 1.0, rtol=1e-4)
    assert np.all(medium < 1.0) and np.all(slow < 1.0)
    assert slow.max() < medium.min()


@pytest.mark.parametrize("cls", [LTC, CfC], ids=["ltc", "cfc"])
def test_time_scale_tau_makes_a_step_of_tau_dt_look_like_dt(cls):
    wiring = MultiScale(6, 5, 4, 2, time_scales=[4, 4, 4], seed=2).build(3)
    model, plain = twins(cls, wiring, 1.0)
    x, h0 = start(wiring)
    _, slow_state = model(x, h0, timespans=4.0)
    _, plain_state = plain(x, h0, timespans=1.0)
    np.testing.assert_allclose(np.array(slow_state), np.array(plain_state), atol=1e-5)
    _, unscaled = model(x, h0, timespans=1.0)
    assert not np.allclose(np.array(unscaled), np.array(plain_state), atol=1e-3)


def test_wired_cfc_sees_the_hierarchical_layers_with_outputs_last():
    wiring = Hierarchical([5, 4, 3], seed=0)
    model = CfC(2, wiring)
    assert model.rnn_cell.layer_sizes == [5, 4, 3]
    y, state = model(mx.zeros((1, 3, 2)))
    assert y.shape == (1, 3, 3) and state.shape == (1, 12)
    np.testing.assert_allclose(np.array(y[:, -1]), np.array(state[:, :3]), atol=1e-6)
