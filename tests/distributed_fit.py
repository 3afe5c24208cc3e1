"""One rank of the training-loop tests: ``ncp_core.train.fit`` on a bundled
dataset, printing this rank's view of the run as JSON.

    python tests/distributed_fit.py OUT [--interrupt] [--fail]

``--interrupt`` stops after the first epoch and resumes from the checkpoint,
as a job cut by a time limit would. ``--fail`` makes a callback raise on
rank 1 after the second step.
"""

from __future__ import annotations

import json
import sys

from ncp_core.train import Callback, fit, resume

DATA = "italy_power_demand"
OPTIONS = {
    "wiring_params": {"units": 16},
    "epochs": 3,
    "batch_size": 16,  # 57 training series: the last batch of 9 splits 5 + 4
    "lr": 0.005,
    "seed": 3,
    "plots": False,
}


class FailOnRankOne(Callback):
    def on_step_end(self, run, step, logs):
        if not run.is_writer and step == 2:
            raise RuntimeError("callback failed on purpose")


def main(out: str, interrupt: bool, fail: bool) -> None:
    callbacks = [FailOnRankOne()] if fail else []
    if interrupt:
        run = fit(DATA, out=out, stop_after_epochs=1, **OPTIONS)
        run = resume(out)
    else:
        run = fit(DATA, out=out, callbacks=callbacks, **OPTIONS)
    rows = [
        {k: row.get(k) for k in ("epoch", "loss", "accuracy", "val_loss", "best")}
        for row in run.history
    ]
    print(json.dumps({"writer": run.is_writer, "test": run.metrics, "history": rows}))


if __name__ == "__main__":
    main(sys.argv[1], "--interrupt" in sys.argv[2:], "--fail" in sys.argv[2:])
