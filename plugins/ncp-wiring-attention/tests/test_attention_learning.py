"""Both attention wirings learn ItalyPowerDemand with LTC and with CfC cells.

ItalyPowerDemand (UCR archive, bundled with ncp-core): 24 hourly electricity
demand values per day, to classify as a winter or a summer day; 67 training
and 1029 test series. Chance accuracy is 0.5 and the initial cross-entropy
about ``ln 2 ≈ 0.69``.

For ``cross_attention`` the main features are the hour of the day (its sine
and cosine) and the context is the demand and its change since the previous
hour: the hour asks, the demand answers.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from ncp_wiring_attention import Attention, CrossAttention

from ncp_core.data import load_bundled
from ncp_core.rnn import LTC, CfC
from ncp_core.training import make_train_step


@pytest.fixture(scope="module")
def italy():
    data = load_bundled("italy_power_demand")
    classes = np.unique(data.y_train)
    return (
        data.X_train.astype(np.float32),
        np.searchsorted(classes, data.y_train),
        data.X_test.astype(np.float32),
        np.searchsorted(classes, data.y_test),
    )


def hour_and_demand(series: np.ndarray) -> np.ndarray:
    """``(n, 24, 1)`` demand → ``(n, 24, 4)``: [sin hour, cos hour | demand,
    change], the context being the last two columns."""
    n, length, _ = series.shape
    angle = 2 * np.pi * np.arange(length) / length
    hour = np.broadcast_to(np.stack([np.sin(angle), np.cos(angle)], -1), (n, length, 2))
    demand = series[..., 0]
    change = np.diff(demand, axis=1, prepend=demand[:, :1])
    return np.concatenate([hour, demand[..., None], change[..., None]], -1).astype(
        np.float32
    )


def train_classifier(model, x, y, steps: int, learning_rate: float) -> list[float]:
    def loss_fn(model, x, y):
        logits, _ = model(x)
        return nn.losses.cross_entropy(logits, y, reduction="mean")

    step = make_train_step(model, optim.Adam(learning_rate=learning_rate), loss_fn)
    x, y = mx.array(x), mx.array(y)
    return [step(x, y).item() for _ in range(steps)]


def accuracy(model, x, y) -> float:
    logits, _ = model(mx.array(x))
    return float(np.mean(np.array(mx.argmax(logits, axis=-1)) == y))


def attention_wiring() -> Attention:
    return Attention(hidden_size=8, num_heads=2, ff_size=8, output_size=2, seed=0)


def cross_attention_wiring() -> CrossAttention:
    return CrossAttention(
        query_size=8,
        key_size=2,
        value_size=8,
        num_heads=2,
        output_size=2,
        main_size=2,
        seed=0,
    )


def test_attention_ltc_learns_italy_power_demand(italy):
    x, y, x_test, y_test = italy
    mx.random.seed(0)
    model = LTC(1, attention_wiring(), return_sequences=False, ode_unfolds=3)

    losses = train_classifier(model, x, y, steps=20, learning_rate=0.02)
    assert losses[0] > 0.6
    assert np.mean(losses[-3:]) < 0.5 * losses[0], losses
    assert accuracy(model, x_test, y_test) > 0.8


def test_attention_cfc_learns_italy_power_demand(italy):
    x, y, x_test, y_test = italy
    mx.random.seed(0)
    model = CfC(1, attention_wiring(), return_sequences=False, intra_layer="wiring")

    losses = train_classifier(model, x, y, steps=30, learning_rate=0.005)
    assert losses[0] > 0.6
    assert np.mean(losses[-3:]) < 0.5 * losses[0], losses
    assert accuracy(model, x_test, y_test) > 0.8


def test_cross_attention_ltc_learns_italy_power_demand_by_hour(italy):
    x, y, x_test, y_test = italy
    x, x_test = hour_and_demand(x), hour_and_demand(x_test)
    mx.random.seed(0)
    model = LTC(4, cross_attention_wiring(), return_sequences=False, ode_unfolds=3)

    losses = train_classifier(model, x, y, steps=20, learning_rate=0.02)
    assert losses[0] > 0.6
    assert np.mean(losses[-3:]) < 0.5 * losses[0], losses
    assert accuracy(model, x_test, y_test) > 0.8


def test_cross_attention_cfc_learns_italy_power_demand_by_hour(italy):
    x, y, x_test, y_test = italy
    x, x_test = hour_and_demand(x), hour_and_demand(x_test)
    mx.random.seed(0)
    model = CfC(
        4, cross_attention_wiring(), return_sequences=False, intra_layer="wiring"
    )

    losses = train_classifier(model, x, y, steps=30, learning_rate=0.005)
    assert losses[0] > 0.6
    assert np.mean(losses[-3:]) < 0.5 * losses[0], losses
    assert accuracy(model, x_test, y_test) > 0.8
