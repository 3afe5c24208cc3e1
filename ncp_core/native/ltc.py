"""The LTC sequence on the native CPU kernel (``ltc.c``), as an MLX function.

:func:`ltc_sequence` runs the sensory drive and the ``K``-unfold ODE of every
step in one C call and differentiates through a second one; everything around
it (input and output mappings, softplus constraints, the gather of synapse
parameters from the dense ``(P, N)`` matrices, gains and time scales) stays
in MLX, so gradients reach the stored parameters as with the MLX kernels.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import numpy as np

from ncp_core import native

__all__ = ["SynapseList", "calls", "ltc_sequence", "synapse_list"]

_int = ctypes.c_int
_ptr = ctypes.c_void_p

_calls = {"forward": 0, "backward": 0}


def calls() -> dict[str, int]:
    """How many native forward and backward calls ran (for tests and reports)."""
    return dict(_calls)


@dataclass(frozen=True)
class SynapseList:
    """Synapses sorted by target: ``ptr (N+1)`` offsets into ``src (E)``, and
    ``flat (E)`` the index ``src · N + target`` into a ``(P, N)`` matrix."""

    ptr: np.ndarray
    src: np.ndarray
    flat: mx.array
    count: int


def synapse_list(polarity: np.ndarray) -> SynapseList:
    """The synapses of a ``(P, N)`` polarity matrix, grouped by target."""
    sources, targets = np.nonzero(np.asarray(polarity).T != 0)[::-1]
    # np.nonzero of the transpose walks targets in order, sources within
    order = np.lexsort((sources, targets))
    sources, targets = sources[order], targets[order]
    n = polarity.shape[1]
    ptr = np.zeros(n + 1, np.int32)
    np.cumsum(np.bincount(targets, minlength=n), out=ptr[1:])
    flat = (sources * n + targets).astype(np.int32)
    return SynapseList(ptr, sources.astype(np.int32), mx.array(flat), int(flat.size))


def _library() -> Any:
    library = native.load("ltc")
    if library is None:
        return None
    if not getattr(library, "_ncp_typed", False):
        library.ncp_ltc_forward.restype = None
        library.ncp_ltc_forward.argtypes = [_int] * 6 + [_ptr] * 19 + [
            ctypes.c_float
        ] + [_ptr] * 3
        library.ncp_ltc_backward.restype = None
        library.ncp_ltc_backward.argtypes = [_int] * 6 + [_ptr] * 31
        library._ncp_typed = True
    return library


def available() -> bool:
    """Whether the native LTC kernel is enabled and builds here."""
    return _library() is not None


def _buffers(*arrays: mx.array) -> list[np.ndarray]:
    return [native.as_buffer(a) for a in arrays]


def _make_function(
    recurrent: SynapseList, sensory: SynapseList, unfolds: int, epsilon: float
) -> Any:
    """The custom function for one wiring layout (its index arrays are constants)."""
    library = _library()
    rec_ptr, rec_src = recurrent.ptr, recurrent.src
    sen_ptr, sen_src = sensory.ptr, sensory.src
    p = native.pointer

    @mx.custom_function
    def sequence(
        x: mx.array,
        u0: mx.array,
        cm: mx.array,
        dt: mx.array,
        keep: mx.array,
        gleak: mx.array,
        vleak: mx.array,
        w: mx.array,
        s: mx.array,
        mu: mx.array,
        erev: mx.array,
        sw: mx.array,
        ss: mx.array,
        smu: mx.array,
        serev: mx.array,
    ) -> tuple[mx.array, mx.array, mx.array]:
        length, features, batch = x.shape
        n = u0.shape[0]
        xb, u0b, cmb, dtb, glb, vlb = _buffers(x, u0, cm, dt, gleak, vleak)
        keepb = None if keep.size == 0 else native.as_buffer(keep, np.uint8)
        wb, sb, mub, eb, swb, ssb, smub, seb = _buffers(
            w, s, mu, erev, sw, ss, smu, serev
        )
        states = np.empty((length, n, batch), np.float32)
        V = np.empty((length, unfolds + 1, n, batch), np.float32)
        D = np.empty((length, unfolds, n, batch), np.float32)
        library.ncp_ltc_forward(
            batch, length, n, features, unfolds, native.num_threads(),
            p(xb), p(u0b), p(cmb), p(dtb), p(glb), p(vlb), p(keepb),
            p(rec_ptr), p(rec_src), p(wb), p(sb), p(mub), p(eb),
            p(sen_ptr), p(sen_src), p(swb), p(ssb), p(smub), p(seb),
            epsilon, p(states), p(V), p(D),
        )  # fmt: skip
        _calls["forward"] += 1
        return mx.array(states), mx.array(V), mx.array(D)

    @sequence.vjp
    def sequence_vjp(primals: Any, cotangents: Any, outputs: Any) -> Any:
        x, u0, cm, dt, keep, gleak, vleak, w, s, mu, erev, sw, ss, smu, serev = (
            primals
        )
        length, features, batch = x.shape
        n = u0.shape[0]
        xb, cmb, dtb, glb, vlb = _buffers(x, cm, dt, gleak, vleak)
        keepb = None if keep.size == 0 else native.as_buffer(keep, np.uint8)
        wb, sb, mub, eb, swb, ssb, smub, seb = _buffers(
            w, s, mu, erev, sw, ss, smu, serev
        )
        Vb, Db, gsb = _buffers(outputs[1], outputs[2], cotangents[0])
        gx = np.empty_like(xb)
        gu0 = np.empty((n, batch), np.float32)
        gcm, ggl, gvl = (np.empty(n, np.float32) for _ in range(3))
        grads = [np.empty(recurrent.count, np.float32) for _ in range(4)]
        sgrads = [np.empty(sensory.count, np.float32) for _ in range(4)]
        library.ncp_ltc_backward(
            batch, length, n, features, unfolds, native.num_threads(),
            p(xb), p(cmb), p(dtb), p(glb), p(vlb), p(keepb),
            p(rec_ptr), p(rec_src), p(wb), p(sb), p(mub), p(eb),
            p(sen_ptr), p(sen_src), p(swb), p(ssb), p(smub), p(seb),
            p(Vb), p(Db), p(gsb), p(gx), p(gu0), p(gcm), p(ggl), p(gvl),
            *(p(a) for a in grads), *(p(a) for a in sgrads),
        )  # fmt: skip
        _calls["backward"] += 1
        out = [mx.array(a) for a in (gx, gu0, gcm)]
        out += [mx.zeros_like(dt), mx.zeros_like(keep)]
        out += [mx.array(a) for a in (ggl, gvl, *grads, *sgrads)]
        return tuple(out)

    return sequence


_FUNCTIONS: dict[tuple[int, int, int, float], tuple[Any, Any, Any]] = {}


def ltc_sequence(
    recurrent: SynapseList,
    sensory: SynapseList,
    x: mx.array,
    u0: mx.array,
    cm: mx.array,
    dt: mx.array,
    keep: mx.array | None,
    gleak: mx.array,
    vleak: mx.array,
    synapses: tuple[mx.array, mx.array, mx.array, mx.array],
    sensory_synapses: tuple[mx.array, mx.array, mx.array, mx.array],
    unfolds: int,
    epsilon: float,
) -> mx.array:
    """Every step's state ``(L, N, B)`` of an LTC sequence, on the native kernel.

    Args:
        recurrent, sensory: The synapse lists (:func:`synapse_list`).
        x: Mapped inputs ``(L, S, B)``.
        u0: Start state ``(N, B)``.
        cm: ``c_m K τ`` per neuron ``(N,)``; the step uses ``cm / dt``.
        dt: Elapsed times ``(L, B)``, already clamped to be positive.
        keep: ``(L, B)`` bool, False where a step is skipped; or None.
        gleak, vleak: Leak conductance and potential ``(N,)``.
        synapses: ``(w, σ, μ, E)`` per recurrent synapse ``(E,)``, in the
            order of ``recurrent`` (``w`` with its gain and constraint).
        sensory_synapses: The same for the sensory synapses.
        unfolds: ``K``.
        epsilon: Added to the denominator.
    """
    key = (id(recurrent), id(sensory), unfolds, epsilon)
    entry = _FUNCTIONS.get(key)
    if entry is None:
        if len(_FUNCTIONS) > 64:
            _FUNCTIONS.clear()
        # the entry holds the lists, so the ids in its key stay theirs
        entry = (_make_function(recurrent, sensory, unfolds, epsilon), recurrent, sensory)
        _FUNCTIONS[key] = entry
    function = entry[0]
    keep_array = mx.zeros((0,), mx.bool_) if keep is None else keep
    states, _, _ = function(
        x, u0, cm, dt, keep_array, gleak, vleak, *synapses, *sensory_synapses
    )
    return states
