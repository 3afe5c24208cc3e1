"""Drawing of the ``signal`` wiring for the docs."""

from __future__ import annotations

from pathlib import Path

from _draw_multiscale import save_drawing


def draw(out_dir: Path) -> None:
    from ncp_wiring_signal import Signal

    signal = Signal(
        input_size=2, num_scales=3, neurons_per_scale=4, output_neurons=2, seed=1
    ).build(2)
    # One column per band, finest first, so the cascade reads left to right.
    save_drawing(
        signal,
        [*(f"band_{i}" for i in range(3)), "motor"],
        Path(out_dir) / "signal.png",
    )
