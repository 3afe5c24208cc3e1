"""Helpers shared by the ``ncp`` commands: errors, ``-p key=value``, JSON, output.

Every command reports a user's mistake the same way: one line on stderr,
``Error: <what was wrong and what to do>``, exit status 2, no traceback.
Wrap a command in :func:`cli_errors` and raise the library's own errors (or
:class:`CLIError`) from it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, Any, TypeVar

import click
from rich.console import Console

from ncp_core.errors import NCPError, NCPWarning

__all__ = [
    "CLIError",
    "cli_errors",
    "echo_json",
    "format_params",
    "json_option",
    "make_console",
    "param_option",
    "parse_params",
    "parse_value",
    "pretty_warnings",
    "sizes",
    "to_jsonable",
]

F = TypeVar("F", bound=Callable[..., Any])

NON_TERMINAL_WIDTH = 160
"""Console width when the output is not a terminal, so tables do not wrap."""


class CLIError(click.ClickException):
    """A mistake of the user's: printed as one line, exit status 2."""

    exit_code = 2


def cli_errors(command: F) -> F:
    """Turn the library's errors, raised inside ``command``, into :class:`CLIError`.

    ``NCPError`` and ``ValueError`` carry a message meant for the user;
    anything else is a bug and keeps its traceback.
    """

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except click.ClickException:
            raise
        except (NCPError, ValueError) as error:
            raise CLIError(_one_line(str(error))) from error

    return run  # type: ignore[return-value]


def _one_line(text: str) -> str:
    return " ".join(text.split())


# -- parameters ------------------------------------------------------------------

_WORDS: dict[str, Any] = {
    "true": True,
    "false": False,
    "none": None,
    "null": None,
}


def parse_value(text: str) -> Any:
    """The typed value of a ``-p`` value written on the command line.

    JSON first (``32``, ``0.5``, ``[4, 8]``, ``{"a": 1}``, ``"007"``), then
    ``true``/``false``/``none`` in any case (and Python's spellings), else the
    text itself: ``mode=pure`` gives ``"pure"``.
    """
    stripped = text.strip()
    if stripped.lower() in _WORDS:
        return _WORDS[stripped.lower()]
    try:
        return json.loads(stripped)
    except ValueError:
        return text


def parse_params(pairs: Iterable[str], option: str = "-p") -> dict[str, Any]:
    """``["units=32", "mode=pure"]`` → ``{"units": 32, "mode": "pure"}``.

    Raises:
        CLIError: a pair without ``=``, a key that is not an identifier, or a
            key given twice.
    """
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep:
            raise CLIError(
                f"{option} {pair!r} is not key=value; write it as "
                f"{option} {key or 'units'}=VALUE (e.g. {option} units=32)"
            )
        if not key.isidentifier():
            raise CLIError(
                f"{option} {pair!r}: {key!r} is not a parameter name; write "
                f"{option} NAME=VALUE with NAME a Python identifier"
            )
        if key in params:
            raise CLIError(f"{option} {key}= is given twice; give each parameter once")
        params[key] = parse_value(value)
    return params


def param_option(command: F) -> F:
    """The ``-p/--param KEY=VALUE`` option (repeatable), as ``params``."""
    return click.option(
        "-p",
        "--param",
        "params",
        multiple=True,
        metavar="KEY=VALUE",
        help="A wiring parameter, typed as JSON (units=32, mode=pure); repeat it.",
    )(command)


# -- output ----------------------------------------------------------------------


def json_option(command: F) -> F:
    """The ``--json`` flag, as ``as_json``."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON instead of a table."
    )(command)


def to_jsonable(value: Any) -> Any:
    """Records (with ``as_dict``), NumPy scalars and arrays, tuples → JSON types."""
    if hasattr(value, "as_dict"):
        return to_jsonable(value.as_dict())
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def echo_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout."""
    click.echo(json.dumps(to_jsonable(value), indent=2, default=str))


def make_console(stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr), wide when not a terminal.

    Markup is off: names and messages from plugins print as they are. Style
    with :class:`rich.text.Text`.
    """
    stream: IO[str] = sys.stderr if stderr else sys.stdout
    console = Console(file=stream, highlight=False, markup=False)
    if not console.is_terminal:
        console = Console(
            file=stream, highlight=False, markup=False, width=NON_TERMINAL_WIDTH
        )
    return console


@contextlib.contextmanager
def pretty_warnings() -> Iterator[None]:
    """Show warnings as ``Warning: ...`` lines on stderr, without file and line."""

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        label = "Warning" if issubclass(category, NCPWarning) else category.__name__
        click.secho(f"{label}: {message}", err=True, fg="yellow")

    with warnings.catch_warnings():
        warnings.showwarning = show
        warnings.simplefilter("default", NCPWarning)
        yield


def format_params(params: dict[str, Any]) -> str:
    """``{"units": 8}`` → ``units=8``, as a user would type it in Python."""
    return ", ".join(f"{k}={v!r}" for k, v in params.items())


def sizes(values: Sequence[int]) -> str:
    """``[9, 5, 2]`` → ``9, 5, 2``."""
    return ", ".join(str(v) for v in values)
