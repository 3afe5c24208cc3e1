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
        library.ncp_ltc_forward.restype = ctypes.c_int
        library.ncp_ltc_forward.argtypes = (
            [_int] * 6 + [_ptr] * 6 + [_int] + [_ptr] * 15 + [ctypes.c_float]
            + [_ptr] * 3
        )  # fmt: skip
        library.ncp_ltc_backward.restype = ctypes.c_int
        library.ncp_ltc_backward.argtypes = (
            [_int] * 6 + [_ptr] * 5 + [_int] + [_ptr] * 15 + [_ptr] * 19
        )
        library._ncp_typed = True
    return library


def available() -> bool:
    """Whether the native LTC kernel is enabled and builds here."""
    return _library() is not None


def _check(status: int, batch: int, length: int, units: int) -> None:
    if status != 0:
        raise MemoryError(
            f"the native LTC kernel could not allocate its work buffers for "
            f"batch {batch} and {units} neurons (length {length}); use a smaller "
            "batch"
        )


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

    constants = [p(a) for a in (rec_ptr, rec_src, sen_ptr, sen_src)]

    def common(arrays: tuple[mx.array, ...], held: list[Any]) -> tuple[Any, ...]:
        """Sizes, and the addresses of the inputs both directions read in
        the C order (``keep`` NULL when empty); ``held`` keeps what they
        point into alive until the kernel returns."""
        x, win, bin_, u0, cm, dt, keep, gleak, vleak, _, _, *synapses = arrays
        batch, n = u0.shape
        features = win.shape[0]
        length = x.size // (batch * features)

        def at(a: mx.array, dtype: Any = np.float32) -> int | None:
            return native.address(a, held, dtype)

        head = [at(a) for a in (x, win, bin_)]
        params = [at(cm), at(dt), int(dt.size > 1), at(gleak), at(vleak)]
        params.append(None if keep.size == 0 else at(keep, np.uint8))
        w = [at(a) for a in synapses[:4]]
        sw = [at(a) for a in synapses[4:]]
        addresses = [constants[0], constants[1], *w, constants[2], constants[3], *sw]
        return (batch, length, n, features), head, params, addresses

    def forward(*arrays: mx.array, saved: bool = True) -> tuple[Any, ...]:
        held: list[Any] = []
        sizes, head, params, synapses = common(arrays, held)
        batch, length, n, features = sizes
        u0 = native.address(arrays[3], held)
        owb, obb = native.as_buffer(arrays[9]), native.as_buffer(arrays[10])
        states = np.empty((batch, length, n), np.float32)
        V = np.empty((length, unfolds + 1, n, batch), np.float32)
        D = np.empty((length, unfolds, n, batch), np.float32)
        status = library.ncp_ltc_forward(
            batch, length, n, features, unfolds, native.num_threads(),
            *head, u0, *params, *synapses,
            epsilon, p(states), p(V), p(D),
        )  # fmt: skip
        del held
        _check(status, batch, length, n)
        _calls["forward"] += 1
        readout = states[..., : owb.size] * owb + obb
        if arrays[0].ndim == 2:
            # one step: the shapes of a cell call, (B, N) and (B, M)
            states, readout = states[:, 0], readout[:, 0]
        if not saved:
            # no_grad: the backward's arrays are not copied into MLX
            return mx.array(states), mx.array(readout), None, None
        return mx.array(states), mx.array(readout), mx.array(V), mx.array(D)

    sequence = mx.custom_function(forward)

    @sequence.vjp
    def sequence_vjp(primals: Any, cotangents: Any, outputs: Any) -> Any:
        held: list[Any] = []
        (batch, length, n, features), head, params, synapses = common(primals, held)
        xb, winb, binb = (native.as_buffer(a) for a in primals[:3])
        owb = native.as_buffer(primals[9])
        m = owb.size
        states, g_readout = _buffers(outputs[0], cotangents[1])
        g_states = np.array(cotangents[0], np.float32)
        g_states[..., :m] += g_readout * owb
        g_ow = (g_readout * states[..., :m]).reshape(-1, m).sum(axis=0)
        g_ob = g_readout.reshape(-1, m).sum(axis=0)
        Vb, Db = _buffers(outputs[2], outputs[3])
        gx = np.empty_like(xb)
        gwin, gbin = np.empty_like(winb), np.empty_like(binb)
        gu0 = np.empty((batch, n), np.float32)
        gcm, ggl, gvl = (np.empty(n, np.float32) for _ in range(3))
        dt, keep_array = primals[5], primals[6]
        # Δt per sample and step takes a gradient; one Δt for all came from
        # a Python number and takes none
        gdt = np.zeros(dt.shape, np.float32)
        grads = [np.empty(recurrent.count, np.float32) for _ in range(4)]
        sgrads = [np.empty(sensory.count, np.float32) for _ in range(4)]
        status = library.ncp_ltc_backward(
            batch, length, n, features, unfolds, native.num_threads(),
            *head, *params, *synapses,
            p(Vb), p(Db), p(g_states), p(gx), p(gwin), p(gbin), p(gu0), p(gcm),
            p(ggl), p(gvl), p(gdt if dt.size > 1 else None),
            *(p(a) for a in grads), *(p(a) for a in sgrads),
        )  # fmt: skip
        del held
        _check(status, batch, length, n)
        _calls["backward"] += 1
        out = [mx.array(a) for a in (gx, gwin, gbin, gu0, gcm, gdt)]
        out.append(mx.zeros_like(keep_array))
        out += [mx.array(a) for a in (ggl, gvl, g_ow, g_ob, *grads, *sgrads)]
        return tuple(out)

    @sequence.jvp
    def sequence_jvp(primals: Any, tangents: Any) -> Any:
        raise native.NativeUnsupported(
            "forward-mode derivatives (mx.jvp) do not go through the native LTC "
            "kernel; build the model with kernel='sparse' or 'dense' (or set "
            "NCP_NATIVE=0) for them"
        )

    return sequence, forward


_FUNCTIONS: dict[tuple[int, int, int, float], tuple[Any, ...]] = {}


_NO_MASK = mx.zeros((0,), mx.bool_)


def ltc_sequence(
    recurrent: SynapseList,
    sensory: SynapseList,
    x: mx.array,
    input_w: mx.array,
    input_b: mx.array,
    u0: mx.array,
    cm: mx.array,
    dt: mx.array,
    keep: mx.array | None,
    gleak: mx.array,
    vleak: mx.array,
    output_w: mx.array,
    output_b: mx.array,
    synapses: tuple[mx.array, mx.array, mx.array, mx.array],
    sensory_synapses: tuple[mx.array, mx.array, mx.array, mx.array],
    unfolds: int,
    epsilon: float,
) -> tuple[mx.array, mx.array]:
    """Every step's state and readout of an LTC sequence, on the native kernel.

    Returns ``(states, readout)``: ``(B, L, N)`` and ``(B, L, M)``, or
    ``(B, N)`` and ``(B, M)`` for a single step given as ``x (B, S)``. The
    arguments must be evaluated (see :func:`ncp_core.native.can_run`); then
    the results are too, and a one-step call creates no lazy MLX work.

    Args:
        recurrent, sensory: The synapse lists (:func:`synapse_list`).
        x: Raw inputs ``(B, L, S)`` or ``(B, S)``; the kernel maps them to
            ``x · input_w + input_b``.
        input_w, input_b: ``(S,)``.
        u0: Start state ``(B, N)``.
        cm: ``c_m K τ`` per neuron ``(N,)``; the step uses ``cm / dt``.
        dt: Elapsed times ``(B, L)``, or one ``(1,)`` for all, positive.
        keep: ``(B, L)`` bool, False where a step is skipped; or None.
        gleak, vleak: Leak conductance and potential ``(N,)``.
        output_w, output_b: The readout ``v[:, :M] · output_w + output_b``,
            ``(M,)``.
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
        entry = (*_make_function(recurrent, sensory, unfolds, epsilon), recurrent)
        entry += (sensory,)
        _FUNCTIONS[key] = entry
    arguments = (
        x,
        input_w,
        input_b,
        u0,
        cm,
        dt,
        _NO_MASK if keep is None else keep,
        gleak,
        vleak,
        output_w,
        output_b,
        *synapses,
        *sensory_synapses,
    )
    if native.grad_enabled():
        states, readout, _, _ = entry[0](*arguments)
    else:
        # the forward runs bare: its results are plain arrays
        states, readout, _, _ = entry[1](*arguments, saved=False)
    return states, readout
