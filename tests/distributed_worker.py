"""One rank of the distributed tests: trains a small wired LTC with the
compiled ``make_train_step`` and saves its final weights.

    python tests/distributed_worker.py OUT [MODE]

Run alone it is the single-process reference; run under ``MLX_RANK`` and
``MLX_HOSTFILE`` (or ``mlx.launch``) each rank takes its slice of every
global batch. MODE makes rank 1 misbehave at the third step:

- ``train``: nobody fails (default);
- ``raise``: rank 1 raises ``ValueError``;
- ``exit``: rank 1 dies with ``os._exit(7)``;
- ``hang``: rank 1 stops answering for ``NCP_TEST_HANG`` seconds, then exits.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten

from ncp_core.classic import AutoNCP
from ncp_core.distributed import init_from_env
from ncp_core.rnn import LTC
from ncp_core.training import make_train_step

SERIES, LENGTH, INPUTS, OUTPUTS = 22, 6, 3, 2
BATCH = 7  # 22 = 7 + 7 + 7 + 1: uneven shards and one rank with none
EPOCHS = 2
SEED = 5


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 1.0, (SERIES, LENGTH, INPUTS)).astype(np.float32)
    y = np.tanh(np.cumsum(x[:, :, :OUTPUTS], axis=1) / 3).astype(np.float32)
    return x, y


def _loss(model, x, y, share):
    readout, _ = model(x)
    return share * mx.mean(mx.square(readout - y))


def main(out: Path, mode: str) -> None:
    dp = init_from_env()
    mx.random.seed(SEED)
    model = LTC(INPUTS, AutoNCP(10, OUTPUTS, seed=3), kernel="sparse")
    mx.eval(model.parameters())
    model.update(dp.broadcast(model.parameters()))
    optimizer = optim.Adam(learning_rate=0.02)
    step = make_train_step(model, optimizer, _loss, average_gradients=dp.sum_gradients)
    x, y = _data()

    number = 0
    for epoch in range(EPOCHS):
        order = np.random.default_rng([SEED, epoch]).permutation(SERIES)
        for start in range(0, SERIES, BATCH):
            batch = order[start : start + BATCH]
            number += 1
            with dp.guard(f"step {number}"):
                if dp.rank == 1 and number == 3:
                    _misbehave(mode)
                index = dp.shard(batch)
                share = dp.share(index.size, batch.size)
                if index.size == 0:  # a stand-in sample keeps the collectives
                    index = batch[:1]
            with dp.waiting(f"step {number}"):
                step(mx.array(x[index]), mx.array(y[index]), mx.array(share))

    weights = {k: np.array(v) for k, v in tree_flatten(model.parameters())}
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / f"rank{dp.rank}-of-{dp.size}.npz", steps=number, **weights)
    print(f"rank {dp.rank} of {dp.size}: {number} steps")


def _misbehave(mode: str) -> None:
    if mode == "raise":
        raise ValueError("this rank was told to fail")
    if mode == "exit":
        os._exit(7)
    if mode == "hang":
        time.sleep(float(os.environ.get("NCP_TEST_HANG", "30")))
        os._exit(0)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "train")
