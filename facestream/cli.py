"""The `facestream` command: one subcommand per role (see `facestream --help`)."""

from __future__ import annotations

import signal
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import orjson
import redis
import typer
from pydantic import BaseModel

from facestream.ingest import CameraSettings, FramePublisher
from facestream.schemas import (
    CameraHealth,
    DeadLetter,
    Event,
    EventDeadLetter,
    FacestreamError,
    Frame,
    Heartbeat,
    Result,
)

from . import __version__
from .acl import password_file
from .bridges.cli import bridge_app
from .cli_acl import acl_app
from .cli_dead import dead_app
from .cli_events import events_app
from .cli_feeds import echo_feed, tail_sources
from .cli_gallery import eval_command, gallery_app, visitors_app
from .cli_group import group_app, warn_unknown_groups
from .cli_options import (
    CliState,
    ConfigOption,
    GroupsOption,
    cli_settings,
    hoist_shared_options,
    split_list,
)
from .cli_redis import authentication_hint, export_lines
from .cli_wait import wait_for_redis
from .client import ResultFilter, describe_result, tail_results
from .connect import Connections
from .exit_codes import EXIT_INPUT, EXIT_PARTIAL, EXIT_REFUSED, EXIT_UNREACHABLE
from .feed import MergedFeed
from .health import Probe, serve_health
from .recognizer.openset import describe, operating_point
from .redis_errors import REDIS_ERRORS, Fault, classify
from .server import EmbeddedRedis
from .status import collect_site_status, gallery_size
from .topology import Topology

if TYPE_CHECKING:
    from facestream.ingest import ReplayStats

__all__ = ["app", "main"]

app = typer.Typer(
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, help=__doc__
)
results_app = typer.Typer(no_args_is_help=True, help="Read recognition results.")
app.add_typer(gallery_app, name="gallery")
app.add_typer(results_app, name="results")
app.add_typer(visitors_app, name="visitors")
app.add_typer(acl_app, name="acl")
app.add_typer(events_app, name="events")
app.add_typer(bridge_app, name="bridge")
app.add_typer(dead_app, name="dead")
app.add_typer(group_app, name="group")
app.command("eval")(eval_command)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"facestream {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    config: ConfigOption = None,
    redis_url: Annotated[str | None, typer.Option(help="Redis URL (redis://, rediss://).")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error.")] = None,
    log_format: Annotated[str | None, typer.Option(help="auto, json or console.")] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print the version."
        ),
    ] = False,
) -> None:
    """Face recognition over Redis Streams: one subcommand per role.

    The shared options (--config, --redis-url, --log-level, --log-format) are accepted before
    or after the subcommand. Exit codes: 0 done, 2 bad input or config, 3 Redis unreachable
    or not serving now, 4 Redis refused the credentials or a command (ACL), 5 `status` could
    reach only part of the site (the report names what is unreachable), 130 interrupted.
    """
    CliState.config = config
    if redis_url and _has_password(redis_url):
        typer.echo(
            "warning: --redis-url holds a password, which every local user can read in `ps`; "
            "put it in a file and set redis.password_file (FACESTREAM_REDIS__PASSWORD_FILE)",
            err=True,
        )
    CliState.overrides = {
        "redis": {"url": redis_url},
        "log": {"level": log_level, "format": log_format},
    }


def _has_password(url: str) -> bool:
    try:
        return bool(urllib.parse.urlsplit(url).password)
    except ValueError:  # not a URL: the config says so, without echoing it
        return False


@app.command("redis")
def redis_command(
    port: Annotated[int | None, typer.Option(help="Port (default: a free one).")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Data dir (default: a temporary one).")
    ] = None,
    no_password: Annotated[
        bool, typer.Option("--no-password", help="No password: any local user may use it.")
    ] = False,
) -> None:
    """Run the embedded Redis in the foreground on 127.0.0.1 (AOF on) until Ctrl-C.

    It has a random password, kept 0600 in DATA_DIR/password: loopback alone does not stop
    another local user. It prints the `export` lines that point the other commands at it.
    """
    cli_settings()
    # SIGTERM stops the server like Ctrl-C does, instead of orphaning it.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="facestream-redis-") as scratch:
        folder = data_dir or Path(scratch)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        secret = folder / "password"
        password = None if no_password else password_file(secret)
        server = EmbeddedRedis(folder, port=port, password=password).start()
        typer.echo(server.address, err=False)
        for line in export_lines(server.address, secret if password is not None else None):
            typer.echo(line, err=True)
        sys.stdout.flush()
        try:
            assert server.process is not None
            server.process.wait()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()


@app.command("recognise")
def recognise_command(
    photo: Annotated[Path, typer.Argument(help="A JPEG photo.", exists=True, dir_okay=False)],
    group: Annotated[str, typer.Option(help="Camera group whose workers answer.")],
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the result.")] = 10.0,
) -> None:
    """Submit one photo and print its result as JSON (served from the cache if seen before)."""
    from .client import recognise_image

    settings = cli_settings()
    connections = Connections(Topology(settings))
    warn_unknown_groups(settings, connections, [group])
    result = recognise_image(
        connections.for_group(group),
        group,
        photo.read_bytes(),
        timeout_s=timeout,
        limits=settings.limits,
        maxlen=settings.ingest.frames_maxlen,
    )
    typer.echo(result.to_json().decode())


@app.command("replay")
def replay_command(
    path: Annotated[Path, typer.Argument(help="A video file or a folder of images.", exists=True)],
    group: Annotated[str, typer.Option(help="Camera group.")],
    camera_id: Annotated[str, typer.Option(help="Camera id carried by each frame.")],
    fps: Annotated[
        float | None, typer.Option(help="Frames per second (default: the video's; 0: flat out).")
    ] = None,
    loop: Annotated[bool, typer.Option(help="Start again at the end.")] = False,
) -> None:
    """Feed a recorded video or an image folder into a camera group's frames stream."""
    from facestream.ingest import native_fps, replay  # OpenCV: only the commands that decode

    settings = cli_settings()
    connections = Connections(Topology(settings))
    wait_for_redis(
        "replay",
        connections,
        connections.holding([group], draining=False),
        lambda: warn_unknown_groups(settings, connections, [group]),
    )
    publisher = FramePublisher(
        connections.for_group(group),
        group,
        camera_id,
        settings.ingest.frames_maxlen,
        settings.limits,
        replica_wait=settings.redis.replica_wait(),
    )
    rate = fps if fps is not None else (native_fps(path) or 5.0)
    stop = threading.Event()
    try:
        stats = replay(
            path,
            publisher,
            fps=rate or None,
            loop=loop,
            max_backlog=settings.ingest.max_backlog,
            quality=settings.ingest.jpeg_quality,
            max_side=settings.ingest.max_side,
            stop=stop,
            on_frame=lambda _f, _id: _progress(publisher.seq),
            on_pass=_pass_done if loop else None,
        )
    except KeyboardInterrupt:
        stop.set()
        raise typer.Exit(130) from None
    sys.stderr.write("\n")
    typer.echo(
        f"sent {stats.sent} frames to {publisher.stream} ({stats.loops} pass(es); "
        f"waited {stats.waited_s:.1f} s for workers, {stats.redis_errors} Redis errors)"
    )


def _pass_done(stats: ReplayStats) -> None:
    """With --loop, one line per pass, terminal or not: a long replay says it is alive."""
    start = "\r" if sys.stderr.isatty() else ""  # over the progress line on a terminal
    sys.stderr.write(f"{start}pass {stats.loops} done: {stats.sent} frames sent in all\n")
    sys.stderr.flush()


def _progress(sent: int) -> None:
    if sys.stderr.isatty():
        sys.stderr.write(f"\rsent {sent} frames")
        sys.stderr.flush()


@app.command("camera")
def camera_command(
    source: Annotated[
        str | None, typer.Option(help="rtsp://, http(s)://, /dev/videoN, file.")
    ] = None,
    substream: Annotated[
        str | None, typer.Option(help="The camera's low-resolution stream, read instead.")
    ] = None,
    camera_id: Annotated[str | None, typer.Option(help="Camera id (with --source).")] = None,
    group: Annotated[str | None, typer.Option(help="Camera group (with --source).")] = None,
    fps: Annotated[float, typer.Option(help="Frames published per second.")] = 5.0,
    transport: Annotated[str, typer.Option(help="RTSP transport: tcp or udp.")] = "tcp",
    max_side: Annotated[int | None, typer.Option(help="Downscale larger frames.")] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Port of /metrics, /healthz, /readyz (metrics_address).")
    ] = None,
) -> None:
    """Run live camera agents: one --source, or every camera of the config's `cameras:`."""
    from facestream.ingest import run_cameras  # OpenCV: only the commands that decode

    settings = cli_settings()
    cameras = list(settings.cameras)
    if source is not None:
        if not camera_id or not group:
            raise FacestreamError("--source needs --camera-id and --group")
        cameras = [
            CameraSettings(
                id=camera_id,
                group=group,
                source=source,
                substream=substream,
                fps=fps,
                rtsp_transport=transport,
                max_side=max_side,
            )
        ]
    if not cameras:
        raise FacestreamError("no camera: pass --source (with --camera-id, --group) or a config")
    probe = Probe()
    if metrics_port:
        serve_health(metrics_port, str(settings.metrics_address), probe)
    connections = Connections(Topology(settings))
    named = [cameras[0].group] if source is not None else []  # the config's are known
    wait_for_redis(
        "camera",
        connections,
        connections.holding((c.group for c in cameras), draining=False),
        lambda: warn_unknown_groups(settings, connections, named),
    )

    def tick(healths: list[CameraHealth]) -> None:
        probe.beat()
        down = [f"{h.camera} {h.state}" for h in healths if h.state != "streaming"]
        probe.set_ready(f"not streaming: {', '.join(down)}" if down else None)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    run_cameras(
        cameras,
        connections.for_group,
        settings.limits,
        settings.ingest.frames_maxlen,
        stop,
        on_tick=tick,
        replica_wait=settings.redis.replica_wait(),
    )


@app.command("worker")
def worker_command(
    groups: GroupsOption = None,
    concurrency: Annotated[int | None, typer.Option(help="Worker processes.")] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Port of /metrics, /healthz, /readyz (process N: port + N)."),
    ] = None,
    consumer: Annotated[str | None, typer.Option(help="Consumer name.")] = None,
    node: Annotated[
        str | None, typer.Option(help="Serve only these nodes of the config's nodes: (a,b).")
    ] = None,
) -> None:
    """Recognise faces in the frames of every group (or --groups) until SIGTERM/Ctrl-C.

    With nodes: in the config, --concurrency processes serve each node (or each --node).
    """
    from .workers import run_workers

    settings = cli_settings(
        groups=split_list(groups),
        worker={"concurrency": concurrency, "metrics_port": metrics_port, "consumer": consumer},
    )
    if groups:  # the check reads Redis: it waits for it like the workers do
        connections = Connections(Topology(settings))
        wait_for_redis(
            "worker",
            connections,
            connections.holding(settings.groups, draining=False),  # each worker waits for its own
            lambda: warn_unknown_groups(settings, connections, settings.groups),
        )
    nodes = split_list(node) or []
    raise typer.Exit(run_workers(settings, settings.worker.concurrency, nodes))


@results_app.command("tail")
def results_tail(
    group: Annotated[str, typer.Option(help="Camera group(s), comma-separated.")],
    json_output: Annotated[bool, typer.Option("--json", help="One JSON result per line.")] = False,
    count: Annotated[int | None, typer.Option(help="Stop after N results.")] = None,
    from_start: Annotated[bool, typer.Option(help="Begin with the oldest kept result.")] = False,
    identity: Annotated[str | None, typer.Option(help="Only results naming one of these.")] = None,
    camera: Annotated[str | None, typer.Option(help="Only results of these cameras.")] = None,
    min_similarity: Annotated[float | None, typer.Option(help="Only faces this similar.")] = None,
) -> None:
    """Print results as they are published (filters take comma-separated lists)."""
    sources = tail_sources(cli_settings(), split_list(group) or [])
    wanted = ResultFilter(
        identities=frozenset(split_list(identity) or []) if identity else None,
        cameras=frozenset(split_list(camera) or []) if camera else None,
        min_similarity=min_similarity,
    )
    feed = MergedFeed(
        {
            name: partial(_tail, client, node_groups, from_start, wanted)
            for name, (client, node_groups) in sources.items()
        }
    )

    def line(result: Result) -> str:
        return result.to_json().decode() if json_output else describe_result(result)

    echo_feed(feed, line, count)


def _tail(
    client: redis.Redis,
    groups: list[str],
    from_start: bool,
    wanted: ResultFilter,
    stop: threading.Event,
) -> Iterator[Result]:
    return tail_results(client, groups, from_start=from_start, stop=stop, wanted=wanted)


@app.command("status")
def status_command(
    groups: GroupsOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    watch: Annotated[
        float | None, typer.Option(help="Refresh every N seconds until Ctrl-C.", min=0.1)
    ] = None,
) -> None:
    """Show each group's streams (frames, pending, lag, results, dead letters), workers, cameras.

    With a node (or a cluster member) unreachable it shows what the others serve, lists the
    unreachable ones and exits 5; 3 only when nothing at all answers.
    """
    settings = cli_settings()
    connections = Connections(Topology(settings))
    try:
        while True:
            report = collect_site_status(connections, split_list(groups))
            # issue 17: the threshold derived for the gallery's size, as workers apply it
            point = operating_point(settings.match, gallery_size(connections))
            if json_output:  # with --watch: one JSON document per line
                document = {**report.to_dict(), "matching": point}
                typer.echo(orjson.dumps(document, option=0 if watch else orjson.OPT_INDENT_2))
            else:
                if watch and sys.stdout.isatty():
                    typer.echo("\x1b[2J\x1b[H", nl=False)  # clear the screen, cursor home
                if watch:
                    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
                    typer.echo(f"{stamp}, every {watch:g} s (Ctrl-C stops)\n")
                typer.echo(report.render())
                typer.echo(describe(point))
            if watch is None:
                if not all(node.up for node in report.nodes):
                    raise typer.Exit(EXIT_PARTIAL)  # a partial report: someone should look
                return
            time.sleep(watch)
    except KeyboardInterrupt:
        pass


@app.command("web")
def web_command(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default 8080).")] = None,
    node: Annotated[
        str | None, typer.Option(help="With nodes: in the config, the node this page shows.")
    ] = None,
    hash_password: Annotated[
        bool, typer.Option("--hash-password", help="Print a hash for web.password_hash; exit.")
    ] = False,
    init: Annotated[
        bool,
        typer.Option("--init", help="Write ./facestream.yaml with a new login; exit."),
    ] = False,
) -> None:
    """Serve the operators' page: cameras, live feed, charts, gallery, dead letters."""
    from .cli_web import init_web_config, print_password_hash
    from .web.app import serve

    if hash_password:
        print_password_hash()
        return
    if init:
        init_web_config(host or "127.0.0.1", port or 8080)
        return
    settings = cli_settings(web={"host": host, "port": port, "node": node})
    serve(settings, settings.web)


WIRE_MODELS: dict[str, type[BaseModel]] = {
    "frame": Frame,
    "result": Result,
    "dead-letter": DeadLetter,
    "event": Event,
    "event-dead-letter": EventDeadLetter,
    "camera-health": CameraHealth,
    "heartbeat": Heartbeat,
}


@app.command("schema")
def schema_command(
    out: Annotated[
        Path | None, typer.Option(help="Write <name>.schema.json files into this folder.")
    ] = None,
) -> None:
    """Print (or write) the JSON Schemas of the stream entries, for backends in other languages."""
    for name, model in WIRE_MODELS.items():
        text = orjson.dumps(
            model.model_json_schema(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
        ).decode()
        if out is None:
            typer.echo(f"# {name}\n{text}")
        else:
            (out / f"{name}.schema.json").write_text(text + "\n")


@app.command("demo")
def demo_command(
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    keep_running: Annotated[
        bool, typer.Option(help="Keep Redis and the workers up for the page until Ctrl-C.")
    ] = False,
) -> None:
    """Run everything on an embedded Redis with the bundled photos and a clip made from them."""
    from .demo import run_demo

    raise typer.Exit(run_demo(cli_settings(), workers=workers, keep_running=keep_running))


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise SystemExit(code)


def main() -> None:
    """Console-script entry: expected failures become one line and a documented exit code."""
    try:
        app(args=hoist_shared_options(sys.argv[1:]), prog_name="facestream")
    except FacestreamError as exc:
        _fail(str(exc), EXIT_INPUT)
    except REDIS_ERRORS as exc:
        message, code = _redis_failure(exc)
        if code is None:
            raise  # not an expected failure: a bug, and its traceback is the report
        _fail(message, code)
    except OSError as exc:  # a file or folder named on the command line or in the config
        _fail(f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc), EXIT_INPUT)


def _redis_failure(exc: Exception) -> tuple[str, int | None]:
    """The one line and exit code for a Redis error (code None: not one we expect)."""
    fault = classify(exc)
    if fault is Fault.CREDENTIALS:
        return authentication_hint(str(exc)), EXIT_REFUSED
    if fault is Fault.UNREACHABLE:
        if isinstance(exc, redis.exceptions.InvalidResponse):
            return (
                f"cannot reach Redis: the server does not speak Redis ({exc}); check --redis-url",
                EXIT_UNREACHABLE,
            )
        return f"cannot reach Redis ({exc}); check --redis-url", EXIT_UNREACHABLE
    if fault is Fault.TRANSIENT:  # nobody has to change anything: not a refusal
        return f"Redis cannot serve this now ({exc}); try again shortly", EXIT_UNREACHABLE
    if isinstance(exc, redis.exceptions.NoPermissionError):
        return f"Redis refused a command for this ACL user ({exc})", EXIT_REFUSED
    if fault is not None:  # e.g. WRONGTYPE: a key holds something else
        return f"Redis refused a command ({exc})", EXIT_REFUSED
    return str(exc), None
