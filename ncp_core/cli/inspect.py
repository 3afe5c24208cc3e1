"""The commands that show what is installed: wirings, plugins, show, datasets."""

from __future__ import annotations

import os
import sys
from typing import Any

import click
import numpy as np
from rich.table import Table
from rich.text import Text

from ncp_core import plugins
from ncp_core.cli.common import (
    CLIError,
    cli_errors,
    echo_json,
    format_params,
    json_option,
    make_console,
    param_option,
    parse_params,
    sizes,
)
from ncp_core.errors import NCPError
from ncp_core.wiring import Wiring

__all__ = ["COMMANDS", "datasets", "plugins_command", "show", "wirings"]

_STATUS_STYLE = {
    "ok": "",
    "loaded": "green",
    "failed": "bold red",
    "blocked": "yellow",
    "conflict": "bold magenta",
    "ignored": "dim",
}


def _source(distribution: str | None, version: str | None) -> str:
    if distribution is None:
        return "-"
    return f"{distribution} {version}" if version else distribution


@click.command("wirings")
@json_option
@cli_errors
def wirings(as_json: bool) -> None:
    """List every wiring the installed plugins provide."""
    records = plugins.list_wirings()
    if as_json:
        echo_json(records)
        return

    table = Table(title="Wirings", title_justify="left")
    table.add_column("Name", style="bold", no_wrap=True)
    table.add_column("Plugin", no_wrap=True)
    table.add_column("Distribution", no_wrap=True)
    table.add_column("Summary")
    for record in records:
        name = Text(record.name)
        if record.status != "ok":
            name.append(f" [{record.status}]", style=_STATUS_STYLE[record.status])
        table.add_row(
            name,
            record.plugin,
            _source(record.distribution, record.version),
            record.summary,
        )
    console = make_console()
    console.print(table)
    conflicts = sorted({r.name for r in records if r.status == "conflict"})
    if conflicts:
        console.print(
            f"Names registered by several plugins: {', '.join(conflicts)}; ask for "
            "one as PLUGIN:NAME (e.g. ncp show "
            f"{next(r.qualified_name for r in records if r.name == conflicts[0])})."
        )
    console.print("Parameters and structure of one wiring: ncp show NAME")


def _provides(record: plugins.PluginInfo) -> str:
    parts = []
    if record.wirings:
        parts.append("wirings: " + ", ".join(record.wirings))
    if record.datasets:
        parts.append("datasets: " + ", ".join(record.datasets))
    return "; ".join(parts) or "-"


@click.command("plugins")
@json_option
@cli_errors
def plugins_command(as_json: bool) -> None:
    """List every plugin found, with its status, version, location and error.

    The header names the Python environment searched: a plugin installed
    into another environment does not appear.
    """
    records = plugins.list_plugins()
    settings = plugins.plugin_settings()
    if as_json:
        echo_json(
            {
                "python": sys.executable,
                "prefix": sys.prefix,
                "settings": settings.as_dict(),
                "plugins": records,
            }
        )
        return

    console = make_console()
    console.print(f"Python: {sys.executable}")
    console.print(f"Environment: {sys.prefix}")
    switches = [
        f"{key}={os.environ[key]!r}"
        for key in ("NCP_PLUGINS", "NCP_DISABLE_PLUGINS", "NCP_STRICT_PLUGINS")
        if key in os.environ
    ]
    if switches:
        console.print("Settings: " + ", ".join(switches))

    table = Table(title="Plugins", title_justify="left")
    table.add_column("Plugin", style="bold", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    table.add_column("Distribution", no_wrap=True)
    table.add_column("Hooks")
    table.add_column("Provides")
    table.add_column("Location", overflow="fold")
    for record in records:
        name = record.name + (" (built-in)" if record.builtin else "")
        table.add_row(
            name,
            Text(record.status, style=_STATUS_STYLE[record.status]),
            _source(record.distribution, record.version),
            ", ".join(h.removeprefix("ncp_") for h in record.hooks) or "-",
            _provides(record),
            record.location or "-",
        )
    console.print(table)
    for record in records:
        if record.error:
            console.print(
                Text.assemble(
                    (f"{record.name} ({record.status}): ", "bold"), record.error
                )
            )


def _time_scales(wiring: Wiring) -> dict[str, Any] | None:
    if wiring.time_scales is None:
        return None
    values = np.asarray(wiring.time_scales, dtype=np.float64)
    return {
        "min": float(values.min()),
        "max": float(values.max()),
        "distinct": int(np.unique(values).size),
    }


def _describe(wiring: Wiring) -> dict[str, Any]:
    record = plugins.wiring_record(wiring)
    adjacency = wiring.adjacency
    return {
        "name": record["name"],
        "class": record["class"],
        "plugin": record["plugin"],
        "distribution": record["distribution"],
        "version": record["version"],
        "params": wiring.params,
        "units": wiring.units,
        "output_dim": wiring.output_dim,
        "input_dim": wiring.input_dim,
        "synapses": wiring.synapse_count,
        "excitatory": int(np.count_nonzero(adjacency > 0)),
        "inhibitory": int(np.count_nonzero(adjacency < 0)),
        "sensory_synapses": wiring.sensory_synapse_count,
        "density": wiring.density,
        "groups": {name: int(ids.size) for name, ids in wiring.groups.items()},
        "layers": [int(layer.size) for layer in wiring.layers],
        "time_scales": _time_scales(wiring),
        "problems": wiring.validate(),
    }


def _write_png(wiring: Wiring, path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CLIError("--png needs matplotlib: pip install 'ncp-core[plot]'") from None
    try:
        ax = wiring.draw()
    except ImportError as error:
        raise CLIError(f"--png: {error}") from None
    try:
        ax.figure.savefig(path, dpi=120, bbox_inches="tight")
    except OSError as error:
        raise CLIError(f"--png: cannot write {path!r}: {error.strerror}") from None
    finally:
        plt.close(ax.figure)


@click.command("show")
@click.argument("name")
@param_option
@click.option(
    "--input-dim",
    type=click.IntRange(min=1),
    help="Build the wiring for this many input features (draws the sensory synapses).",
)
@click.option(
    "--png",
    type=click.Path(dir_okay=False),
    help="Write a drawing of the wiring to this PNG file (needs matplotlib).",
)
@json_option
@cli_errors
def show(
    name: str,
    params: tuple[str, ...],
    input_dim: int | None,
    png: str | None,
    as_json: bool,
) -> None:
    """Build the wiring NAME and describe its structure.

    NAME is a wiring name from `ncp wirings`, or PLUGIN:NAME. Parameters are
    given as -p KEY=VALUE, e.g. `ncp show auto_ncp -p units=16 -p output_size=2`.
    """
    values = parse_params(params)
    wiring = plugins.get_wiring(name, **values)
    if input_dim is not None:
        wiring.build(input_dim)
    description = _describe(wiring)
    if png is not None:
        _write_png(wiring, png)
    description["png"] = png
    if as_json:
        echo_json(description)
        return

    console = make_console()
    origin = description["plugin"] or "unregistered class"
    if description["distribution"]:
        origin += f", {_source(description['distribution'], description['version'])}"
    console.print(Text.assemble((description["name"], "bold"), f"  ({origin})"))
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    inputs = description["input_dim"]
    table.add_row("parameters", format_params(description["params"]) or "-")
    table.add_row(
        "units",
        f"{description['units']} ({description['output_dim']} output, "
        f"{'inputs not built' if inputs is None else f'{inputs} inputs'})",
    )
    table.add_row(
        "synapses",
        f"{description['synapses']} ({description['excitatory']} excitatory, "
        f"{description['inhibitory']} inhibitory)",
    )
    table.add_row(
        "sensory synapses",
        str(description["sensory_synapses"])
        if inputs is not None
        else "- (pass --input-dim N)",
    )
    table.add_row("density", f"{description['density']:.4f}")
    groups = description["groups"]
    table.add_row("groups", ", ".join(f"{g} {n}" for g, n in groups.items()) or "-")
    layers = description["layers"]
    table.add_row("layers", f"{len(layers)}: {sizes(layers)}" if layers else "-")
    scales = description["time_scales"]
    table.add_row(
        "time scales",
        "-"
        if scales is None
        else f"{scales['min']:g} to {scales['max']:g} ({scales['distinct']} distinct)",
    )
    problems = description["problems"]
    table.add_row(
        "validate",
        Text("ok", style="green")
        if not problems
        else Text("\n".join(problems), style="yellow"),
    )
    if png is not None:
        table.add_row("drawing", png)
    console.print(table)


def _dataset_sizes(record: plugins.DatasetInfo) -> dict[str, Any]:
    dataset = plugins.load_dataset(record.qualified_name)
    lengths = np.concatenate([dataset.lengths_train, dataset.lengths_test])
    return {
        "train": dataset.n_train,
        "test": dataset.n_test,
        "channels": dataset.channels,
        "classes": dataset.num_classes if dataset.task == "classification" else None,
        "task": dataset.task,
        "min_length": int(lengths.min()),
        "max_length": int(lengths.max()),
    }


@click.command("datasets")
@click.option(
    "--sizes/--no-sizes",
    "with_sizes",
    default=True,
    help="Load each dataset to report its sizes (default) or only list names.",
)
@json_option
@cli_errors
def datasets(with_sizes: bool, as_json: bool) -> None:
    """List the registered datasets, with their sizes."""
    rows = []
    for record in plugins.list_datasets():
        row: dict[str, Any] = record.as_dict()
        if with_sizes:
            try:
                row.update(_dataset_sizes(record))
            except (NCPError, ValueError, OSError) as error:
                row["error"] = f"{type(error).__name__}: {error}"
        rows.append(row)
    if as_json:
        echo_json(rows)
        return

    table = Table(title="Datasets", title_justify="left")
    table.add_column("Name", style="bold", no_wrap=True)
    table.add_column("Plugin", no_wrap=True)
    if with_sizes:
        for column in ("Train", "Test", "Channels", "Classes", "Length"):
            table.add_column(column, justify="right", no_wrap=True)
    table.add_column("Summary")
    for row in rows:
        cells = [row["name"], row["plugin"]]
        if with_sizes and "error" in row:
            cells += ["-"] * 5
        elif with_sizes:
            low, high = row["min_length"], row["max_length"]
            cells += [
                str(row["train"]),
                str(row["test"]),
                str(row["channels"]),
                "-" if row["classes"] is None else str(row["classes"]),
                str(low) if low == high else f"{low}-{high}",
            ]
        summary = Text(row["summary"])
        if "error" in row:
            summary = Text(f"could not load: {row['error']}", style="red")
        table.add_row(*cells, summary)
    make_console().print(table)
    click.echo("Train on one: ncp train --data NAME")


COMMANDS = (wirings, plugins_command, show, datasets)
