"""The ``ncp`` command.

Commands live in sibling modules and are imported only when used, so
``ncp wirings`` never pays for the training stack. A module listed in
:data:`COMMAND_MODULES` contributes the click commands in its ``COMMANDS``
sequence (or, without one, every click command defined at its top level);
:data:`COMMAND_HOMES` says where each known command lives, so running one
imports one module. A listed module that does not exist is skipped.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from types import ModuleType

import click

from ncp_core import __version__
from ncp_core.cli.common import pretty_warnings

__all__ = ["COMMAND_HOMES", "COMMAND_MODULES", "main"]

COMMAND_MODULES: tuple[str, ...] = ("ncp_core.cli.inspect", "ncp_core.cli.train")
"""Modules whose commands ``ncp`` offers, in the order ``--help`` lists them."""

COMMAND_HOMES: Mapping[str, str] = {
    "wirings": "ncp_core.cli.inspect",
    "plugins": "ncp_core.cli.inspect",
    "show": "ncp_core.cli.inspect",
    "datasets": "ncp_core.cli.inspect",
    "train": "ncp_core.cli.train",
    "eval": "ncp_core.cli.train",
    "predict": "ncp_core.cli.train",
}
"""Command name → the module that defines it."""


def _module_commands(module_name: str) -> dict[str, click.Command]:
    """The commands a sibling module defines; empty if the module is absent."""
    if importlib.util.find_spec(module_name) is None:
        return {}
    module: ModuleType = importlib.import_module(module_name)
    commands = getattr(module, "COMMANDS", None)
    if commands is None:
        commands = [
            value
            for value in vars(module).values()
            if isinstance(value, click.Command)
            and getattr(value.callback, "__module__", None) == module_name
        ]
    return {command.name: command for command in commands if command.name}


class _LazyGroup(click.Group):
    """A group that imports a command's module only when the command is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = list(super().list_commands(ctx))
        for module in COMMAND_MODULES:
            names.extend(n for n in _module_commands(module) if n not in names)
        return names

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        home = COMMAND_HOMES.get(cmd_name)
        modules = [home] if home else []
        modules += [m for m in COMMAND_MODULES if m != home]
        for module in modules:
            found = _module_commands(module).get(cmd_name)
            if found is not None:
                return found
        return None


@click.group(
    cls=_LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(
    __version__, "--version", "-V", prog_name="ncp", message="%(prog)s %(version)s"
)
@click.pass_context
def main(ctx: click.Context) -> None:
    """Neural Circuit Policies on MLX: wirings, plugins, datasets and training.

    Inspect what is installed with `ncp wirings`, `ncp plugins`, `ncp datasets`
    and `ncp show NAME`.
    """
    ctx.with_resource(pretty_warnings())
