"""The run folder of a training run: atomic files, checkpoints, metrics.

A run folder holds::

    config.json            everything needed to rebuild the model and the data
    model.safetensors      the best weights (lowest validation loss)
    checkpoint/state.json  the last complete checkpoint: epoch, counters, RNG,
                           history, and the two files below with their SHA-256
    checkpoint/weights-EEEE.safetensors     last weights
    checkpoint/optimizer-EEEE.safetensors   optimizer state (flattened tree)
    checkpoint/best-BBBB.safetensors        best weights so far (epoch BBBB)
    metrics.jsonl          one JSON object per finished epoch
    summary.json           test metrics and timings of the finished run
    *.png                  learning curves, the wiring, the confusion matrix

Every file is written atomically: to a temporary file in the same folder,
flushed and fsync-ed, then moved over the old one with :func:`os.replace`,
and the folder is fsync-ed. A checkpoint's tensors go to files whose names
carry the epoch, and ``state.json`` naming them is written last, so a process
killed at any moment leaves the previous checkpoint complete and readable.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import mlx.core as mx

from ncp_core.errors import CheckpointError

__all__ = [
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "FORMAT_VERSION",
    "METRICS_FILE",
    "MODEL_FILE",
    "PLOT_FILES",
    "RUN_FILES",
    "SUMMARY_FILE",
    "RunFolder",
    "atomic_save_safetensors",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "json_safe",
    "load_safetensors",
    "read_json",
    "sha256_file",
]

FORMAT_VERSION = 1
"""Version of the run-folder layout; a folder with a larger one is refused."""

CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.json"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
PLOT_FILES = ("learning_curves.png", "wiring.png", "confusion_matrix.png")
RUN_FILES = (
    CONFIG_FILE,
    MODEL_FILE,
    CHECKPOINT_DIR,
    METRICS_FILE,
    SUMMARY_FILE,
    *PLOT_FILES,
)
"""Every name a run writes; a folder holding any of them holds a run."""

_TEMP_PREFIX = ".ncp-tmp-"
_EPOCH_FILE = re.compile(r"^(weights|optimizer|best)-(\d+)\.safetensors$")


# -- atomic writes -----------------------------------------------------------


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not every platform can open a folder.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Let ``write`` fill a temporary file next to ``path``, then move it there."""
    path = Path(path)
    folder = path.parent
    # Not mkstemp: its files are private (0600); these honour the umask.
    while True:
        temp = folder / f"{_TEMP_PREFIX}{path.name}-{secrets.token_hex(6)}.tmp"
        try:
            os.close(os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            break
        except FileExistsError:
            continue
    try:
        write(temp)
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    _fsync_dir(folder)


def _write_with(data: bytes) -> Callable[[Path], None]:
    def write(temp: Path) -> None:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()

    return write


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename)."""
    _atomic(Path(path), _write_with(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def json_safe(value: Any) -> Any:
    """``value`` with NumPy scalars and arrays as Python values, NaN/inf as None."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def atomic_write_json(path: str | Path, value: Any) -> None:
    """Write ``value`` as indented JSON atomically (NaN and inf become null)."""
    text = json.dumps(json_safe(value), indent=2, allow_nan=False)
    atomic_write_text(path, text + "\n")


def atomic_save_safetensors(
    path: str | Path,
    arrays: Mapping[str, mx.array],
    metadata: Mapping[str, str] | None = None,
) -> str:
    """Save ``arrays`` as safetensors atomically; returns the file's SHA-256."""
    path = Path(path)

    def write(temp: Path) -> None:
        # MLX appends ".safetensors" to names without it, so give it one.
        target = temp.with_name(temp.name + ".safetensors")
        mx.save_safetensors(str(target), dict(arrays), metadata=dict(metadata or {}))
        os.replace(target, temp)

    _atomic(path, write)
    return sha256_file(path)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- reading -----------------------------------------------------------------


def read_json(path: str | Path, what: str) -> Any:
    """Parse a JSON file or raise :class:`CheckpointError` naming ``what``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckpointError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{what} {path} cannot be read: {error}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise CheckpointError(
            f"{what} {path} is not valid JSON ({error.msg} at line {error.lineno}); "
            "the file is corrupt or was edited by hand"
        ) from None


def load_safetensors(
    path: str | Path, what: str, sha256: str | None = None
) -> dict[str, mx.array]:
    """Load a safetensors file, raising :class:`CheckpointError` when broken.

    Args:
        path (str | Path): The file.
        what (str): What the file is, for the message (``"model weights"``).
        sha256 (str, optional): Expected hex digest; a mismatch is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {path} does not exist")
    if sha256 is not None and sha256_file(path) != sha256:
        raise CheckpointError(
            f"{what} {path} does not match the checksum recorded when it was "
            "written: the file is corrupt or was replaced; restore it or train again"
        )
    try:
        arrays = mx.load(str(path), format="safetensors")
        mx.eval(arrays)
    except (RuntimeError, ValueError, OSError) as error:
        reason = str(error).split("] ", 1)[-1]
        raise CheckpointError(
            f"{what} {path} is corrupt or truncated ({reason}); restore it or "
            "train again"
        ) from None
    if not isinstance(arrays, dict):
        raise CheckpointError(f"{what} {path} is not a safetensors file of tensors")
    return arrays


# -- the run folder ----------------------------------------------------------


class RunFolder:
    """Reads and writes the files of one run folder.

    Args:
        path (str | Path): The folder.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINT_DIR

    def existing_run_files(self) -> list[str]:
        """Names of run files already present (empty for a new folder)."""
        if not self.path.is_dir():
            return []
        return [name for name in RUN_FILES if (self.path / name).exists()]

    def holds_run(self) -> bool:
        """Whether the folder has a ``config.json``."""
        return (self.path / CONFIG_FILE).is_file()

    def check_new(self, *, force: bool = False) -> None:
        """Raise unless a new run may be written here (nothing is changed).

        Raises:
            CheckpointError: the folder holds run files and ``force`` is off,
                or the path is a file.
        """
        if self.path.exists() and not self.path.is_dir():
            raise CheckpointError(
                f"run folder {self.path} is a file, not a folder; choose another path"
            )
        present = self.existing_run_files()
        if present and not force:
            what = "a run" if self.holds_run() else "files of a run"
            raise CheckpointError(
                f"{self.path} already holds {what} ({', '.join(present)}); resume "
                "it with --resume, pick another --out, or overwrite it with --force"
            )

    def create(self, *, force: bool = False) -> None:
        """Make the folder ready for a new run.

        Files that are not run files are left alone. Run files already there
        are an error unless ``force``, which removes them first.

        Raises:
            CheckpointError: as :meth:`check_new`.
        """
        self.check_new(force=force)
        for name in self.existing_run_files():
            target = self.path / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
        self.path.mkdir(parents=True, exist_ok=True)
        self._remove_temporaries(self.path)

    @staticmethod
    def _remove_temporaries(folder: Path) -> None:
        if folder.is_dir():
            for leftover in folder.glob(f"{_TEMP_PREFIX}*"):
                with contextlib.suppress(OSError):
                    leftover.unlink()

    # -- config, summary, metrics

    def write_config(self, config: Mapping[str, Any]) -> None:
        atomic_write_json(self.path / CONFIG_FILE, {"format": FORMAT_VERSION, **config})

    def read_config(self) -> dict[str, Any]:
        """The run's configuration, after checking its format version.

        Raises:
            CheckpointError: no run here, unreadable JSON, or a newer format.
        """
        path = self.path / CONFIG_FILE
        if not self.path.is_dir():
            raise CheckpointError(f"run folder {self.path} does not exist")
        if not path.is_file():
            raise CheckpointError(
                f"{self.path} holds no run: {CONFIG_FILE} is missing; pass the "
                "folder given to --out when training"
            )
        config = read_json(path, "run config")
        if not isinstance(config, dict):
            raise CheckpointError(f"run config {path} is not a JSON object")
        check_format(config, path)
        return config

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        atomic_write_json(self.path / SUMMARY_FILE, summary)

    def read_summary(self) -> dict[str, Any] | None:
        path = self.path / SUMMARY_FILE
        if not path.is_file():
            return None
        summary = read_json(path, "run summary")
        return summary if isinstance(summary, dict) else None

    def write_metrics(self, history: Iterable[Mapping[str, Any]]) -> None:
        """Rewrite ``metrics.jsonl`` from the full history, one line an epoch.

        Rewriting (instead of appending) keeps the file equal to the history
        of the checkpoint after a resume, with no duplicate epochs.
        """
        lines = [json.dumps(json_safe(row), allow_nan=False) for row in history]
        atomic_write_text(
            self.path / METRICS_FILE, "".join(line + "\n" for line in lines)
        )

    def read_metrics(self) -> list[dict[str, Any]]:
        path = self.path / METRICS_FILE
        if not path.is_file():
            return []
        rows = []
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    raise CheckpointError(
                        f"{path} line {number} is not valid JSON; the file is corrupt"
                    ) from None
        return rows

    # -- weights

    def write_model(self, weights: Mapping[str, mx.array]) -> str:
        """Save the best weights; returns their SHA-256."""
        return atomic_save_safetensors(
            self.path / MODEL_FILE, weights, {"format": str(FORMAT_VERSION)}
        )

    def read_model(self, sha256: str | None = None) -> dict[str, mx.array]:
        return load_safetensors(self.path / MODEL_FILE, "model weights", sha256)

    # -- checkpoints

    def write_checkpoint(
        self,
        epoch: int,
        weights: Mapping[str, mx.array],
        optimizer: Mapping[str, mx.array],
        state: Mapping[str, Any],
        best: tuple[int, Mapping[str, mx.array]] | None = None,
    ) -> None:
        """Save a resumable checkpoint of ``epoch``; ``state.json`` goes last.

        Args:
            epoch (int): The epoch just finished.
            weights (Mapping): Flat parameters of the model after ``epoch``.
            optimizer (Mapping): The flattened optimizer state.
            state (Mapping): JSON-safe loop state (counters, RNG, history).
            best (tuple, optional): ``(best_epoch, weights)`` of the best
                model so far; its file is written once per best epoch.
        """
        folder = self.checkpoint_dir
        folder.mkdir(parents=True, exist_ok=True)
        previous = self.read_checkpoint_state() if self.has_checkpoint() else {}
        names = {
            "weights": f"weights-{epoch:04d}.safetensors",
            "optimizer": f"optimizer-{epoch:04d}.safetensors",
        }
        digests = {
            "weights": atomic_save_safetensors(folder / names["weights"], weights),
            "optimizer": atomic_save_safetensors(
                folder / names["optimizer"], optimizer
            ),
        }
        if best is not None:
            names["best"] = f"best-{best[0]:04d}.safetensors"
            old = previous.get("files", {}).get("best")
            if old == names["best"] and (folder / old).is_file():
                digests["best"] = previous["sha256"]["best"]
            else:
                digests["best"] = atomic_save_safetensors(
                    folder / names["best"], best[1]
                )
        atomic_write_json(
            folder / STATE_FILE,
            {
                "format": FORMAT_VERSION,
                **state,
                "epoch": epoch,
                "files": names,
                "sha256": digests,
            },
        )
        for leftover in folder.iterdir():
            if _EPOCH_FILE.match(leftover.name) and leftover.name not in names.values():
                with contextlib.suppress(OSError):
                    leftover.unlink()
        self._remove_temporaries(folder)

    def has_checkpoint(self) -> bool:
        return (self.checkpoint_dir / STATE_FILE).is_file()

    def read_checkpoint_state(self) -> dict[str, Any]:
        """The JSON part of the last checkpoint (no tensors loaded).

        Raises:
            CheckpointError: there is none or it cannot be read.
        """
        path = self.checkpoint_dir / STATE_FILE
        if not path.is_file():
            raise CheckpointError(
                f"{self.path} has no checkpoint to resume from ({CHECKPOINT_DIR}/"
                f"{STATE_FILE} is missing); start a new run instead"
            )
        state = read_json(path, "checkpoint state")
        if not isinstance(state, dict) or not isinstance(state.get("files"), dict):
            raise CheckpointError(f"checkpoint state {path} is not a checkpoint")
        check_format(state, path)
        return state

    def read_checkpoint(
        self,
    ) -> tuple[
        dict[str, Any],
        dict[str, mx.array],
        dict[str, mx.array],
        dict[str, mx.array] | None,
    ]:
        """The last complete checkpoint: ``(state, weights, optimizer, best)``.

        Raises:
            CheckpointError: there is none, or its files are broken.
        """
        state = self.read_checkpoint_state()
        files, digests = state["files"], state.get("sha256", {})

        def load(key: str, what: str) -> dict[str, mx.array]:
            return load_safetensors(
                self.checkpoint_dir / str(files[key]), what, digests.get(key)
            )

        try:
            weights = load("weights", "checkpoint weights")
            optimizer = load("optimizer", "checkpoint optimizer state")
            best = load("best", "checkpoint best weights") if "best" in files else None
        except KeyError as error:
            raise CheckpointError(
                f"checkpoint state in {self.checkpoint_dir} names no {error} file; "
                "the checkpoint is damaged"
            ) from None
        return state, weights, optimizer, best


def check_format(record: Mapping[str, Any], path: str | Path) -> None:
    """Refuse a record written by a newer version of the run format."""
    version = record.get("format", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(
            f"{path} has format {version!r}; expected an integer format version"
        )
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written in run format {version}, newer than the "
            f"format {FORMAT_VERSION} this ncp reads; upgrade ncp-core to load it"
        )
