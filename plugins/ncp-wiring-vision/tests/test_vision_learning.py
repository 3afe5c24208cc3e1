"""The ``vision`` wiring learns handwritten digits with LTC and with CfC cells.

The data are the 8×8 handwritten digits that scikit-learn ships (1797 images
of 10 classes, read offline from its package), scaled to [0, 1]. Each image
is shown as the same frame for 3 time steps, flattened in (row, col,
channel) order; the class is read from the last step. Chance accuracy is 0.1
and the initial cross-entropy about ``ln 10 ≈ 2.30``.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from ncp_wiring_vision import Vision

from ncp_core.rnn import LTC, CfC
from ncp_core.training import make_train_step

datasets = pytest.importorskip(
    "sklearn.datasets", reason="the digits come with scikit-learn (a dev dependency)"
)

FRAMES = 3


@pytest.fixture(scope="module")
def digits():
    bunch = datasets.load_digits()
    images = (bunch.images / 16.0).astype(np.float32)  # (1797, 8, 8)
    return images, bunch.target.astype(np.int32)


def as_frames(images: np.ndarray, frames: int) -> np.ndarray:
    """``(n, H, W)`` images → ``(n, frames, H·W)``, the frame repeated."""
    flat = images.reshape(len(images), 1, -1)
    return np.repeat(flat, frames, axis=1)


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


def test_vision_ltc_learns_8x8_digits(digits):
    images, labels = digits
    x, y = as_frames(images[:128], FRAMES), labels[:128]
    x_test, y_test = as_frames(images[1000:1500], FRAMES), labels[1000:1500]
    mx.random.seed(0)
    wiring = Vision(8, 8, 1, layer_channels=[4, 8], seed=0)
    model = LTC(64, wiring, return_sequences=False, ode_unfolds=3)

    losses = train_classifier(model, x, y, steps=20, learning_rate=0.02)
    assert losses[0] > 2.0
    assert np.mean(losses[-3:]) < 0.25 * losses[0], losses
    assert accuracy(model, x_test, y_test) > 0.5  # unseen digits, chance is 0.1


def test_vision_cfc_learns_8x8_digits(digits):
    images, labels = digits
    x, y = as_frames(images[:128], FRAMES), labels[:128]
    x_test, y_test = as_frames(images[1000:1500], FRAMES), labels[1000:1500]
    mx.random.seed(0)
    wiring = Vision(8, 8, 1, layer_channels=[4, 8], seed=0)
    model = CfC(64, wiring, return_sequences=False, intra_layer="wiring")

    losses = train_classifier(model, x, y, steps=30, learning_rate=0.01)
    assert losses[0] > 2.0
    assert np.mean(losses[-3:]) < 0.5 * losses[0], losses
    assert accuracy(model, x_test, y_test) > 0.5


def test_vision_ltc_trains_at_28x28_with_the_sparse_kernel(digits):
    images, labels = digits
    # the 8×8 digits, each pixel a 3×3 block, padded to 28×28 like MNIST
    large = np.pad(
        np.kron(images[:32], np.ones((1, 3, 3), np.float32)), ((0, 0), (2, 2), (2, 2))
    )
    x, y = as_frames(large, 2), labels[:32]
    mx.random.seed(0)
    wiring = Vision(28, 28, 1, layer_channels=[4, 8], seed=0)  # 14×14×4, 7×7×8
    model = LTC(784, wiring, return_sequences=False, ode_unfolds=3, kernel="sparse")

    assert model.kernel == "sparse"
    losses = train_classifier(model, x, y, steps=6, learning_rate=0.02)
    assert losses[-1] < 0.8 * losses[0], losses
