"""What every subcommand shares: the global flags, and settings built from them once."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from .config import Settings, load_settings
from .config_files import default_config_file
from .logs import configure_logging

__all__ = [
    "CliState",
    "ConfigOption",
    "GroupsOption",
    "cli_settings",
    "hoist_shared_options",
    "progress",
    "split_list",
]

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar="FACESTREAM_CONFIG",
        exists=True,
        dir_okay=False,
        help="YAML config (default: ./facestream.yaml, then ~/.config/facestream/config.yaml).",
    ),
]
GroupsOption = Annotated[str | None, typer.Option(help="Comma-separated camera groups.")]


class CliState:
    """The shared flags of this invocation (set by the root callback)."""

    config: Path | None = None
    overrides: dict[str, dict[str, Any]] = {}  # noqa: RUF012 -- reset per invocation


# Flags every subcommand accepts; each takes one value (`--flag VALUE` or `--flag=VALUE`).
_SHARED_FLAGS = frozenset({"--config", "-c", "--redis-url", "--log-level", "--log-format"})


def hoist_shared_options(argv: list[str]) -> list[str]:
    """Move the shared flags to the front, where the root command reads them.

    So `facestream worker --redis-url URL` means `facestream --redis-url URL worker`. Their
    order is kept: given twice, the later one (after the subcommand) wins, as click takes the
    last value. Nothing after `--` is touched.
    """
    shared: list[str] = []
    rest: list[str] = []
    position = 0
    while position < len(argv):
        arg = argv[position]
        if arg == "--":
            rest.extend(argv[position:])
            break
        if arg.split("=", 1)[0] not in _SHARED_FLAGS:
            rest.append(arg)
            position += 1
        elif "=" in arg:
            shared.append(arg)
            position += 1
        else:
            shared.extend(argv[position : position + 2])
            position += 2
    return shared + rest


def cli_settings(**sections: Any) -> Settings:
    """Validate the settings once: shared flags and a command's own flags over env and YAML."""
    merged: dict[str, Any] = {name: dict(values) for name, values in CliState.overrides.items()}
    for section, values in sections.items():
        merged[section] = (
            {**merged.get(section, {}), **values} if isinstance(values, dict) else values
        )
    settings = load_settings(CliState.config or default_config_file(), **merged)
    configure_logging(settings.log)
    return settings


@contextmanager
def progress(total: int, label: str) -> Iterator[Callable[[object], None]]:
    """A progress bar on stderr for long work, drawn only on a terminal (logs stay clean)."""
    with typer.progressbar(length=total, label=label, file=sys.stderr, show_pos=True) as bar:
        yield lambda _done: bar.update(1)


def split_list(option: str | None) -> list[str] | None:
    """'a, b,c' -> ['a', 'b', 'c']; None or '' -> None."""
    return [g.strip() for g in option.split(",") if g.strip()] if option else None
