"""`facestream dead list|retry|purge`: the frames workers gave up on, on every node."""

from __future__ import annotations

from typing import Annotated

import orjson
import typer

from facestream.schemas import keys, printable

from .cli_options import GroupsOption, cli_settings, split_list
from .connect import Connections
from .dead_letters import SHOWN, DeadLetterPage, DeadLetters
from .topology import Topology

__all__ = ["dead_app"]

dead_app = typer.Typer(
    no_args_is_help=True, help="Dead letters: frames the workers gave up on, with the reason."
)


@dead_app.command("list")
def dead_list(
    groups: GroupsOption = None,
    count: Annotated[int, typer.Option(help="Newest letters per group.", min=1)] = SHOWN,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the newest dead letters of every group (or --groups), newest first."""
    settings = cli_settings()
    connections = Connections(Topology(settings))
    wanted = split_list(groups)
    pages = []
    for name, node_groups in _placed(connections, wanted).items():
        client = connections.node(connections.topology.nodes[name])
        letters = DeadLetters(client, settings.ingest.frames_maxlen)
        pages.append(letters.list(node_groups, count))
    page = DeadLetterPage(
        [letter for p in pages for letter in p.letters],
        {group: n for p in pages for group, n in p.total.items()},
        {group: why for p in pages for group, why in p.unreadable.items()},
    )
    if json_output:
        typer.echo(orjson.dumps(page.to_dict(), option=orjson.OPT_INDENT_2).decode())
        return
    typer.echo(f"{'group':<16}{'id':<24}{'frame':<24}{'tries':>6}  reason")
    for listed in page.letters:
        letter = listed.letter
        typer.echo(
            printable(
                f"{letter.group:<16}{listed.id:<24}{letter.frame_id:<24}{letter.deliveries:>6}  "
                f"{letter.reason}"
            )
        )
    for group, total in sorted(page.total.items()):
        skipped = sum(page.unreadable.get(group, {}).values())
        note = f", {skipped} unreadable (skipped; `dead purge` removes them)" if skipped else ""
        typer.echo(f"{group}: {total} dead letter(s){note}")


@dead_app.command("retry")
def dead_retry(
    group: Annotated[str, typer.Argument(help="Camera group.")],
    entry_id: Annotated[str, typer.Argument(help="The dead letter's id (from `dead list`).")],
) -> None:
    """Send a dead letter's frame to the workers again, then drop the letter."""
    frame_id = _letters(group).retry(group, entry_id)
    typer.echo(f"retried {entry_id}: frame {frame_id} sent again")


@dead_app.command("purge")
def dead_purge(
    group: Annotated[str, typer.Argument(help="Camera group.")],
    entry_id: Annotated[
        str | None, typer.Argument(help="One letter's id; without it, every letter of GROUP.")
    ] = None,
) -> None:
    """Delete one dead letter, or every dead letter of GROUP."""
    purged = _letters(group).purge(group, entry_id)
    typer.echo(f"purged {purged} dead letter(s) of {group}")


def _letters(group: str) -> DeadLetters:
    settings = cli_settings()
    client = Connections(Topology(settings)).for_group(keys.validate_group(group))
    return DeadLetters(client, settings.ingest.frames_maxlen)


def _placed(connections: Connections, groups: list[str] | None) -> dict[str, list[str] | None]:
    """Node name -> the asked-for groups it holds (None: every group it has)."""
    topology = connections.topology
    if groups and topology.kind == "nodes":
        return dict(topology.by_node(groups, draining=True).items())
    return {name: groups for name in topology.nodes}
