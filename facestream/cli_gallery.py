"""`facestream gallery …`, `facestream visitors …` and `facestream eval`: who is who.

The model and OpenCV are imported inside the commands that use them, so `gallery list` and the
rest of the CLI start without onnxruntime (see `facestream.lazy`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TypeVar

import numpy as np
import orjson
import typer

from facestream.recognizer import Gallery, VisitorBook, current_model_id
from facestream.recognizer.gallery_check import MAX_EXPORT_BYTES, parse_export
from facestream.schemas import FacestreamError, GalleryError, Identity, keys

from .cli_options import cli_settings, progress
from .connect import Connections
from .replicas import GalleryReplicas
from .topology import Topology

T = TypeVar("T")

__all__ = ["eval_command", "gallery_app", "visitors_app"]

gallery_app = typer.Typer(
    no_args_is_help=True, help="Enrol, reject, list, remove and move identities."
)
visitors_app = typer.Typer(no_args_is_help=True, help="Pseudonymous visitor ids (opt-in).")


@gallery_app.command("enroll")
def gallery_enroll(
    name: Annotated[str, typer.Argument(help="Identity name.")],
    photos: Annotated[list[Path], typer.Argument(help="Photos (files or folders) of that person.")],
    largest_face: Annotated[
        bool, typer.Option(help="Use the largest face of a group photo.")
    ] = False,
) -> None:
    """Enrol (or re-enrol) NAME from one or more photos, one face each."""
    files = _photo_files(photos)
    identity = _embed(name, files, largest_face, f"embedding {name}")
    for photo, other, similarity in _enrolled_elsewhere(identity):
        typer.echo(
            f"warning: {photo} shows a face already enrolled as {other} (similarity "
            f"{similarity:.3f}): the same photo under two names makes both ambiguous",
            err=True,
        )
    version = _change(lambda gallery: gallery.enroll(identity))
    typer.echo(f"enrolled {name} from {len(files)} photo(s); gallery version {version}")


@gallery_app.command("reject")
def gallery_reject(
    name: Annotated[str, typer.Argument(help="Identity that must not be given to these faces.")],
    photos: Annotated[
        list[Path], typer.Argument(help="Photos (files or folders) of other people.")
    ],
    largest_face: Annotated[
        bool, typer.Option(help="Use the largest face of a group photo.")
    ] = False,
) -> None:
    """Store PHOTOS as "not NAME": a face closer to one of them than to NAME is never NAME."""
    files = _photo_files(photos)
    examples = _embed(name, files, largest_face, f"embedding negatives of {name}")
    version = _change(lambda gallery: gallery.reject(name, examples))
    typer.echo(f"{name}: {len(files)} negative example(s) stored; gallery version {version}")


@gallery_app.command("list")
def gallery_list(json_output: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List enrolled identities."""
    contents = _replicas().read().contents()
    version, identities = contents.version, contents.identities
    for name, reason in contents.unusable.items():
        typer.echo(f"warning: identity {name!r} is unusable, workers skip it: {reason}", err=True)
    for identity in identities:
        if json_output:
            summary = identity.model_dump(exclude={"embeddings", "negatives"})
            typer.echo(orjson.dumps(summary).decode())
        else:
            enrolled = datetime.fromtimestamp(identity.enrolled_at / 1000, UTC).isoformat(
                timespec="seconds"
            )
            typer.echo(
                f"{identity.name}\t{len(identity.embeddings)} photo(s)\t"
                f"{len(identity.negatives)} negative(s)\t{identity.model}\tenrolled {enrolled}"
            )
    if not json_output:
        typer.echo(f"{len(identities)} identities, gallery version {version}")


@gallery_app.command("remove")
def gallery_remove(name: str) -> None:
    """Remove an identity from the gallery (cached recognitions expire by TTL; see erase)."""
    if not _change(lambda gallery: gallery.remove(name)):
        raise FacestreamError(f"no identity named {name!r} in the gallery")
    typer.echo(f"removed {name}")


@gallery_app.command("erase")
def gallery_erase(name: str) -> None:
    """Remove an identity AND purge its cached recognitions and its tracks' snapshots."""
    purged = _replicas().erase(name, cli_settings().match.threshold)
    typer.echo(f"erased {name}; purged {purged} cached recognition(s) and its snapshots")


@gallery_app.command("export")
def gallery_export(
    output: Annotated[Path, typer.Argument(help="JSON file to write ('-': stdout).")],
) -> None:
    """Write the whole gallery (names, embeddings, model id) as JSON."""

    export = _replicas().read().export(current_model_id())
    text = export.model_dump_json(indent=2)
    if str(output) == "-":
        typer.echo(text)
    else:
        try:
            output.write_text(text)
        except OSError as exc:
            raise FacestreamError(f"cannot write {output}: {exc.strerror}") from exc
        typer.echo(f"exported {len(export.identities)} identities to {output}")


@gallery_app.command("import")
def gallery_import(
    source: Annotated[
        Path, typer.Argument(help="JSON file written by `gallery export`.", exists=True)
    ],
) -> None:
    """Enrol every identity of an export (made with the same model) in one transaction.

    The whole file is checked first: one bad identity refuses it, naming the identity and
    the field, and nothing is written.
    """
    try:
        if source.stat().st_size > MAX_EXPORT_BYTES:
            raise GalleryError(f"the export is over {MAX_EXPORT_BYTES} bytes")
        export = parse_export(source.read_bytes(), current_model_id())
    except OSError as exc:
        raise FacestreamError(f"cannot read {source}: {exc.strerror}") from exc
    except GalleryError as exc:
        raise GalleryError(f"{source}: {exc}; nothing imported") from exc
    version = _change(lambda gallery: gallery.import_(export, current_model_id()))
    typer.echo(f"imported {len(export.identities)} identities; gallery version {version}")


@gallery_app.command("sync")
def gallery_sync() -> None:
    """Copy the newest gallery to every node that holds another version (after an outage)."""
    report = _replicas().sync()
    typer.echo(
        f"gallery version {report.version} (from {report.source}): copied to "
        f"{', '.join(report.copied) or 'no node'}; already current: {', '.join(report.current)}"
    )
    if report.warning():
        raise FacestreamError(report.warning() or "")


def _embed(name: str, files: list[Path], largest_face: bool, what: str) -> Identity:
    """One face per photo, embedded with progress shown (one-face rule: embed_photos)."""
    from facestream.recognizer import FaceEngine, embed_photos

    settings = cli_settings()
    engine = FaceEngine.from_settings(settings.models, settings.match.enrol)
    with progress(len(files), what) as advance:
        return embed_photos(
            engine,
            name,
            files,
            largest_face=largest_face,
            on_photo=advance,
            max_pixels=settings.limits.max_pixels,
        )


# Embeddings this alike come from the same picture (re-encoded or resized at most); two
# different photos of one person score lower (tests/test_first_hour.py enrols one such pair).
_SAME_PHOTO = 0.98


def _enrolled_elsewhere(identity: Identity) -> list[tuple[str, str, float]]:
    """(photo, other identity, similarity) for each new photo that another name already has."""
    # The embeddings are unit vectors (embedder.py), so a dot product is their cosine.
    found = []
    _, others = _replicas().read().identities()
    for other in (o for o in others if o.name != identity.name and o.model == identity.model):
        similarities = np.asarray(identity.embeddings) @ np.asarray(other.embeddings).T
        for index, best in enumerate(similarities.max(axis=1)):
            if best >= _SAME_PHOTO:
                photo = identity.photos[index] if index < len(identity.photos) else f"#{index}"
                found.append((photo, other.name, float(best)))
    return found


def _replicas() -> GalleryReplicas:
    return GalleryReplicas(Connections(Topology(cli_settings())))


def _change(make_change: Callable[[Gallery], T]) -> T:
    """Change the gallery on the newest copy and copy it to every node; warn about the rest."""
    outcome, report = _replicas().change(make_change)
    warning = report.warning()
    if warning:
        typer.echo(f"warning: {warning}", err=True)
    return outcome


def eval_command(
    folder: Annotated[
        Path,
        typer.Argument(help="Folder with train/<name>/* and probes.", file_okay=False, exists=True),
    ],
    labels: Annotated[
        Path | None, typer.Option(help="Labels JSON (default FOLDER/labels.json).")
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="Match threshold floor (default: config).")
    ] = None,
    margin: Annotated[float | None, typer.Option(help="Match margin (default: config).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Enrol FOLDER/train, match the labelled probes, report similarities and errors."""
    from facestream.recognizer import FaceEngine
    from facestream.recognizer.evaluate import evaluate, load_labels
    from facestream.recognizer.openset import describe, operating_point

    settings = cli_settings(match={"threshold": threshold, "margin": margin})
    probes = load_labels(folder, labels)
    engine = FaceEngine.from_settings(settings.models, settings.match.enrol)
    photos = len(probes) + sum(1 for p in (folder / "train").rglob("*") if p.is_file())
    with progress(photos, "evaluating") as advance:
        report = evaluate(
            engine,
            folder,
            probes,
            settings.match.threshold,
            settings.match.margin,
            on_photo=advance,
            target_fpir=settings.match.target_fpir,
            quality=settings.match.quality,
        )
    summary = report.summary()
    if json_output:
        typer.echo(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
        return
    for probe in report.probes:
        verdict = "WRONG " if probe.wrong else ("missed" if probe.missed else "ok    ")
        named = ", ".join(n or "unknown" for n in probe.named) or "no face"
        typer.echo(
            f"{verdict} {probe.photo:<36} expected {', '.join(probe.expected):<30} got {named}"
        )
    for kind in ("genuine", "impostor"):
        stats = summary[kind]
        assert isinstance(stats, dict)
        typer.echo(
            f"{kind:<9} similarity: {stats['count']} scores, min {stats['min']:.3f}, "
            f"median {stats['p50']:.3f}, max {stats['max']:.3f}"
            if stats
            else f"{kind:<9} similarity: no scores"
        )
    typer.echo(describe(operating_point(settings.match, len(report.identities))))
    typer.echo(
        f"top-1: {report.recognised}/{report.expected_names} labelled faces named, "
        f"{report.false_accepts} false accepts at threshold {report.threshold} "
        f"(margin {report.margin})"
    )
    gap = report.separating_range
    typer.echo(
        f"thresholds in ({gap[0]:.3f}, {gap[1]:.3f}] separate genuine from impostor"
        if gap
        else "no threshold separates genuine from impostor scores"
    )


@visitors_app.command("count")
def visitors_count() -> None:
    """How many distinct visitors were seen within the visitor TTL."""
    connections = Connections(Topology(cli_settings()))
    counts = {
        node.name: int(client.zcard(keys.VISITOR_SEEN)) for node, client in connections.every_node()
    }
    # Independent nodes keep their own visitor ids: the same person on two nodes counts twice.
    per_node = ", ".join(f"{node} {count}" for node, count in counts.items())
    typer.echo(f"{sum(counts.values())} visitors" + (f" ({per_node})" if len(counts) > 1 else ""))


@visitors_app.command("purge")
def visitors_purge() -> None:
    """Delete every visitor id and its stored embedding now."""
    settings = cli_settings()
    connections = Connections(Topology(settings))
    forgotten = sum(
        VisitorBook(client, settings.visitors).purge() for _, client in connections.every_node()
    )
    typer.echo(f"forgot {forgotten} visitors")


def _photo_files(paths: list[Path]) -> list[Path]:
    """Photos named or found in the folders named; a missing path is one clear error."""
    from facestream.ingest.sources import IMAGE_SUFFIXES

    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        elif path.is_file():
            files.append(path)
        else:
            raise FacestreamError(f"{path}: no such photo or folder")
    return files
