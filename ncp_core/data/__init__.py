"""Sequence datasets: the in-memory form, file readers and bundled data.

* :class:`SequenceDataset` holds zero-padded, masked train/test splits.
* :func:`read_dataset` reads ``.ts``, ``.tsv``, ``.npz`` and ``.csv`` files.
* :func:`load_bundled` loads one of four UCR/UEA archive datasets shipped
  with the package (see :data:`BUNDLED`).
* :func:`encode_labels` and :class:`Standardizer` prepare data for training,
  fitted on the train split only.
"""

from __future__ import annotations

from ncp_core.data.bundled import BUNDLED, CITATION, load_bundled
from ncp_core.data.dataset import (
    TASKS,
    SequenceDataset,
    Standardizer,
    decode_labels,
    encode_labels,
)
from ncp_core.data.readers import (
    FORMATS,
    read_csv,
    read_dataset,
    read_npz,
    read_ts,
    read_tsv,
    split_train_test,
    write_npz,
)

__all__ = [
    "BUNDLED",
    "CITATION",
    "FORMATS",
    "TASKS",
    "SequenceDataset",
    "Standardizer",
    "decode_labels",
    "encode_labels",
    "load_bundled",
    "read_csv",
    "read_dataset",
    "read_npz",
    "read_ts",
    "read_tsv",
    "split_train_test",
    "write_npz",
]
