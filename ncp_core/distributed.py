"""Data-parallel training over several processes with ``mlx.distributed``.

Start the same program once per process with MLX's launcher; every process
holds the whole model, takes its contiguous slice of each global batch, and
the gradients are summed over the processes before the update::

    mlx.launch -n 2 -- ncp train --data gun_point          # one machine
    mlx.launch --hostfile hosts.json -- ncp train ...       # several hosts

In Python the loop asks this module for everything that crosses processes::

    dp = init_from_env()                   # size 1 without a launcher
    index = dp.shard(global_batch)         # rank r's contiguous part
    share = dp.share(index.size, global_batch.size)
    grads = dp.average_gradients(grads, share)   # Σ_r share_r · g_r
    dp.check_peers(error)                  # every rank learns who failed

With one process every call is the identity, so the single-process loop is
the same code. The order of the samples depends only on the seed; the number
of processes changes the result only through the order of floating-point
sums.

A failing rank must not leave the others waiting. Every rank passes its
error (or ``None``) to :meth:`DataParallel.check_peers` at the same points of
the loop; the flags are summed, and if any is set every rank raises
:class:`DistributedError` naming the failed ranks and their errors. A rank
that dies outright breaks the ring, which the backend reports at once; a rank
that hangs is caught by a watchdog that ends the waiting process after
``NCP_DISTRIBUTED_TIMEOUT`` seconds (default 300) inside one collective.
"""

from __future__ import annotations

import contextlib
import dataclasses
import faulthandler
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_map

from ncp_core import native
from ncp_core.errors import NCPError

__all__ = [
    "DEFAULT_TIMEOUT",
    "TIMEOUT_VARIABLE",
    "DataParallel",
    "DistributedError",
    "init_from_env",
    "launch_local",
    "launched",
    "loopback_hostfile",
    "metrics_from_statistics",
    "score_statistics",
    "shard",
    "shard_share",
]

TIMEOUT_VARIABLE = "NCP_DISTRIBUTED_TIMEOUT"
"""Environment variable: seconds a rank may wait in one collective."""

DEFAULT_TIMEOUT = 300.0
"""Seconds a rank waits for its peers before it gives up."""

WATCHDOG_EXIT = 3
"""Exit status of a process ended by the watchdog."""

_LAUNCH_VARIABLES = (
    "MLX_RANK",  # mlx.launch, ring and nccl backends
    "MLX_HOSTFILE",
    "MLX_WORLD_SIZE",
    "MLX_JACCL_COORDINATOR",
    "OMPI_COMM_WORLD_SIZE",  # mpirun (Open MPI)
    "PMI_SIZE",  # mpirun (MPICH and friends)
    "PMIX_RANK",
)
"""Variables set by the launchers MLX supports; any of them means a launch."""

_BACKEND_PREFIXES = ("[ring]", "[mpi]", "[nccl]", "[jaccl]")
"""How MLX's backends begin the message of a broken connection."""

_BACKSTOP = 5.0
"""Seconds after the timeout at which faulthandler ends a stuck process."""

_MESSAGE_BYTES = 480
"""Bytes of a failed rank's message passed to the others."""


class DistributedError(NCPError):
    """A process of a distributed run failed, or the processes cannot meet."""


# -- launch detection --------------------------------------------------------


def launched() -> bool:
    """Whether this process was started by ``mlx.launch`` or ``mpirun`` as one
    of several processes."""
    found = [name for name in _LAUNCH_VARIABLES if os.environ.get(name)]
    if set(found) <= {"MLX_RANK", "MLX_HOSTFILE"} and _empty_hostfile():
        return False  # `mlx.launch -n 1` writes an empty hostfile
    return bool(found)


def _empty_hostfile() -> bool:
    path = os.environ.get("MLX_HOSTFILE")
    if not path:
        return True
    try:
        with open(path, encoding="utf-8") as handle:
            return not handle.read().strip()
    except OSError:
        return False  # let MLX report the missing file


def _timeout_from_env() -> float:
    text = os.environ.get(TIMEOUT_VARIABLE)
    if text is None or not text.strip():
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise DistributedError(
            f"{TIMEOUT_VARIABLE}={text!r} is not a number of seconds; set it to "
            "a positive number such as 300, or unset it"
        )
    return value


def init_from_env(
    distributed: bool | None = None,
    backend: str = "any",
    timeout: float | None = None,
) -> DataParallel:
    """The process group of this run, from the launcher's environment.

    Args:
        distributed (bool, optional): ``None`` joins a group when the
            environment shows a launch (``MLX_RANK``, ``MLX_HOSTFILE``,
            ``OMPI_COMM_WORLD_SIZE``, ...) and runs alone otherwise; ``True``
            requires a group of at least two processes; ``False`` runs alone
            even under a launcher. Default: ``None``.
        backend (str): ``mx.distributed.init`` backend: ``"any"``,
            ``"ring"``, ``"mpi"``, ``"nccl"`` or ``"jaccl"``. Default:
            ``"any"``.
        timeout (float, optional): Seconds a rank waits inside one collective
            before the watchdog ends it. Default: ``NCP_DISTRIBUTED_TIMEOUT``,
            else :data:`DEFAULT_TIMEOUT`.

    Returns:
        DataParallel: size 1 when running alone.

    Raises:
        DistributedError: ``distributed=True`` but no group of two or more
            processes could be formed, or a bad timeout.
    """
    seconds = _timeout_from_env() if timeout is None else float(timeout)
    if not (math.isfinite(seconds) and seconds > 0):
        raise DistributedError(f"timeout must be a positive number, got {timeout!r}")
    if distributed is False or (distributed is None and not launched()):
        return DataParallel(None, seconds)

    # Under a launcher a failure to join is an error: a process that went on
    # alone would train and write as if it were the whole run.
    watchdog = _Watchdog(seconds, os.environ.get("MLX_RANK", "?"))
    try:
        with watchdog.waiting("joining the process group"):
            group = mx.distributed.init(strict=True, backend=backend)
    except RuntimeError as error:
        raise DistributedError(
            f"could not join the distributed group with backend {backend!r} "
            f"({error}); start every process with mlx.launch or mpirun, or drop "
            "--distributed to train in one process"
        ) from None
    finally:
        watchdog.stop()
    if group.size() < 2:
        if distributed:
            raise DistributedError(
                "--distributed was given but this process is alone (group size 1); "
                "start it with `mlx.launch -n 2 -- ...` or mpirun, or drop "
                "--distributed"
            )
        return DataParallel(None, seconds)
    return DataParallel(group, seconds)


# -- sharding ----------------------------------------------------------------


def shard(batch: np.ndarray, rank: int, size: int) -> np.ndarray:
    """Rank ``rank``'s contiguous part of a global batch of indices.

    The ``B`` entries are cut into ``size`` runs whose lengths differ by at
    most one, the longer ones first; a rank gets an empty run when ``B <
    size``.

    Args:
        batch (np.ndarray): ``(B,)`` indices of the global batch.
        rank (int): This process, ``0 <= rank < size``.
        size (int): Number of processes.
    """
    if not 0 <= rank < size:
        raise DistributedError(f"rank {rank} is outside a group of size {size}")
    base, extra = divmod(len(batch), size)
    start = rank * base + min(rank, extra)
    return batch[start : start + base + (rank < extra)]


def shard_share(count: float, total: float) -> float:
    """Weight ``count / total`` of a shard's mean loss in the global mean.

    With ``L_r`` the mean loss over the ``n_r`` samples of rank ``r`` and
    ``N = Σ n_r``, the global mean is ``L = Σ_r (n_r / N) L_r``, so the sum
    over ranks of ``share_r ∇L_r`` is the gradient one process computes on
    the whole batch. ``count`` may also count observed steps (per-step
    losses normalised by the mask).
    """
    if total <= 0:
        return 0.0
    return float(count) / float(total)


# -- the process group -------------------------------------------------------


class DataParallel:
    """One process of a data-parallel run, and the collectives it takes part in.

    Args:
        group (mx.distributed.Group | None): The group; ``None`` runs alone.
        timeout (float): Seconds to wait inside one collective before the
            watchdog ends the process. Default: :data:`DEFAULT_TIMEOUT`.
    """

    def __init__(self, group: Any = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.group = group
        self.rank = 0 if group is None else int(group.rank())
        self.size = 1 if group is None else int(group.size())
        self.timeout = float(timeout)
        self._watchdog = _Watchdog(self.timeout, self.rank) if self.size > 1 else None
        self._held: BaseException | None = None
        if self.size > 1:
            # ranks started together usually share one machine's cores; the
            # native kernels' threads would otherwise oversubscribe them
            native.share_cores(self.size)

    @property
    def is_writer(self) -> bool:
        """Whether this process writes files and prints (rank 0)."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.size > 1

    def __repr__(self) -> str:
        return f"DataParallel(rank={self.rank}, size={self.size})"

    def close(self) -> None:
        """Stop the watchdog thread."""
        if self._watchdog is not None:
            self._watchdog.stop()

    # -- data

    def shard(self, batch: np.ndarray) -> np.ndarray:
        """This rank's contiguous part of a global batch (see :func:`shard`)."""
        return shard(batch, self.rank, self.size)

    def share(self, count: float, total: float) -> float:
        """See :func:`shard_share`."""
        return shard_share(count, total)

    # -- collectives inside a step (lazy; fine under mx.compile)

    def all_sum(self, x: mx.array) -> mx.array:
        """``Σ_r x_r``; ``x`` itself when alone."""
        if self.group is None:
            return x
        return mx.distributed.all_sum(x, group=self.group)

    def average_gradients(self, grads: Any, share: mx.array | float | None = None):
        """``Σ_r share_r g_r`` over the ranks, in as few collectives as possible.

        The leaves travel concatenated through ``nn.average_gradients``, so a
        model of many small arrays pays the collective's latency once.

        Args:
            grads: A tree of gradients of this rank's mean loss.
            share (mx.array | float, optional): This rank's
                :func:`shard_share`. Default: ``1 / size`` (equal shards).

        Returns:
            The tree of combined gradients, the same on every rank; ``grads``
            unchanged when alone.
        """
        if self.group is None:
            return grads
        if share is not None:
            scale = share * self.size
            grads = tree_map(lambda g: g * scale, grads)
        return nn.average_gradients(grads, group=self.group)

    def sum_gradients(self, grads: Any) -> Any:
        """``Σ_r g_r``, for losses already scaled by their share."""
        return self.average_gradients(grads, 1.0)

    # -- collectives outside a step (eager, guarded by the watchdog)

    @contextlib.contextmanager
    def waiting(self, what: str) -> Iterator[None]:
        """Guard a section that waits for the other ranks.

        Inside, a broken connection becomes :class:`DistributedError`, and
        the watchdog ends this process if the section outlasts the timeout.
        """
        if self._watchdog is None:
            yield
            return
        try:
            with self._watchdog.waiting(what):
                yield
        except RuntimeError as error:
            if not str(error).startswith(_BACKEND_PREFIXES):
                raise
            raise DistributedError(
                f"rank {self.rank} lost its connection to the other processes "
                f"while {what} ({error}); another rank has stopped, see its "
                "output for the reason"
            ) from None

    def sum_arrays(
        self, arrays: Mapping[str, np.ndarray], what: str = "combining metrics"
    ) -> dict[str, np.ndarray]:
        """``Σ_r`` of each NumPy array over the ranks, in float64 or int64.

        Every rank must pass the same names with the same shapes.
        """
        if self.group is None:
            return {name: np.asarray(value) for name, value in arrays.items()}
        names = sorted(arrays)
        local = []
        for name in names:
            value = np.asarray(arrays[name])
            kind = np.int64 if value.dtype.kind in "biu" else np.float64
            local.append(mx.array(value.astype(kind)))
        with self.waiting(what):
            summed = [self.all_sum(value) for value in local]
            mx.eval(summed)
        return {
            name: np.array(value) for name, value in zip(names, summed, strict=True)
        }

    def any(self, flag: bool, what: str = "agreeing to stop") -> bool:
        """Whether ``flag`` is set on at least one rank (the same on all)."""
        if self.group is None:
            return bool(flag)
        total = self.sum_arrays({"flag": np.array([int(bool(flag))])}, what)
        return bool(total["flag"][0] > 0)

    def check_peers(
        self, error: BaseException | None = None, what: str = "training"
    ) -> None:
        """Meet the other ranks; raise on every rank if any of them failed.

        Each rank passes the exception it caught since the last check, or
        ``None``; an error held by :meth:`collect` counts too. All ranks must
        call this at the same points.

        Raises:
            DistributedError: ``"rank R failed: <error>"`` for each failed
                rank, on every rank; on the failed rank it chains ``error``.
                With one process, ``error`` is re-raised as it is.
        """
        error = error if error is not None else self._held
        self._held = None
        if self.group is None:
            if error is not None:
                raise error
            return
        flags = np.zeros(self.size, np.int64)
        flags[self.rank] = error is not None
        failed = np.flatnonzero(self.sum_arrays({"flags": flags}, what)["flags"])
        if failed.size == 0:
            return
        text = np.zeros((self.size, _MESSAGE_BYTES), np.int64)
        if error is not None:
            raw = _describe(error).encode("utf-8", "replace")[:_MESSAGE_BYTES]
            text[self.rank, : len(raw)] = np.frombuffer(raw, np.uint8)
        texts = self.sum_arrays({"text": text}, f"{what}: sharing the failure")
        reasons = [
            bytes(texts["text"][r].astype(np.uint8))
            .rstrip(b"\0")
            .decode("utf-8", "replace")
            for r in failed
        ]
        message = "; ".join(
            f"rank {r} failed: {reason}"
            for r, reason in zip(failed.tolist(), reasons, strict=True)
        )
        raise DistributedError(f"{message} (while {what})") from error

    @contextlib.contextmanager
    def collect(self) -> Iterator[None]:
        """Hold an exception raised inside until the next :meth:`check_peers`.

        For work that only some ranks may fail (a callback, a file), between
        two meetings of the ranks. Alone, the exception passes through at once.
        """
        if self.group is None:
            yield
            return
        try:
            yield
        except Exception as error:  # a KeyboardInterrupt ends the rank as is
            if self._held is None:
                self._held = error

    @contextlib.contextmanager
    def guard(self, what: str = "training") -> Iterator[None]:
        """Run a section on every rank and check the peers at its end.

        An exception inside is held back and passed to :meth:`check_peers`,
        so every rank raises the same :class:`DistributedError` instead of
        one rank leaving while the others wait. Alone, the exception passes
        through untouched.
        """
        if self.group is None:
            yield
            return
        with self.collect():
            yield
        self.check_peers(None, what)

    def broadcast(self, tree: Any, what: str = "sharing rank 0's state") -> Any:
        """Rank 0's values of a tree of arrays, on every rank."""
        if self.group is None:
            return tree
        keep = self.rank == 0

        def pick(x: mx.array) -> mx.array:
            return x if keep else mx.zeros_like(x)

        with self.waiting(what):
            result = tree_map(lambda x: self.all_sum(pick(x)), tree)
            mx.eval(result)
        return result


def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split())
    name = type(error).__name__
    if isinstance(error, DistributedError):
        return text
    return f"{name}: {text}" if text else name


# -- the watchdog ------------------------------------------------------------


class _Watchdog:
    """Ends the process when one wait for the peers lasts ``timeout`` seconds.

    The main thread cannot be interrupted while MLX waits inside a collective,
    so a daemon thread watches the deadline, says why and calls ``os._exit``.
    Some waits (joining the group) keep Python's lock, which stops that thread
    too; for them ``faulthandler``'s C-level timer ends the process a moment
    later, printing where it waited.
    """

    def __init__(self, timeout: float, rank: int | str) -> None:
        self.timeout = timeout
        self.rank = rank
        self._deadline: float | None = None
        self._what = ""
        self._wake = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def waiting(self, what: str) -> Iterator[None]:
        with self._wake:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="ncp-distributed-watchdog", daemon=True
                )
                self._thread.start()
            self._deadline = time.monotonic() + self.timeout
            self._what = what
            self._wake.notify()
        faulthandler.dump_traceback_later(self.timeout + _BACKSTOP, exit=True)
        try:
            yield
        finally:
            faulthandler.cancel_dump_traceback_later()
            with self._wake:
                self._deadline = None

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()

    def _watch(self) -> None:
        with self._wake:
            while not self._stopped:
                if self._deadline is None:
                    self._wake.wait()
                    continue
                left = self._deadline - time.monotonic()
                if left > 0:
                    self._wake.wait(left)
                    continue
                # The one place the library writes: the process ends next,
                # and the user must learn why.
                sys.stderr.write(
                    f"ncp: rank {self.rank} waited {self.timeout:g} s for the "
                    f"other processes while {self._what}; a peer has stopped "
                    f"or hangs. Stopping this rank (raise {TIMEOUT_VARIABLE} "
                    "for slower steps).\n"
                )
                sys.stderr.flush()
                os._exit(WATCHDOG_EXIT)


# -- metrics over a split shared by the ranks --------------------------------


def score_statistics(
    task: str,
    out: np.ndarray,
    y: np.ndarray,
    *,
    num_classes: int = 0,
    mask: np.ndarray | None = None,
    per_step: bool = False,
    inverse: Any = None,
) -> dict[str, np.ndarray]:
    """Sums over this rank's series from which the split's metrics follow.

    Args:
        task (str): ``"classification"`` or ``"regression"``.
        out (np.ndarray): Model outputs, ``(n, K)`` logits or ``(n, D)`` /
            ``(n, L, D)`` standardised values.
        y (np.ndarray): ``(n,)`` class ids, or standardised targets shaped as
            ``out``.
        num_classes (int): ``K`` (classification).
        mask (np.ndarray, optional): ``(n, L)`` observed steps (per-step
            regression).
        per_step (bool): Targets are per step. Default: ``False``.
        inverse (callable, optional): Maps standardised values back to the
            targets' units (regression). Default: the identity.

    Returns:
        dict: Classification: ``loss_sum`` (``Σ -log p_y``), ``confusion``
        ``(K, K)``. Regression: ``loss_sum``, ``loss_count`` (in standardised
        units), ``squared``, ``absolute`` and ``count`` (in target units).
    """
    n = int(np.asarray(y).shape[0])
    if task == "classification":
        confusion = np.zeros((num_classes, num_classes), np.int64)
        if n == 0:
            return {"loss_sum": np.zeros(1), "confusion": confusion}
        logits = np.asarray(out, np.float64)
        shifted = logits - logits.max(axis=-1, keepdims=True)
        probabilities = np.exp(shifted)
        probabilities /= probabilities.sum(axis=-1, keepdims=True)
        labels = np.asarray(y, np.int64)
        picked = probabilities[np.arange(n), labels]
        loss_sum = -np.sum(np.log(np.maximum(picked, 1e-12)))
        predicted = probabilities.argmax(axis=-1)
        np.add.at(confusion, (labels, predicted), 1)
        return {"loss_sum": np.array([loss_sum]), "confusion": confusion}

    empty = {
        name: np.zeros(1) for name in ("loss_sum", "loss_count", "squared", "absolute")
    }
    if n == 0:
        return {**empty, "count": np.zeros(1, np.int64)}
    values = np.asarray(out, np.float64)
    target = np.asarray(y, np.float64)
    if per_step and mask is not None:
        weight = np.asarray(mask, bool)[..., None]
        loss_sum = np.sum(np.square(values - target) * weight)
        loss_count = weight.sum() * values.shape[-1]
    else:
        loss_sum = np.sum(np.square(values - target))
        loss_count = values.size
    if inverse is not None:
        values = np.asarray(inverse(np.asarray(out)), np.float64)
        target = np.asarray(inverse(np.asarray(y)), np.float64)
    error = values - target
    if per_step and mask is not None:
        error = error[np.asarray(mask, bool)]
    return {
        "loss_sum": np.array([loss_sum]),
        "loss_count": np.array([float(loss_count)]),
        "squared": np.array([np.sum(np.square(error))]),
        "absolute": np.array([np.sum(np.abs(error))]),
        "count": np.array([error.size], np.int64),
    }


def metrics_from_statistics(
    task: str, stats: Mapping[str, np.ndarray]
) -> dict[str, Any]:
    """The metrics of a whole split from its summed :func:`score_statistics`.

    Returns:
        dict: The keys :func:`ncp_core.metrics.classification_metrics` or
        :func:`ncp_core.metrics.regression_metrics` give, after ``loss``.
    """
    from ncp_core.metrics import f1_scores, macro_f1

    if task == "classification":
        confusion = np.asarray(stats["confusion"], np.int64)
        n = int(confusion.sum())
        per_class = f1_scores(confusion)
        return {
            "loss": float(stats["loss_sum"][0] / n) if n else float("nan"),
            "accuracy": float(np.trace(confusion) / n) if n else float("nan"),
            "macro_f1": macro_f1(confusion),
            "f1": [None if np.isnan(v) else float(v) for v in per_class],
            "confusion_matrix": confusion.tolist(),
            "n": n,
        }
    count = int(stats["count"][0])
    mse = float(stats["squared"][0] / count) if count else float("nan")
    return {
        "loss": float(stats["loss_sum"][0] / max(stats["loss_count"][0], 1.0)),
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "mae": float(stats["absolute"][0] / count) if count else float("nan"),
        "n": count,
    }


# -- starting processes on this machine --------------------------------------


def loopback_hostfile(size: int) -> list[list[str]]:
    """A ring hostfile of ``size`` ranks on 127.0.0.1, each on a free port.

    The ports are found by binding port 0; another program could take one
    before the ranks listen on it, which shows as a failure to connect.
    """
    if size < 1:
        raise DistributedError(f"size must be at least 1, got {size}")
    sockets = []
    try:
        for _ in range(size):
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.bind(("127.0.0.1", 0))
            sockets.append(listener)
        return [[f"127.0.0.1:{s.getsockname()[1]}"] for s in sockets]
    finally:
        for listener in sockets:
            listener.close()


@dataclasses.dataclass
class RankResult:
    """What one process of :func:`launch_local` did."""

    rank: int
    returncode: int
    stdout: str
    stderr: str


def launch_local(
    command: Sequence[str],
    size: int,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
    hostfile_dir: str | os.PathLike[str] | None = None,
) -> list[RankResult]:
    """Run ``command`` as ``size`` ring-backend ranks on 127.0.0.1.

    The same as ``mlx.launch -n size -- command`` on this machine, but every
    rank's exit status and output come back (``mlx.launch`` exits 0 when a
    rank fails). With ``size`` 1 the command runs alone, without launcher
    variables. For tests and local trials; use ``mlx.launch`` or ``mpirun``
    across hosts.

    Args:
        command (Sequence[str]): The program and its arguments.
        size (int): Number of ranks.
        env (Mapping[str, str], optional): Extra environment variables.
        cwd (path, optional): Working directory. Default: the current one.
        timeout (float, optional): Seconds before the ranks still running are
            killed (they then report return code ``-9``). Default: none.
        hostfile_dir (path, optional): Where to write the hostfile. Default:
            a temporary directory.

    Returns:
        list[RankResult]: One per rank, in rank order.
    """
    import tempfile

    with contextlib.ExitStack() as stack:
        folder = hostfile_dir or stack.enter_context(tempfile.TemporaryDirectory())
        base = {**os.environ, **(env or {})}
        for name in _LAUNCH_VARIABLES:
            base.pop(name, None)
        if size > 1:
            path = os.path.join(folder, "ncp-hostfile.json")
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(loopback_hostfile(size), handle)
            base["MLX_HOSTFILE"] = path
        processes = []
        for rank in range(size):
            out = stack.enter_context(tempfile.TemporaryFile("w+"))
            err = stack.enter_context(tempfile.TemporaryFile("w+"))
            process = subprocess.Popen(
                list(command),
                env={**base, "MLX_RANK": str(rank)} if size > 1 else base,
                cwd=cwd,
                stdout=out,
                stderr=err,
                text=True,
            )
            processes.append((process, out, err))
        deadline = None if timeout is None else time.monotonic() + timeout
        results = []
        for rank, (process, out, err) in enumerate(processes):
            left = None if deadline is None else max(deadline - time.monotonic(), 0)
            try:
                process.wait(timeout=left)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            out.seek(0)
            err.seek(0)
            results.append(RankResult(rank, process.returncode, out.read(), err.read()))
        return results


def _main(argv: Sequence[str]) -> int:
    """``python -m ncp_core.distributed -n N [--timeout S] -- command ...``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m ncp_core.distributed",
        description="Run a command as N ring-backend ranks on 127.0.0.1 and exit "
        "non-zero if any rank fails (mlx.launch exits 0 then).",
    )
    parser.add_argument("-n", type=int, default=2, help="ranks [default: 2]")
    parser.add_argument("--timeout", type=float, default=None, help="seconds")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given; e.g. -n 2 -- ncp train --epochs 2")
    results = launch_local(command, args.n, timeout=args.timeout)
    for result in results:
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
    failed = [r for r in results if r.returncode != 0]
    for result in failed:
        sys.stderr.write(f"rank {result.rank} exited with {result.returncode}\n")
    return (
        failed[0].returncode
        if failed and failed[0].returncode > 0
        else int(bool(failed))
    )


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
