"""Four small UCR/UEA archive datasets shipped inside the package.

The original ``.ts`` files of the UEA & UCR Time Series Classification Archive
(timeseriesclassification.com) are stored gzip-compressed in
``ncp_core/data/bundled/`` with the archive's train/test split; see
``ncp_core/data/README.md`` for their provenance, licence and citations.
They are read only when asked for, through :func:`load_bundled`, and this
module registers them with the plugin system under lower-case snake names.
"""

from __future__ import annotations

import functools
import gzip
from collections.abc import Callable
from importlib import resources
from typing import Any

from ncp_core.data.dataset import SequenceDataset
from ncp_core.data.readers import _build, _parse_ts
from ncp_core.errors import DataError
from ncp_core.hookspecs import hookimpl

__all__ = ["BUNDLED", "CITATION", "bundled_files", "load_bundled"]

#: One-line summary of each bundled dataset, by registry name.
BUNDLED: dict[str, str] = {
    "japanese_vowels": (
        "JapaneseVowels (UEA): 9 speakers from 12 LPC cepstrum coefficients, "
        "270 train / 370 test, 12 channels, lengths 7-29"
    ),
    "basic_motions": (
        "BasicMotions (UEA): 4 activities from a smart watch's accelerometer and "
        "gyroscope, 40 train / 40 test, 6 channels, length 100"
    ),
    "gun_point": (
        "GunPoint (UCR): gun-draw versus point from hand X position, "
        "50 train / 150 test, 1 channel, length 150"
    ),
    "italy_power_demand": (
        "ItalyPowerDemand (UCR): winter versus summer days from hourly power "
        "demand, 67 train / 1029 test, 1 channel, length 24"
    ),
}

#: Archive file stem of each bundled dataset.
_ARCHIVE_NAMES: dict[str, str] = {
    "japanese_vowels": "JapaneseVowels",
    "basic_motions": "BasicMotions",
    "gun_point": "GunPoint",
    "italy_power_demand": "ItalyPowerDemand",
}

#: Citation line stored in each bundled dataset's ``source``.
CITATION = (
    "UEA & UCR Time Series Classification Archive, timeseriesclassification.com; "
    "Dau et al. (2019), The UCR time series archive, IEEE/CAA J. Autom. Sinica "
    "6(6); Bagnall et al. (2018), The UEA multivariate time series "
    "classification archive, 2018, arXiv:1811.00075"
)


def bundled_files(name: str) -> tuple[str, str]:
    """Package-relative paths of a bundled dataset's train and test files.

    Args:
        name (str): A key of :data:`BUNDLED`.

    Returns:
        tuple: ``("bundled/<Name>_TRAIN.ts.gz", "bundled/<Name>_TEST.ts.gz")``.

    Raises:
        DataError: ``name`` is not a bundled dataset.
    """
    archive = _ARCHIVE_NAMES.get(name)
    if archive is None:
        raise DataError(
            f"no bundled dataset {name!r}; expected one of "
            f"{', '.join(sorted(BUNDLED))} (or read a file with read_dataset)"
        )
    return (f"bundled/{archive}_TRAIN.ts.gz", f"bundled/{archive}_TEST.ts.gz")


def _resource_text(relative: str) -> str:
    """Decompress and decode one bundled file."""
    resource = resources.files("ncp_core.data").joinpath(relative)
    try:
        raw = resource.read_bytes()
    except OSError as exc:
        raise DataError(
            f"the bundled file ncp_core/data/{relative} cannot be read ({exc}); "
            f"the installation is incomplete: reinstall ncp-core"
        ) from exc
    return gzip.decompress(raw).decode("utf-8")


def load_bundled(name: str) -> SequenceDataset:
    """Load one of the bundled archive datasets with its original split.

    Args:
        name (str): ``"japanese_vowels"``, ``"basic_motions"``, ``"gun_point"``
            or ``"italy_power_demand"``.

    Returns:
        SequenceDataset: A new, validated dataset on every call.

    Raises:
        DataError: ``name`` is unknown or the bundled files are missing.
    """
    train_file, test_file = bundled_files(name)
    train = _parse_ts(_resource_text(train_file), f"ncp_core/data/{train_file}")
    test = _parse_ts(_resource_text(test_file), f"ncp_core/data/{test_file}")
    return _build(name, train, test, summary=BUNDLED[name], source=CITATION)


@hookimpl
def ncp_register_datasets(register: Callable[..., Any]) -> None:
    """Register the bundled datasets with the plugin system.

    Args:
        register (Callable): ``register(name, loader, summary="")``.
    """
    for name in BUNDLED:
        register(name, functools.partial(load_bundled, name), summary=BUNDLED[name])
