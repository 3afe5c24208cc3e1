"""Meta-learning wiring for ncp: fast neurons adapt per task, slow ones across.

``meta`` splits the neurons into a fast group, adapted to each task, and a
slow group, meta-learned across tasks, which modulates the fast one.
:class:`FirstOrderMAML` adapts only the synapses into the fast group in its
inner loop and everything in its outer loop; :func:`sine_task` draws tasks
of the classic sine-wave few-shot regression benchmark.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ncp_core.hookspecs import hookimpl
from ncp_wiring_meta._wiring import Meta

__all__ = ["FirstOrderMAML", "Meta", "ncp_register_wirings", "sine_task", "sine_tasks"]


def __getattr__(name: str) -> Any:
    # The learning helpers need MLX; listing the wirings does not.
    if name in ("FirstOrderMAML", "sine_task", "sine_tasks"):
        from ncp_wiring_meta import _learning

        return getattr(_learning, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def ncp_register_wirings(register: Callable[..., Any]) -> None:
    register(Meta)
