"""One rank of the training-loop tests: ``ncp_core.train.fit`` on a bundled
dataset, printing this rank's view of the run as JSON.

    python tests/distributed_fit.py OUT [--interrupt]

``--interrupt`` stops after the first epoch and resumes from the checkpoint,
as a job cut by a time limit would.
"""

from __future__ import annotations

import json
import sys

from ncp_core.train import fit, resume

DATA = "italy_power_demand"
OPTIONS = {
    "wiring_params": {"units": 12},
    "epochs": 3,
    "batch_size": 16,  # 57 training series: the last batch of 9 splits 5 + 4
    "seed": 3,
    "plots": False,
}


def main(out: str, interrupt: bool) -> None:
    if interrupt:
        run = fit(DATA, out=out, stop_after_epochs=1, **OPTIONS)
        run = resume(out)
    else:
        run = fit(DATA, out=out, **OPTIONS)
    rows = [
        {k: row.get(k) for k in ("epoch", "loss", "accuracy", "val_loss", "best")}
        for row in run.history
    ]
    print(json.dumps({"writer": run.is_writer, "test": run.metrics, "history": rows}))


if __name__ == "__main__":
    main(sys.argv[1], "--interrupt" in sys.argv[2:])
