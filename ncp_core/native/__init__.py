"""Native CPU kernels: C sources compiled on first use and loaded with ctypes.

MLX runs one CPU thread, does not vectorise its compiled CPU kernels and pays
a few microseconds for every kernel it launches. An LTC or wired-CfC
sequence is thousands of tiny operations, so on the CPU most of the time goes
to overhead. The kernels here run a whole sequence, forward or backward, in
one C call: the synapse loops are vectorised over the batch, the batch is
split across threads, and nothing is launched per step.

They plug into MLX as ``mx.custom_function`` s (their gradients are written
out in C), so they work under ``mx.grad``/``nn.value_and_grad`` but not
inside ``mx.compile`` or ``mx.vmap``, where arrays cannot be read. Callers
check :func:`can_run` and otherwise use the MLX kernels, which give the same
values to float32 rounding.

The sources (``*.c`` next to this file) are compiled with the system C
compiler into a cache folder the first time a kernel is needed, once per
source version, compiler and CPU; later processes load the cached library.

Environment:

- ``NCP_NATIVE``: ``0`` (or ``off``) never uses the native kernels; ``1``
  (or ``on``) makes a failed build an error instead of a silent fallback.
  Default: use them when they build.
- ``NCP_NATIVE_CACHE``: the cache folder. Default:
  ``$XDG_CACHE_HOME/ncp/native`` or ``~/.cache/ncp/native``.
- ``NCP_NATIVE_EXACT``: ``1`` builds the kernels with libm's ``expf`` in
  place of the vectorised polynomial (within 1e-7 of each other; slower).
- ``NCP_NUM_THREADS``: threads per kernel call. Default: the CPUs this
  process may use (divided among the ranks of a data-parallel run).
- ``CC``: the C compiler. Default: ``cc``, then ``gcc``, then ``clang``.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

from ncp_core.errors import ModelError

__all__ = [
    "NativeUnavailable",
    "NativeUnsupported",
    "address",
    "as_buffer",
    "available",
    "can_run",
    "enabled",
    "grad_enabled",
    "load",
    "no_grad",
    "num_threads",
    "pointer",
    "share_cores",
    "status",
]

SOURCE_DIR = Path(__file__).resolve().parent

# First the fastest flags, then fallbacks for compilers without OpenMP or
# without -march=native (e.g. Apple clang, some cross compilers).
_FLAG_SETS = (
    ("-O3", "-march=native", "-fopenmp"),
    ("-O3", "-march=native"),
    ("-O3",),
)
_COMMON_FLAGS = (
    "-std=c11",
    "-shared",
    "-fPIC",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-fopenmp-simd",
)


_mode = threading.local()


class no_grad:
    """Inference without gradients, like ``torch.no_grad``.

    Inside, the native kernels return plain results: no MLX graph is recorded
    for them, so nothing waits on MLX's evaluation thread (about a third of a
    one-step cell call on a small CPU). Gradients taken through such a call
    are zero: use it for inference only. The MLX kernels (GPU,
    ``NCP_NATIVE=0``) are not affected. Per thread; may be nested and reused.

    Example::

        with ncp.no_grad():
            for frame in stream:
                action, state = cell(frame, state)
    """

    def __init__(self) -> None:
        self._previous: list[bool] = []

    def __enter__(self) -> no_grad:
        self._previous.append(getattr(_mode, "no_grad", False))
        _mode.no_grad = True
        return self

    def __exit__(self, *exc: object) -> None:
        _mode.no_grad = self._previous.pop()


def grad_enabled() -> bool:
    """False inside :func:`no_grad`."""
    return not getattr(_mode, "no_grad", False)


class NativeUnavailable(ModelError):
    """The native kernels were required (``NCP_NATIVE=1``) but do not build."""


class NativeUnsupported(ModelError):
    """A transformation the native kernels do not provide (e.g. ``mx.jvp``)."""


_lock = threading.Lock()
_libraries: dict[str, ctypes.CDLL] = {}
_failures: dict[str, str] = {}


def enabled() -> bool:
    """False when ``NCP_NATIVE`` turns the native kernels off."""
    value = os.environ.get("NCP_NATIVE", "").strip().lower()
    return value not in ("0", "off", "no", "false")


def _required() -> bool:
    return os.environ.get("NCP_NATIVE", "").strip().lower() in (
        "1",
        "on",
        "yes",
        "true",
    )


_default_share = 1


def share_cores(processes: int) -> None:
    """Let each of ``processes`` processes on this machine default to its
    share of the CPUs (data-parallel ranks); ``NCP_NUM_THREADS`` still wins."""
    global _default_share
    _default_share = max(1, int(processes))


def num_threads() -> int:
    """Threads per native call: ``NCP_NUM_THREADS``, or the usable CPUs
    (divided among the processes of :func:`share_cores`)."""
    value = os.environ.get("NCP_NUM_THREADS", "").strip()
    if value:
        try:
            threads = int(value)
        except ValueError:
            raise ModelError(
                f"NCP_NUM_THREADS must be a positive integer, got {value!r}"
            ) from None
        if threads < 1:
            raise ModelError(f"NCP_NUM_THREADS must be at least 1, got {threads}")
        return threads
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, cores // _default_share)


def _cache_dir() -> Path:
    configured = os.environ.get("NCP_NATIVE_CACHE")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ncp" / "native"


def _exact() -> bool:
    return os.environ.get("NCP_NATIVE_EXACT", "").strip().lower() in ("1", "on", "yes")


def _compilers() -> list[list[str]]:
    """Compiler command prefixes: ``$CC`` (which may carry arguments, e.g.
    ``ccache gcc``) or the first of cc, gcc and clang found."""
    configured = os.environ.get("CC", "").strip()
    candidates = (
        [shlex.split(configured)] if configured else [["cc"], ["gcc"], ["clang"]]
    )
    found = []
    for words in candidates:
        path = shutil.which(words[0]) if words else None
        if path:
            found.append([path, *words[1:]])
    return found


def _cpu_identity() -> str:
    """What ``-march=native`` depends on: the CPU model and its feature flags."""
    text = platform.machine() + platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith(("model name", "flags", "Features")):
                    text += line
                    if line.startswith(("flags", "Features")):
                        break
    except OSError:
        pass
    return text


def _compiler_version(compiler: str) -> str:
    try:
        done = subprocess.run(
            [compiler, "--version"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.splitlines()[0] if done.stdout else ""


def _build(name: str) -> Path:
    """Compile ``<name>.c`` into the cache (if not there yet); its path."""
    source = SOURCE_DIR / f"{name}.c"
    # the headers the sources include are part of the version
    code = source.read_bytes() + b"".join(
        header.read_bytes() for header in sorted(SOURCE_DIR.glob("*.h"))
    )
    compilers = _compilers()
    if not compilers:
        tried = f"CC={os.environ['CC']!r}" if os.environ.get("CC") else "cc, gcc, clang"
        raise OSError(f"no C compiler found (tried {tried})")
    common = _COMMON_FLAGS + (("-DNCP_EXACT_EXP",) if _exact() else ())
    errors = []
    for compiler in compilers:
        version = _compiler_version(compiler[0])
        for flags in _FLAG_SETS:
            key = hashlib.sha256(
                b"\0".join(
                    [
                        code,
                        " ".join(compiler).encode(),
                        version.encode(),
                        " ".join(flags + common).encode(),
                        _cpu_identity().encode(),
                        sys.platform.encode(),
                    ]
                )
            ).hexdigest()[:16]
            folder = _cache_dir()
            target = folder / f"{name}-{key}.so"
            if target.exists():
                return target
            folder.mkdir(parents=True, exist_ok=True)
            # compile to a private name, then rename: a concurrent process
            # (another rank) never loads a half-written library
            handle, partial = tempfile.mkstemp(
                prefix=f".{name}-", suffix=".so", dir=folder
            )
            os.close(handle)
            command = [*compiler, *flags, *common, str(source), "-o", partial]
            command.append("-lm")
            try:
                done = subprocess.run(
                    command, capture_output=True, text=True, timeout=120
                )
            except (OSError, subprocess.SubprocessError) as error:
                Path(partial).unlink(missing_ok=True)
                errors.append(f"{' '.join(command)}: {error}")
                continue
            if done.returncode != 0:
                Path(partial).unlink(missing_ok=True)
                errors.append(f"{' '.join(command)}:\n{done.stderr.strip()[-2000:]}")
                continue
            os.replace(partial, target)
            _prune(folder, name, keep=target)
            return target
    raise OSError("the native kernels did not compile:\n" + "\n".join(errors))


def _prune(folder: Path, name: str, keep: Path, versions: int = 4) -> None:
    """Delete all but the newest ``versions`` builds of ``name`` (a process
    that still has an old one loaded keeps its mapping)."""
    builds = sorted(
        folder.glob(f"{name}-*.so"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    for old in builds[versions:]:
        if old != keep:
            old.unlink(missing_ok=True)
    # private files of builds that were killed half-way
    for partial in folder.glob(f".{name}-*.so"):
        with contextlib.suppress(OSError):
            if time.time() - partial.stat().st_mtime > 3600:
                partial.unlink()


def _open(name: str) -> ctypes.CDLL:
    """Build (or find) and load ``name``; a cached library that does not
    load (a broken earlier build) is deleted and built again, once."""
    path = _build(name)
    try:
        return ctypes.CDLL(str(path))
    except OSError:
        path.unlink(missing_ok=True)
        return ctypes.CDLL(str(_build(name)))


def load(name: str) -> ctypes.CDLL | None:
    """The compiled library ``name`` (built on first use), or None.

    None when ``NCP_NATIVE=0`` or the build failed (see :func:`status`);
    with ``NCP_NATIVE=1`` a failed build raises :class:`NativeUnavailable`.
    """
    if not enabled():
        return None
    library = _libraries.get(name)
    if library is not None:
        return library
    with _lock:
        if name in _libraries:
            return _libraries[name]
        if name not in _failures:
            try:
                _libraries[name] = _open(name)
                return _libraries[name]
            except OSError as error:
                _failures[name] = str(error)
    if _required():
        raise NativeUnavailable(
            f"NCP_NATIVE=1 but the native kernel {name!r} is unavailable: "
            f"{_failures[name]}\nInstall a C compiler (e.g. gcc), make the cache "
            f"folder {_cache_dir()} writable (or set NCP_NATIVE_CACHE), or unset "
            "NCP_NATIVE."
        )
    return None


def available(name: str) -> bool:
    """Whether the native kernel ``name`` is enabled and builds here."""
    return load(name) is not None


def status() -> dict[str, Any]:
    """What the native kernels look like in this process (for reports)."""
    try:
        threads: int | str = num_threads()
    except ModelError as error:
        threads = str(error)
    return {
        "enabled": enabled(),
        "exact_exp": _exact(),
        "threads": threads,
        "cache": str(_cache_dir()),
        "loaded": sorted(_libraries),
        "failures": dict(_failures),
    }


def can_run(*arrays: mx.array) -> bool:
    """Whether a native kernel may run on these arrays now.

    False on a non-CPU default device, and inside ``mx.compile`` or
    ``mx.vmap`` (their arrays cannot be read): the caller then uses the MLX
    kernels. Evaluates the arrays otherwise, which the kernel needs anyway.
    """
    if mx.default_device().type != mx.DeviceType.cpu:
        return False
    try:
        mx.eval(*arrays)
    except (ValueError, RuntimeError):
        return False
    return True


def as_buffer(x: mx.array, dtype: Any = np.float32) -> np.ndarray:
    """A C-contiguous numpy view (or copy, if it must convert) of ``x``."""
    return np.ascontiguousarray(np.asarray(x), dtype=dtype)


_from_buffer = ctypes.c_char.from_buffer


def address(array: mx.array | np.ndarray, held: list[Any], dtype: Any = None) -> int:
    """The address of an evaluated array's data as C-contiguous ``dtype``
    (default: float32 for an MLX array, its own type for a numpy one): its
    own memory where it already is that, else a copy.

    ``held`` keeps what the address points into alive: keep it until the C
    call returns. Nothing is cached across calls: an in-place update of an
    MLX array may move its data.
    """
    if dtype is None:
        dtype = array.dtype if isinstance(array, np.ndarray) else np.float32
    if (
        isinstance(array, mx.array)
        and array.dtype == mx.float32
        and np.dtype(dtype) == np.float32
    ):
        try:
            view = _from_buffer(array)  # type: ignore[arg-type]
        except (TypeError, ValueError, BufferError):
            pass  # not contiguous, or not writable: copy below
        else:
            held.append(view)
            return ctypes.addressof(view)
    buffer = as_buffer(array, dtype)
    held.append(buffer)
    return int(buffer.__array_interface__["data"][0])


def pointer(array: np.ndarray | None) -> int | None:
    """The data address of a numpy array for a ctypes call (None for NULL)."""
    if array is None:
        return None
    return int(array.__array_interface__["data"][0])
