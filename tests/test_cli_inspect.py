"""The inspection commands: wirings, plugins, show, datasets, and ``--version``."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ncp_core import __version__, plugins
from ncp_core.cli import _module_commands, main
from ncp_core.cli.common import CLIError, parse_params, parse_value
from ncp_core.data.dataset import SequenceDataset
from ncp_core.wiring import Wiring

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def core_only(monkeypatch):
    """Only the built-in plugins, and whatever a test registers itself."""
    monkeypatch.setenv("NCP_PLUGINS", "")
    monkeypatch.delenv("NCP_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("NCP_STRICT_PLUGINS", raising=False)
    plugins.reset()
    yield
    plugins.reset()


def ncp(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


class Pair(Wiring):
    """Two neurons exciting each other, with a slow and a fast one."""

    name = "pair"

    def __init__(self, units: int = 2, connected: bool = True) -> None:
        super().__init__(units, 1)
        self.add_group("motor", [0])
        self.add_group("inter", range(1, self.units))
        if connected:
            self.add_synapses([0, 1], [1, 0], 1)
        self.set_time_scales([2.0, 0.5] + [1.0] * (self.units - 2))


def test_version_prints_the_package_version():
    result = ncp("--version")

    assert result.exit_code == 0
    assert result.stdout == f"ncp {__version__}\n"


def test_wirings_json_lists_each_wiring_with_its_plugin():
    result = ncp("wirings", "--json")

    assert result.exit_code == 0
    records = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(records) == {"auto_ncp", "fully_connected", "ncp", "random"}
    auto = records["auto_ncp"]
    assert (auto["plugin"], auto["distribution"], auto["version"]) == (
        "classic",
        "ncp-core",
        __version__,
    )
    assert auto["summary"].startswith("An NCP whose layer sizes")
    assert auto["class"] == "ncp_core.classic.AutoNCP"


def test_wirings_table_shows_plugin_distribution_and_summary():
    plugins.register_wiring(Pair)

    result = ncp("wirings")

    assert result.exit_code == 0
    [row] = [line for line in result.stdout.splitlines() if " pair " in line]
    assert "local" in row
    assert "Two neurons exciting each other" in row
    [auto] = [line for line in result.stdout.splitlines() if " auto_ncp " in line]
    assert f"ncp-core {__version__}" in auto


def test_plugins_header_names_the_python_environment_and_settings():
    result = ncp("plugins")

    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[:3] == [
        f"Python: {sys.executable}",
        f"Environment: {sys.prefix}",
        "Settings: NCP_PLUGINS=''",
    ]
    [classic] = [line for line in lines if "classic (built-in)" in line]
    assert "loaded" in classic and "fully_connected" in classic


def test_plugins_json_reports_every_plugin_with_status_and_hooks():
    result = ncp("plugins", "--json")

    report = json.loads(result.stdout)
    assert report["python"] == sys.executable
    assert report["prefix"] == sys.prefix
    assert report["settings"]["NCP_PLUGINS"] == []
    classic = next(p for p in report["plugins"] if p["name"] == "classic")
    assert classic["status"] == "loaded"
    assert classic["hooks"] == ["ncp_register_wirings"]
    assert classic["wirings"] == ["fully_connected", "random", "ncp", "auto_ncp"]
    assert classic["location"] == str(REPO / "ncp_core" / "classic.py")


def test_plugins_shows_the_error_of_a_failed_plugin(tmp_path, monkeypatch):
    module = f"ncpfake{uuid.uuid4().hex[:8]}_cracked"
    (tmp_path / f"{module}.py").write_text("raise RuntimeError('half-installed')\n")
    info = tmp_path / "fake_cracked-0.7.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fake-cracked\nVersion: 0.7\n"
    )
    (info / "entry_points.txt").write_text(f"[ncp]\ncracked = {module}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    monkeypatch.setenv("NCP_PLUGINS", "cracked")
    plugins.reset()

    result = ncp("plugins")

    assert result.exit_code == 0
    [row] = [
        line for line in result.stdout.splitlines() if line.startswith("│ cracked")
    ]
    assert "failed" in row and "fake-cracked 0.7" in row
    assert (
        "cracked (failed): failed to import: RuntimeError: half-installed"
        in result.stdout
    )
    assert result.stderr.startswith("Warning: ncp plugin 'cracked'")


def test_show_json_describes_the_built_wiring():
    result = ncp(
        "show",
        "auto_ncp",
        "-p",
        "units=16",
        "-p",
        "output_size=2",
        "--input-dim",
        "3",
        "--json",
    )

    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    expected = plugins.get_wiring("auto_ncp", units=16, output_size=2, input_dim=3)
    assert shown["synapses"] == expected.synapse_count
    assert shown["sensory_synapses"] == expected.sensory_synapse_count
    assert shown["excitatory"] + shown["inhibitory"] == expected.synapse_count
    assert shown["excitatory"] == int(np.count_nonzero(expected.adjacency > 0))
    assert shown["density"] == pytest.approx(expected.synapse_count / 256)
    assert shown["groups"] == {"motor": 2, "command": 5, "inter": 9}
    assert shown["layers"] == [9, 5, 2]
    assert shown["params"] == {
        "units": 16,
        "output_size": 2,
        "sparsity_level": 0.5,
        "seed": 22222,
    }
    assert (shown["plugin"], shown["distribution"]) == ("classic", "ncp-core")
    assert shown["problems"] == []
    assert shown["time_scales"] is None


def test_show_prints_time_scales_and_what_validate_found():
    plugins.register_wiring(Pair)

    result = ncp("show", "pair", "-p", "units=3", "-p", "connected=false")

    assert result.exit_code == 0, result.output
    rows = {
        line.split("  ")[0]: line.split("  ", 1)[1].strip()
        for line in result.stdout.splitlines()[1:]
        if "  " in line
    }
    assert rows["parameters"] == "units=3, connected=False"
    assert rows["synapses"] == "0 (0 excitatory, 0 inhibitory)"
    assert rows["groups"] == "motor 1, inter 2"
    assert rows["time scales"] == "0.5 to 2 (3 distinct)"
    assert rows["validate"] == "not built: call build(input_dim) to draw the inputs"


def test_show_writes_a_png_drawing(tmp_path):
    path = tmp_path / "wiring.png"

    result = ncp("show", "ncp", *_ncp_params(), "--input-dim", "2", "--png", str(path))

    assert result.exit_code == 0, result.output
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"drawing           {path}" in result.stdout


def _ncp_params() -> list[str]:
    sizes = {
        "inter_neurons": 4,
        "command_neurons": 3,
        "motor_neurons": 2,
        "sensory_fanout": 2,
        "inter_fanout": 2,
        "recurrent_command_synapses": 3,
        "motor_fanin": 2,
    }
    return [arg for k, v in sizes.items() for arg in ("-p", f"{k}={v}")]


def test_show_accepts_a_qualified_name():
    result = ncp("show", "classic:random", "-p", "units=4", "--json")

    assert json.loads(result.stdout)["synapses"] == 16


# -- errors: exit status 2 and one line ------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "nope"], "Error: unknown wiring 'nope'. Installed wirings:"),
        (["show", "auto_ncp", "-p", "units"], "Error: -p 'units' is not key=value;"),
        (
            ["show", "auto_ncp", "-p", "2x=3"],
            "Error: -p '2x=3': '2x' is not a parameter",
        ),
        (
            ["show", "auto_ncp", "-p", "units=8"],
            "Error: wiring 'auto_ncp' needs the parameter output_size;",
        ),
        (
            [
                "show",
                "auto_ncp",
                "-p",
                "units=8",
                "-p",
                "output_size=2",
                "-p",
                "seeds=1",
            ],
            "Error: wiring 'auto_ncp' has no parameter 'seeds' (did you mean 'seed'?)",
        ),
        (
            ["show", "auto_ncp", "-p", "units=eight", "-p", "output_size=2"],
            "Error: units must be an integer, got 'eight'",
        ),
        (
            ["show", "auto_ncp", "-p", "units=8", "-p", "units=9"],
            "Error: -p units= is given twice",
        ),
    ],
)
def test_a_mistake_prints_one_line_and_exits_with_status_2(args, message):
    result = ncp(*args)

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1


def test_strict_mode_failure_is_one_line_too(tmp_path, monkeypatch):
    module = f"ncpfake{uuid.uuid4().hex[:8]}_gone"
    info = tmp_path / "fake_gone-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fake-gone\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(f"[ncp]\ngone = {module}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("NCP_PLUGINS", "gone")
    monkeypatch.setenv("NCP_STRICT_PLUGINS", "1")
    plugins.reset()

    result = ncp("wirings")

    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ncp plugin 'gone' (entry point 'gone = ")
    assert "(NCP_STRICT_PLUGINS is set)" in result.stderr
    assert result.stderr.count("\n") == 1


def test_an_unknown_wiring_in_a_fresh_process_exits_2_without_traceback():
    environ = dict(os.environ, NCP_PLUGINS="", PYTHONPATH=str(REPO))

    result = subprocess.run(
        [sys.executable, "-m", "ncp_core.cli", "show", "auto_npc", "-p", "units=8"],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
    )

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "Error: unknown wiring 'auto_npc'. Did you mean 'auto_ncp'? Installed "
        "wirings: auto_ncp, fully_connected, ncp, random."
    ]


# -- -p values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("32", 32),
        ("0.5", 0.5),
        ("-3", -3),
        ("1e3", 1000.0),
        ("true", True),
        ("False", False),
        ("none", None),
        ("null", None),
        ("[4, 8]", [4, 8]),
        ('{"a": 1}', {"a": 1}),
        ("pure", "pure"),
        ('"007"', "007"),
        ("007", "007"),
        ("", ""),
    ],
)
def test_parse_value_types_a_command_line_value(text, value):
    parsed = parse_value(text)

    assert parsed == value
    assert type(parsed) is type(value)


def test_parse_params_keeps_the_order_and_splits_at_the_first_equals_sign():
    assert parse_params(["units=8", "label=a=b", "seed=1"]) == {
        "units": 8,
        "label": "a=b",
        "seed": 1,
    }
    with pytest.raises(CLIError) as raised:
        parse_params(["units:8"])
    assert raised.value.exit_code == 2


# -- datasets ---------------------------------------------------------------------


def tiny() -> SequenceDataset:
    """Three series of lengths 2 to 4, two channels."""
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 0]], bool)
    x = np.where(mask[..., None], 1.0, 0.0).repeat(2, axis=2).astype(np.float32)
    return SequenceDataset(
        name="tiny",
        X_train=x,
        y_train=np.array(["a", "b", "c"]),
        X_test=x[:2],
        y_test=np.array(["b", "a"]),
        mask_train=mask,
        mask_test=mask[:2],
    )


def test_datasets_json_reports_sizes_and_plugin():
    plugins.register_dataset("tiny", tiny)

    result = ncp("datasets", "--json")

    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["tiny"] == {
        "name": "tiny",
        "qualified_name": "local:tiny",
        "summary": "Three series of lengths 2 to 4, two channels.",
        "plugin": "local",
        "distribution": None,
        "version": None,
        "builtin": False,
        "status": "ok",
        "train": 3,
        "test": 2,
        "channels": 2,
        "classes": 3,
        "task": "classification",
        "min_length": 2,
        "max_length": 4,
    }
    for row in rows.values():
        if row["plugin"] == "bundled":
            assert row["distribution"] == "ncp-core"
            assert row["train"] > 0 and row["test"] > 0


def test_datasets_table_reports_a_dataset_that_fails_to_load():
    plugins.register_dataset("tiny", tiny)
    plugins.register_dataset("cracked", lambda: 1 / 0, summary="Never loads")

    result = ncp("datasets")

    assert result.exit_code == 0, result.output
    [tiny_row] = [line for line in result.stdout.splitlines() if " tiny " in line]
    cells = [cell.strip() for cell in tiny_row.split("│")[1:-1]]
    assert cells == ["tiny", "local", "3", "2", "2", "3", "2-4", tiny.__doc__]
    [cracked] = [line for line in result.stdout.splitlines() if " cracked " in line]
    assert "could not load: DataError" in cracked
    assert "ZeroDivisionError" in result.stdout


# -- the command group -----------------------------------------------------------------


def test_the_group_offers_the_inspection_commands_and_skips_absent_modules():
    names = main.list_commands(None)  # type: ignore[arg-type]

    assert names[:4] == ["wirings", "plugins", "show", "datasets"]
    assert _module_commands("ncp_core.cli.no_such_module") == {}
    assert set(_module_commands("ncp_core.cli.inspect")) == {
        "wirings",
        "plugins",
        "show",
        "datasets",
    }
