"""What every subcommand shares: the global flags, and settings built from them once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from .config import Settings, load_settings
from .logs import configure_logging

__all__ = ["CliState", "ConfigOption", "GroupsOption", "cli_settings", "split_list"]

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", envvar="FACESTREAM_CONFIG", help="YAML config.")
]
GroupsOption = Annotated[str | None, typer.Option(help="Comma-separated camera groups.")]


class CliState:
    """The global flags of this invocation (set by the root callback)."""

    config: Path | None = None
    overrides: dict[str, Any] = {}  # noqa: RUF012 -- replaced per invocation


def cli_settings(**sections: Any) -> Settings:
    """Validate the settings once: global flags and a command's own flags over env and YAML."""
    merged = {**CliState.overrides}
    for section, values in sections.items():
        merged[section] = (
            {**merged.get(section, {}), **values} if isinstance(values, dict) else values
        )
    settings = load_settings(CliState.config, **merged)
    configure_logging(settings.log)
    return settings


def split_list(option: str | None) -> list[str] | None:
    """'a, b,c' -> ['a', 'b', 'c']; None or '' -> None."""
    return [g.strip() for g in option.split(",") if g.strip()] if option else None
