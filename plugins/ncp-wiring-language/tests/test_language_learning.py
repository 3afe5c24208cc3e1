"""The ``language`` wiring learns next-character prediction, LTC and CfC.

The text is Shakespeare's Sonnet 18 (public domain, ``data/text.txt``, 621
characters), lower-cased: 31 distinct characters. Sixteen windows of 24
characters are the batch; the target at every step is the next character.
A model that only knew the letter frequencies would reach the text's unigram
entropy (about 2.95 nats); the tests ask for less, so the model must use the
characters before.
"""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from ncp_wiring_language import Language

from ncp_core.rnn import LTC, CfC
from ncp_core.training import make_train_step

WINDOW = 24
BATCH = 16


@pytest.fixture(scope="module")
def sonnet():
    text = (Path(__file__).parent / "data" / "text.txt").read_text(encoding="utf-8")
    text = text.lower()
    vocab = sorted(set(text))
    ids = np.array([vocab.index(ch) for ch in text], dtype=np.int32)
    starts = np.linspace(0, len(ids) - WINDOW - 1, BATCH).astype(int)
    x = np.stack([ids[s : s + WINDOW] for s in starts])
    y = np.stack([ids[s + 1 : s + WINDOW + 1] for s in starts])
    counts = np.bincount(ids)
    frequencies = counts[counts > 0] / len(ids)
    unigram_entropy = float(-(frequencies * np.log(frequencies)).sum())
    return len(vocab), x, y, unigram_entropy


class CharModel(nn.Module):
    """Token ids ``(B, L)`` → next-token logits ``(B, L, V)``."""

    def __init__(self, wiring: Language, rnn: type, **options) -> None:
        super().__init__()
        self.encoder = wiring.token_encoder(max_length=WINDOW)
        self.rnn = rnn(wiring.embed_dim, wiring, **options)

    def __call__(self, tokens: mx.array) -> mx.array:
        logits, _ = self.rnn(self.encoder(tokens))
        return logits


def train(model, x, y, steps: int, learning_rate: float) -> list[float]:
    def loss_fn(model, x, y):
        return nn.losses.cross_entropy(model(x), y, reduction="mean")

    step = make_train_step(model, optim.Adam(learning_rate=learning_rate), loss_fn)
    x, y = mx.array(x), mx.array(y)
    return [step(x, y).item() for _ in range(steps)]


def wiring_for(vocab_size: int) -> Language:
    return Language(
        vocab_size, hidden_size=16, num_layers=2, num_heads=4, embed_dim=8, seed=0
    )


def test_language_sonnet_is_the_bundled_public_domain_text(sonnet):
    vocab_size, x, y, entropy = sonnet

    assert vocab_size == 31
    assert x.shape == y.shape == (BATCH, WINDOW)
    assert (x[:, 1:] == y[:, :-1]).all()  # targets are the inputs shifted by one
    assert 2.9 < entropy < 3.0


def test_language_ltc_learns_next_character(sonnet):
    vocab_size, x, y, entropy = sonnet
    mx.random.seed(0)
    model = CharModel(wiring_for(vocab_size), LTC, ode_unfolds=3)

    losses = train(model, x, y, steps=30, learning_rate=0.02)
    assert losses[0] > 0.95 * np.log(vocab_size)  # starts near uniform
    assert np.mean(losses[-3:]) < 0.9 * entropy, losses


def test_language_cfc_learns_next_character(sonnet):
    vocab_size, x, y, entropy = sonnet
    mx.random.seed(0)
    model = CharModel(wiring_for(vocab_size), CfC, intra_layer="wiring")

    losses = train(model, x, y, steps=60, learning_rate=0.01)
    assert losses[0] > 0.95 * np.log(vocab_size)
    assert np.mean(losses[-3:]) < 0.8 * entropy, losses
