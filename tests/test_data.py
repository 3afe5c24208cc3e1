"""Tests of ncp_core.data: bundled archive datasets, readers, labels, scaling."""

from __future__ import annotations

import gzip
import hashlib
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pluggy
import pytest

import ncp_core.hookspecs
from ncp_core.data import (
    BUNDLED,
    SequenceDataset,
    Standardizer,
    decode_labels,
    encode_labels,
    load_bundled,
    read_csv,
    read_dataset,
    read_npz,
    read_ts,
    read_tsv,
    split_train_test,
    write_npz,
)
from ncp_core.data import bundled as bundled_module
from ncp_core.errors import DataError

# ---------------------------------------------------------------------------
# Bundled archive datasets
# ---------------------------------------------------------------------------

ARCHIVE_SIZES = {
    # name: (n_train, n_test, channels, classes, padded length)
    "japanese_vowels": (270, 370, 12, 9, 29),
    "basic_motions": (40, 40, 6, 4, 100),
    "gun_point": (50, 150, 1, 2, 150),
    "italy_power_demand": (67, 1029, 1, 2, 24),
}

DECOMPRESSED_SHA256 = {
    "JapaneseVowels_TRAIN": (
        "68a430eabd919cc77f40b1f5f3bc0dcafacc1486bca9260785aeb7d262cc78cd"
    ),
    "JapaneseVowels_TEST": (
        "b3d41d6a0ca3bcad3afb9ca7d4365382aa51341e2e58bae2a574babdda5b9462"
    ),
    "BasicMotions_TRAIN": (
        "8dc43cc6306cb679c888c01e26f91772ac4441a916da43bac8b79734a538b9d6"
    ),
    "BasicMotions_TEST": (
        "79213102bc6fca1a398ad98ce1185dff0208fa3d1465e687f48288946b0ff8dc"
    ),
    "GunPoint_TRAIN": (
        "f842401779fd9800d247d8b33121a1a4643710a19b24917dbdd9a060ca8630d5"
    ),
    "GunPoint_TEST": (
        "79332750788a6227b325b96bd0d70130c8eb707b9731f8d7dec62b7a7d36017e"
    ),
    "ItalyPowerDemand_TRAIN": (
        "341269cb7e6cef96846b30e774580beec79addb93848ba360145219115a74b7c"
    ),
    "ItalyPowerDemand_TEST": (
        "26122451f87dd0387ef90b18bc8a86c041371b8a1c068004922b939971247144"
    ),
}


def _bundled_text(stem: str) -> str:
    """Decompressed text of one bundled file, read without the library."""
    path = resources.files("ncp_core.data").joinpath(f"bundled/{stem}.ts.gz")
    return gzip.decompress(path.read_bytes()).decode("utf-8")


def _raw_data_lines(stem: str) -> list[str]:
    """The lines after @data of a bundled file."""
    lines = [ln.strip() for ln in _bundled_text(stem).splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if ln.lower() == "@data")
    return lines[start + 1 :]


@pytest.fixture(scope="module")
def bundled() -> dict[str, SequenceDataset]:
    return {name: load_bundled(name) for name in BUNDLED}


def test_bundled_names_are_the_four_archive_datasets():
    assert sorted(BUNDLED) == [
        "basic_motions",
        "gun_point",
        "italy_power_demand",
        "japanese_vowels",
    ]


@pytest.mark.parametrize("name", sorted(ARCHIVE_SIZES))
def test_bundled_sizes_match_the_archive(bundled, name):
    n_train, n_test, channels, classes, length = ARCHIVE_SIZES[name]
    ds = bundled[name]
    assert ds.name == name
    assert (ds.n_train, ds.n_test) == (n_train, n_test)
    assert ds.channels == channels
    assert ds.num_classes == classes
    assert ds.length == length
    assert ds.X_train.shape == (n_train, length, channels)
    assert ds.X_test.shape == (n_test, length, channels)
    assert ds.X_train.dtype == np.float32
    assert ds.mask_train.dtype == np.bool_
    assert ds.task == "classification"
    assert ds.timespans_train is None
    assert "Dau et al. (2019)" in ds.source
    assert "Bagnall et al. (2018)" in ds.source
    assert ds.summary == BUNDLED[name]


def test_japanese_vowels_lengths_come_from_the_real_series(bundled):
    ds = bundled["japanese_vowels"]
    for stem, lengths in (
        ("JapaneseVowels_TRAIN", ds.lengths_train),
        ("JapaneseVowels_TEST", ds.lengths_test),
    ):
        counted = [len(line.split(":")[0].split(",")) for line in _raw_data_lines(stem)]
        assert lengths.tolist() == counted
    assert ds.lengths_train.min() == 7
    assert ds.lengths_train.max() == 26
    assert ds.lengths_test.min() == 7
    assert ds.lengths_test.max() == 29
    # padding past each series' end is masked out and zero
    for i in (0, 100, 269):
        n = ds.lengths_train[i]
        assert ds.mask_train[i, :n].all()
        assert not ds.mask_train[i, n:].any()
        assert np.all(ds.X_train[i, n:] == 0)


def test_japanese_vowels_classes_and_test_distribution(bundled):
    ds = bundled["japanese_vowels"]
    assert ds.classes == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert all(type(c) is int for c in ds.classes)
    _, train_counts = np.unique(ds.y_train, return_counts=True)
    _, test_counts = np.unique(ds.y_test, return_counts=True)
    assert train_counts.tolist() == [30] * 9
    assert test_counts.tolist() == [31, 35, 88, 44, 29, 24, 40, 50, 29]


def test_basic_motions_string_labels_and_first_values(bundled):
    ds = bundled["basic_motions"]
    assert ds.classes == ["Badminton", "Running", "Standing", "Walking"]
    first = _raw_data_lines("BasicMotions_TRAIN")[0].split(":")
    assert ds.y_train[0] == first[-1]
    for c in range(6):
        expected = [float(v) for v in first[c].split(",") if v]
        np.testing.assert_allclose(ds.X_train[0, :, c], expected, rtol=1e-6)
    assert ds.mask_train.all() and ds.mask_test.all()


def test_gun_point_and_italy_values_and_class_balance(bundled):
    gp = bundled["gun_point"]
    last = _raw_data_lines("GunPoint_TEST")[-1].split(":")
    np.testing.assert_allclose(
        gp.X_test[-1, :, 0], [float(v) for v in last[0].split(",")], rtol=1e-6
    )
    assert gp.y_test[-1] == int(last[1])
    assert np.bincount(gp.y_train).tolist() == [0, 24, 26]
    assert np.bincount(gp.y_test).tolist() == [0, 76, 74]
    ipd = bundled["italy_power_demand"]
    assert np.bincount(ipd.y_train).tolist() == [0, 34, 33]
    assert np.bincount(ipd.y_test).tolist() == [0, 513, 516]
    assert ipd.lengths_test.tolist() == [24] * 1029


@pytest.mark.parametrize("stem", sorted(DECOMPRESSED_SHA256))
def test_bundled_files_are_the_unchanged_archive_files(stem):
    text = _bundled_text(stem)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert digest == DECOMPRESSED_SHA256[stem]


def test_bundled_data_is_small_on_disk():
    folder = resources.files("ncp_core.data").joinpath("bundled")
    sizes = [f.stat().st_size for f in Path(str(folder)).glob("*.ts.gz")]
    assert len(sizes) == 8
    assert sum(sizes) < 1_000_000


def test_load_bundled_unknown_name_lists_the_known_ones():
    with pytest.raises(DataError, match=r"no bundled dataset 'gunpoint'.*gun_point"):
        load_bundled("gunpoint")


def test_load_bundled_returns_independent_copies():
    a = load_bundled("italy_power_demand")
    a.X_train[:] = 0
    b = load_bundled("italy_power_demand")
    assert np.abs(b.X_train).sum() > 0


def test_hookimpl_registers_the_bundled_datasets_through_pluggy():
    pm = pluggy.PluginManager(ncp_core.hookspecs.PROJECT_NAME)
    pm.add_hookspecs(ncp_core.hookspecs)
    pm.register(bundled_module)
    seen = {}

    def register(name, loader, summary=""):
        seen[name] = (loader, summary)

    pm.hook.ncp_register_datasets(register=register)
    assert sorted(seen) == sorted(BUNDLED)
    loader, summary = seen["gun_point"]
    assert summary == BUNDLED["gun_point"]
    ds = loader()
    assert (ds.name, ds.n_train, ds.n_test) == ("gun_point", 50, 150)


# ---------------------------------------------------------------------------
# .ts reader
# ---------------------------------------------------------------------------

TS_TRAIN = """\
# a toy file
@problemName Toy
@timeStamps false
@missing true
@univariate false
@dimensions 2
@equalLength false
@classLabel true a b
@data
1.0,2.0,3.0:10,20,30:a
4.0,?,6.0,7.0:40,50,60,70:b
"""

TS_TEST = """\
@problemName Toy
@univariate false
@dimensions 2
@equalLength false
@classLabel true a b
@data
0.5,NaN,1.5:5,6,7:b
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _write_ts_pair(folder: Path, train: str = TS_TRAIN, test: str = TS_TEST) -> Path:
    _write(folder / "Toy_TEST.ts", test)
    return _write(folder / "Toy_TRAIN.ts", train)


def test_ts_unequal_lengths_and_missing_values(tmp_path):
    ds = read_ts(_write_ts_pair(tmp_path))
    assert ds.name == "Toy"
    assert ds.length == 4
    np.testing.assert_array_equal(ds.X_train[0], [[1, 10], [2, 20], [3, 30], [0, 0]])
    np.testing.assert_array_equal(ds.mask_train[0], [True, True, True, False])
    # '?' in channel 1 masks the whole step and zeroes both channels there
    np.testing.assert_array_equal(ds.X_train[1], [[4, 40], [0, 0], [6, 60], [7, 70]])
    np.testing.assert_array_equal(ds.mask_train[1], [True, False, True, True])
    np.testing.assert_array_equal(ds.X_test[0], [[0.5, 5], [0, 0], [1.5, 7], [0, 0]])
    np.testing.assert_array_equal(ds.mask_test[0], [True, False, True, False])
    assert ds.lengths_train.tolist() == [3, 4]
    assert ds.lengths_test.tolist() == [3]
    assert ds.y_train.tolist() == ["a", "b"]
    assert ds.classes == ["a", "b"]


def test_ts_test_path_finds_train_partner_and_gz_is_read(tmp_path):
    _write_ts_pair(tmp_path)
    from_test = read_dataset(tmp_path / "Toy_TEST.ts")
    assert (from_test.n_train, from_test.n_test) == (2, 1)
    gz_dir = tmp_path / "gz"
    gz_dir.mkdir()
    for split, text in (("TRAIN", TS_TRAIN), ("TEST", TS_TEST)):
        (gz_dir / f"Toy_{split}.ts.gz").write_bytes(gzip.compress(text.encode()))
    from_gz = read_dataset(gz_dir / "Toy_TRAIN.ts.gz", name="toy")
    assert from_gz.name == "toy"
    np.testing.assert_array_equal(from_gz.X_train, from_test.X_train)
    np.testing.assert_array_equal(from_gz.mask_test, from_test.mask_test)


@pytest.mark.parametrize(
    ("train_text", "pattern"),
    [
        (
            TS_TRAIN.replace("@data\n", ""),
            r"Toy_TRAIN\.ts, line 9: expected a header tag .*got '1\.0,2\.0",
        ),
        (
            TS_TRAIN.replace("@missing true", "@colour blue"),
            r"line 4: unknown header tag '@colour'; expected one of .*@classLabel",
        ),
        (
            TS_TRAIN.replace("@classLabel true a b", "@classLabel true"),
            r"line 8: @classLabel true lists no labels",
        ),
        (
            TS_TRAIN.replace("4.0,?,6.0,7.0:40,50,60,70:b", "4.0,5.0:b"),
            r"line 11: expected 2 channel\(s\) separated by ':' before the label, "
            r"found 1",
        ),
        (
            TS_TRAIN.replace("30:a", "30:c"),
            r"line 10: label 'c' is not among the labels declared by @classLabel",
        ),
        (
            TS_TRAIN.replace("@timeStamps false", "@timeStamps true"),
            r"line 3: timestamped \.ts files \(@timeStamps true\) are not supported",
        ),
        (
            TS_TRAIN.replace("1.0,2.0,3.0:", "1.0,abc,3.0:"),
            r"line 10: value 2 of channel 1 is 'abc'; expected a number",
        ),
        (
            TS_TRAIN.replace("1.0,2.0,3.0:", "1.0,inf,3.0:"),
            r"line 10: value 2 of channel 1 is 'inf'; expected a finite number",
        ),
        (
            TS_TRAIN.replace("10,20,30", "10,20"),
            r"line 10: channel 2 has 2 values but channel 1 has 3",
        ),
    ],
)
def test_ts_broken_files_name_file_and_line(tmp_path, train_text, pattern):
    path = _write_ts_pair(tmp_path, train=train_text)
    with pytest.raises(DataError, match=pattern):
        read_dataset(path)


def test_ts_without_data_line(tmp_path):
    text = TS_TRAIN.split("@data")[0]
    path = _write_ts_pair(tmp_path, train=text)
    with pytest.raises(DataError, match=r"Toy_TRAIN\.ts: no @data line"):
        read_ts(path)


def test_ts_class_only_in_test_is_named(tmp_path):
    train = TS_TRAIN.replace("@classLabel true a b", "@classLabel true a b z").replace(
        ":b\n", ":a\n"
    )
    test = TS_TEST.replace("@classLabel true a b", "@classLabel true a b z").replace(
        ":b\n", ":z\n"
    )
    path = _write_ts_pair(tmp_path, train=train, test=test)
    with pytest.raises(DataError, match=r"class 'z' occur\(s\) only in the test split"):
        read_ts(path)


def test_ts_regression_targets(tmp_path):
    train = (
        "@problemName Reg\n@univariate true\n@equalLength true\n@seriesLength 3\n"
        "@targetLabel true\n@data\n1,2,3:0.5\n4,5,6:-1.25\n"
    )
    test = train.replace("0.5", "2.0")
    _write(tmp_path / "Reg_TEST.ts", test)
    ds = read_ts(_write(tmp_path / "Reg_TRAIN.ts", train))
    assert ds.task == "regression"
    assert ds.y_train.dtype == np.float32
    assert ds.y_train.tolist() == [0.5, -1.25]
    assert ds.y_test.tolist() == [2.0, -1.25]
    with pytest.raises(DataError, match="regression task, so it has no classes"):
        _ = ds.classes


def test_ts_series_length_must_match_the_header(tmp_path):
    train = (
        "@problemName Reg\n@univariate true\n@equalLength true\n@seriesLength 3\n"
        "@classLabel true 1 2\n@data\n1,2,3:1\n4,5:2\n"
    )
    _write(tmp_path / "Eq_TEST.ts", train)
    with pytest.raises(DataError, match=r"line 8: the series has 2 values per channel"):
        read_ts(_write(tmp_path / "Eq_TRAIN.ts", train))


def test_train_file_without_partner_is_an_error(tmp_path):
    path = _write(tmp_path / "Lonely_TRAIN.ts", TS_TRAIN)
    with pytest.raises(DataError, match=r"partner Lonely_TEST\.ts is not in"):
        read_dataset(path)


# ---------------------------------------------------------------------------
# .tsv, .csv and .npz readers; round trips
# ---------------------------------------------------------------------------

# Three univariate series of different lengths; series 1 has a missing value.
SERIES = [[0.5, 1.5, -2.0, 4.0], [3.0, np.nan, 1.0], [7.0, 8.0]]
LABELS = [1, 2, 1]
TEST_SERIES = [[2.0, 2.5, 3.0], [-1.0]]
TEST_LABELS = [2, 1]


def _fmt(v: float) -> str:
    return "NaN" if np.isnan(v) else repr(float(v))


def _write_tsv(path: Path, series, labels, width: int = 5) -> Path:
    rows = []
    for s, y in zip(series, labels, strict=True):
        padded = list(s) + [np.nan] * (width - len(s))
        rows.append("\t".join([str(y), *(_fmt(v) for v in padded)]))
    return _write(path, "\n".join(rows) + "\n")


def _write_csv(path: Path, series, labels, header: bool = True) -> Path:
    rows = ["label,t0,t1,t2,t3"] if header else []
    for s, y in zip(series, labels, strict=True):
        rows.append(
            ",".join([str(y), *("" if np.isnan(v) else repr(float(v)) for v in s)])
        )
    return _write(path, "\n".join(rows) + "\n")


def _padded(series, width: int) -> np.ndarray:
    out = np.full((len(series), width), np.nan)
    for i, s in enumerate(series):
        out[i, : len(s)] = s
    return out


def test_tsv_nan_padding_and_missing_values(tmp_path):
    _write_tsv(tmp_path / "U_TEST.tsv", TEST_SERIES, TEST_LABELS)
    ds = read_tsv(_write_tsv(tmp_path / "U_TRAIN.tsv", SERIES, LABELS))
    # the files are padded to 5 columns, but the longest series has 4 values
    assert ds.length == 4
    assert ds.channels == 1
    assert ds.lengths_train.tolist() == [4, 3, 2]
    assert ds.lengths_test.tolist() == [3, 1]
    np.testing.assert_array_equal(ds.mask_train[1], [True, False, True, False])
    np.testing.assert_array_equal(ds.X_train[1, :, 0], [3.0, 0.0, 1.0, 0.0])
    assert ds.y_train.dtype == np.int64
    assert ds.y_train.tolist() == [1, 2, 1]


def test_tsv_csv_npz_round_trip_give_identical_arrays(tmp_path):
    _write_tsv(tmp_path / "R_TEST.tsv", TEST_SERIES, TEST_LABELS)
    from_tsv = read_dataset(_write_tsv(tmp_path / "R_TRAIN.tsv", SERIES, LABELS))
    _write_csv(tmp_path / "R_TEST.csv", TEST_SERIES, TEST_LABELS)
    from_csv = read_dataset(_write_csv(tmp_path / "R_TRAIN.csv", SERIES, LABELS))
    np.savez(
        tmp_path / "R.npz",
        X_train=_padded(SERIES, 4),
        y_train=np.array(LABELS),
        X_test=_padded(TEST_SERIES, 4),
        y_test=np.array(TEST_LABELS),
    )
    from_npz = read_dataset(tmp_path / "R.npz")
    written = write_npz(from_tsv, tmp_path / "again")
    assert written.name == "again.npz"
    again = read_npz(written)
    for other in (from_csv, from_npz, again):
        for key in (
            "X_train",
            "X_test",
            "mask_train",
            "mask_test",
            "y_train",
            "y_test",
        ):
            a, b = getattr(from_tsv, key), getattr(other, key)
            assert a.dtype == b.dtype, key
            np.testing.assert_array_equal(a, b, err_msg=key)
    assert from_tsv.name == from_csv.name == "R"
    assert again.name == "R"
    assert again.source == from_tsv.source


def test_csv_without_partner_is_split_stratified_with_seed_0(tmp_path):
    rng = np.random.default_rng(5)
    labels = ["a"] * 10 + ["b"] * 5
    series = [list(rng.normal(size=6)) for _ in labels]
    path = _write_csv(tmp_path / "whole.csv", series, labels, header=False)
    ds = read_csv(path)
    assert (ds.n_train, ds.n_test) == (12, 3)
    assert sorted(ds.y_test.tolist()) == ["a", "a", "b"]
    assert "seed 0" in ds.source
    train_idx, test_idx = split_train_test(np.array(labels))
    assert test_idx.tolist() == sorted(test_idx.tolist())
    assert len(set(train_idx) | set(test_idx)) == 15
    expected = np.array(series)[test_idx][:, :, None]
    np.testing.assert_allclose(ds.X_test, expected, rtol=1e-6)
    again = read_csv(path)
    np.testing.assert_array_equal(again.X_test, ds.X_test)


def test_csv_header_is_detected_and_bad_value_named(tmp_path):
    headerless = _write_csv(tmp_path / "h_TRAIN.csv", SERIES, LABELS, header=False)
    _write_csv(tmp_path / "h_TEST.csv", TEST_SERIES, TEST_LABELS, header=True)
    ds = read_csv(headerless)
    assert ds.n_train == 3 and ds.n_test == 2
    bad = tmp_path / "bad_TRAIN.csv"
    _write(bad, "1,0.5,0.25\n2,0.5,oops\n")
    _write(tmp_path / "bad_TEST.csv", "1,0.5,0.25\n")
    with pytest.raises(DataError, match=r"bad_TRAIN\.csv, line 2: value 2 .*'oops'"):
        read_csv(bad)


def test_npz_nan_not_covered_by_mask_is_an_error(tmp_path):
    x = np.ones((2, 3, 2))
    x[1, 1, 0] = np.nan
    mask = np.ones((2, 3), dtype=bool)
    np.savez(
        tmp_path / "m.npz",
        X_train=x,
        y_train=np.array(["u", "v"]),
        X_test=np.ones((1, 3, 2)),
        y_test=np.array(["u"]),
        mask_train=mask,
        mask_test=np.ones((1, 3), dtype=bool),
    )
    with pytest.raises(
        DataError, match=r"X_train\[1, 1, 0\] is nan but mask_train\[1, 1\] is True"
    ):
        read_npz(tmp_path / "m.npz")


def test_npz_nan_under_mask_is_zeroed_and_timespans_kept(tmp_path):
    x = np.arange(12, dtype=np.float64).reshape(2, 3, 2) + 1
    x[0, 2] = np.nan
    mask = np.array([[True, True, False], [True, True, True]])
    spans = np.array([[0.5, 1.0, np.nan], [1.0, 2.0, 3.0]])
    np.savez(
        tmp_path / "ok.npz",
        X_train=x,
        y_train=np.array([3, 4]),
        X_test=x[:1, :2],
        y_test=np.array([3]),
        mask_train=mask,
        mask_test=mask[:1, :2],
        timespans_train=spans,
        timespans_test=spans[:1, :2],
        task=np.array("classification"),
    )
    ds = read_npz(tmp_path / "ok.npz")
    np.testing.assert_array_equal(ds.X_train[0, 2], [0, 0])
    np.testing.assert_array_equal(ds.X_train[1, 2], [11, 12])
    np.testing.assert_array_equal(ds.timespans_train, [[0.5, 1.0, 0.0], [1, 2, 3]])
    # the test split was stored 2 steps long and is padded to 3
    assert ds.X_test.shape == (1, 3, 2)
    np.testing.assert_array_equal(ds.mask_test, [[True, True, False]])
    np.testing.assert_array_equal(ds.timespans_test, [[0.5, 1.0, 0.0]])


def test_npz_univariate_regression(tmp_path):
    np.savez(
        tmp_path / "reg.npz",
        X_train=np.array([[1.0, 2.0], [3.0, np.nan]]),
        y_train=np.array([0.1, 0.2]),
        X_test=np.array([[5.0, 6.0]]),
        y_test=np.array([0.3]),
        task=np.array("regression"),
    )
    ds = read_npz(tmp_path / "reg.npz")
    assert ds.task == "regression"
    assert ds.X_train.shape == (2, 2, 1)
    assert ds.lengths_train.tolist() == [2, 1]
    np.testing.assert_allclose(ds.y_test, [0.3])


def test_npz_float_labels_that_are_not_integers_suggest_regression(tmp_path):
    np.savez(
        tmp_path / "f.npz",
        X_train=np.ones((2, 2)),
        y_train=np.array([0.5, 1.5]),
        X_test=np.ones((1, 2)),
        y_test=np.array([0.5]),
    )
    with pytest.raises(DataError, match=r"non-integer numbers.*task='regression'"):
        read_npz(tmp_path / "f.npz")


def test_unknown_suffix_and_missing_file(tmp_path):
    with pytest.raises(
        DataError, match=r"unknown format '\.xyz'.*expected \.ts, \.tsv, \.npz or \.csv"
    ):
        read_dataset(tmp_path / "data.xyz")
    with pytest.raises(DataError, match=r"no such file: .*nothere\.ts does not exist"):
        read_dataset(tmp_path / "nothere.ts")


# ---------------------------------------------------------------------------
# SequenceDataset.validate
# ---------------------------------------------------------------------------


def _toy(**changes) -> SequenceDataset:
    fields = {
        "name": "toy",
        "X_train": np.array([[[1.0], [2.0], [0.0]], [[3.0], [4.0], [5.0]]]),
        "y_train": np.array(["a", "b"]),
        "X_test": np.array([[[6.0], [0.0], [0.0]]]),
        "y_test": np.array(["a"]),
        "mask_train": np.array([[True, True, False], [True, True, True]]),
        "mask_test": np.array([[True, False, False]]),
    }
    fields.update(changes)
    return SequenceDataset(**fields)


def test_validate_accepts_a_good_dataset_and_properties():
    ds = _toy().validate()
    assert ds.lengths_train.tolist() == [2, 3]
    assert ds.lengths_test.tolist() == [1]
    assert ds.classes == ["a", "b"]
    assert ds.num_classes == 2
    assert ds.describe() == (
        "toy: 2 train / 1 test series, 1 channel, lengths 1-3, 2 classes"
    )


def test_length_ignores_missing_steps_inside_a_series():
    mask = np.array([[True, False, True], [True, True, True]])
    x = np.array([[[1.0], [0.0], [2.0]], [[3.0], [4.0], [5.0]]])
    ds = _toy(mask_train=mask, X_train=x).validate()
    assert ds.lengths_train.tolist() == [3, 3]


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        (
            {"X_train": np.array([[[1.0], [np.nan], [0.0]], [[3.0], [4.0], [5.0]]])},
            r"X_train\[0, 1, 0\] is nan at an observed step",
        ),
        (
            {"X_test": np.array([[[6.0], [np.inf], [0.0]]])},
            r"X_test\[0, 1, 0\] is inf at a masked-out step",
        ),
        (
            {"X_test": np.array([[[6.0], [9.0], [0.0]]])},
            r"X_test\[0, 1, 0\] is 9\.0 but mask_test\[0, 1\] is False",
        ),
        ({"y_train": np.array(["a", ""])}, r"label 1 of the train split is missing"),
        (
            {"y_train": np.array(["a", None], dtype=object)},
            r"label 1 of the train split is missing \(None\)",
        ),
        (
            {"y_train": np.array([1.0, np.nan]), "y_test": np.array([1.0])},
            r"label 1 of the train split is missing \(nan\)",
        ),
        ({"y_test": np.array(["c"])}, r"class 'c' occur\(s\) only in the test split"),
        ({"y_train": np.array(["a"])}, r"y_train has shape \(1,\); expected 2 targets"),
        (
            {"mask_test": np.array([[True, False]])},
            r"mask_test has shape \(1, 2\); expected \(1, 3\)",
        ),
        (
            {"X_test": np.zeros((1, 3, 2)), "mask_test": np.ones((1, 3))},
            r"X_train has steps and channels \(3, 1\) but X_test has \(3, 2\)",
        ),
        ({"task": "ranking"}, r"unknown task 'ranking'"),
        (
            {"mask_test": np.zeros((1, 3), dtype=bool), "X_test": np.zeros((1, 3, 1))},
            r"series 0 of the test split has no observed step",
        ),
    ],
)
def test_validate_rejects_bad_datasets(changes, pattern):
    with pytest.raises(DataError, match=pattern):
        _toy(**changes).validate()


# ---------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------


def test_encode_labels_learns_classes_from_train():
    int_train, int_test, classes = encode_labels(
        np.array(["walk", "run", "walk", "sit"]), np.array(["sit", "walk"])
    )
    assert classes == ["run", "sit", "walk"]
    assert int_train.tolist() == [2, 0, 2, 1]
    assert int_test.tolist() == [1, 2]
    assert int_train.dtype == np.int64
    assert json.loads(json.dumps(classes)) == classes
    assert decode_labels(int_test, classes) == ["sit", "walk"]


def test_encode_labels_integer_classes_are_plain_ints_sorted_numerically():
    int_train, _, classes = encode_labels(np.array([10, 2, 1, 2]), [1])
    assert classes == [1, 2, 10]
    assert all(type(c) is int for c in classes)
    assert int_train.tolist() == [2, 1, 0, 1]
    assert json.dumps(classes) == "[1, 2, 10]"


def test_encode_labels_errors():
    with pytest.raises(
        DataError, match=r"classes 'x', 'y' occur\(s\) only in the test"
    ):
        encode_labels(["a", "b"], ["y", "a", "x"])
    with pytest.raises(DataError, match=r"label 0 of the test split is missing"):
        encode_labels(["a"], [None])
    with pytest.raises(DataError, match=r"labels are int and str"):
        encode_labels(np.array([1, 2]), np.array(["1"]))
    with pytest.raises(DataError, match=r"class index 3 is out of range for 3"):
        decode_labels([0, 3], ["a", "b", "c"])


# ---------------------------------------------------------------------------
# Standardizer
# ---------------------------------------------------------------------------


def test_standardizer_uses_train_statistics_only(bundled):
    ds = bundled["japanese_vowels"]
    scaler = Standardizer().fit(ds.X_train, ds.mask_train)
    observed_train = ds.X_train[ds.mask_train].astype(np.float64)
    np.testing.assert_allclose(scaler.mean, observed_train.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(scaler.std, observed_train.std(axis=0), rtol=1e-10)
    # padded zeros did not enter the statistics: with them the mean would differ
    assert not np.allclose(scaler.mean, ds.X_train.reshape(-1, 12).mean(axis=0))
    test_stats = Standardizer().fit(ds.X_test, ds.mask_test)
    assert not np.allclose(scaler.mean, test_stats.mean)
    z_train = scaler.transform(ds.X_train, ds.mask_train)
    z_test = scaler.transform(ds.X_test, ds.mask_test)
    np.testing.assert_allclose(z_train[ds.mask_train].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(z_train[ds.mask_train].std(axis=0), 1, atol=1e-5)
    # the test split is scaled with the train statistics, so it is not exactly 0/1
    assert np.abs(z_test[ds.mask_test].mean(axis=0)).max() > 1e-3
    assert np.all(z_train[~ds.mask_train] == 0)
    assert np.all(z_test[~ds.mask_test] == 0)
    assert z_train.dtype == np.float32


def test_standardizer_small_values_and_constant_channel():
    x = np.array([[[1.0, 5.0], [3.0, 5.0], [100.0, 100.0]]])
    mask = np.array([[True, True, False]])
    scaler = Standardizer().fit(x, mask)
    assert scaler.mean.tolist() == [2.0, 5.0]
    assert scaler.std.tolist() == [1.0, 1.0]  # channel 2 is constant: std 1
    out = scaler.transform(x, mask)
    np.testing.assert_array_equal(out[0], [[-1, 0], [1, 0], [0, 0]])
    back = scaler.inverse_transform(out, mask)
    np.testing.assert_array_equal(back[0], [[1, 5], [3, 5], [0, 0]])


def test_standardizer_dict_round_trip_and_errors():
    x = np.array([[[1.0], [2.0], [4.0]]])
    scaler = Standardizer().fit(x)
    data = json.loads(json.dumps(scaler.to_dict()))
    rebuilt = Standardizer.from_dict(data)
    np.testing.assert_array_equal(rebuilt.transform(x), scaler.transform(x))
    assert rebuilt.to_dict() == scaler.to_dict()
    with pytest.raises(DataError, match="not fitted; call fit"):
        Standardizer().transform(x)
    with pytest.raises(DataError, match="X has 2 channels but the Standardizer"):
        scaler.transform(np.zeros((1, 3, 2)))
    with pytest.raises(DataError, match="expected a dict with keys 'mean' and 'std'"):
        Standardizer.from_dict({"mean": [0.0]})
    with pytest.raises(DataError, match="finite standard deviations > 0"):
        Standardizer.from_dict({"mean": [0.0], "std": [0.0]})


def test_equal_length_header_without_series_length(tmp_path):
    text = (
        "@problemName E\n@univariate true\n@equalLength true\n"
        "@classLabel true 1 2\n@data\n1,2,3:1\n4,5:2\n"
    )
    _write(tmp_path / "E_TEST.ts", text)
    with pytest.raises(DataError, match=r"line 7: the series has 2 values .*is 3"):
        read_ts(_write(tmp_path / "E_TRAIN.ts", text))


def test_npz_that_is_not_an_archive(tmp_path):
    _write(tmp_path / "junk.npz", "not a zip file\n")
    with pytest.raises(DataError, match=r"junk\.npz is not a readable \.npz archive"):
        read_npz(tmp_path / "junk.npz")
    np.save(tmp_path / "single.npy", np.zeros(3))
    (tmp_path / "single.npy").rename(tmp_path / "single.npz")
    with pytest.raises(DataError, match=r"single\.npz holds a single array"):
        read_dataset(tmp_path / "single.npz")
    np.savez(tmp_path / "keys.npz", X=np.zeros((2, 3)))
    with pytest.raises(DataError, match=r"holds \['X'\]; expected X_train, y_train"):
        read_npz(tmp_path / "keys.npz")


def test_dataset_repr_and_identity_equality():
    ds = _toy()
    assert repr(ds) == (
        "SequenceDataset(name='toy', task='classification', "
        "X_train=(2, 3, 1), X_test=(1, 3, 1))"
    )
    assert ds == ds
    assert ds != _toy()


def test_read_series_reads_a_test_file_alone_in_file_order(tmp_path):
    import gzip
    import importlib.resources

    from ncp_core.data.readers import read_series

    bundled = importlib.resources.files("ncp_core.data") / "bundled"
    raw = (bundled / "JapaneseVowels_TEST.ts.gz").read_bytes()
    alone = tmp_path / "Vowels_TEST.ts"
    alone.write_bytes(gzip.decompress(raw))

    series = read_series(alone)
    assert series.X.shape == (370, 29, 12)
    assert series.mask.sum(axis=1).min() == 7
    assert series.labels[0] == 1 and series.labels[-1] == 9
    assert series.task == "classification"
