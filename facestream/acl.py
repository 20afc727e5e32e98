"""Generate the Redis ACL of a deployment from its config: one user per role, group and camera.

Each user is a list of grants; a grant is some commands on some keys with an access mode. On
Redis 7 the first grant is the user's root permissions and every other one a selector, so a
command is allowed only on the keys of its own grant (a camera's SET reaches its health key and
never a frames stream) and read-only keys are `%R~`. Redis 6 has neither: merging the grants
gives every command every key, so the generator refuses unless told to accept that, and then
lists what each user gains.

What no ACL can restrict is the arguments: every role that may XADD to a stream may still
`XADD … MAXLEN 0` or give it the last possible id, and a reader of a stream may claim entries
of another consumer group on it (consumer groups are no ACL objects). Scoping confines that to
the role's own streams; stream_faults.py detects the first two (see docs/security.md).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from facestream.schemas import keys

from .config import ConfigError, Settings

__all__ = [
    "SERVICE_SECRETS",
    "AclError",
    "Grant",
    "User",
    "check_strength",
    "password_file",
    "plan_users",
    "render_acl",
    "write_passwords",
    "write_secrets",
]

CameraScope = Literal["camera", "group"]

#: Secrets that are not Redis passwords, made next to them: file name → who reads it.
SERVICE_SECRETS = {
    "web-login.token": "web.token_file: the operators' login (and bearer) token of the web page",
    "web-metrics.token": "web.metrics_token_file: lets Prometheus read the web page's /metrics",
    "grafana-admin.password": "Grafana's admin password (GF_SECURITY_ADMIN_PASSWORD__FILE)",
}


class AclError(ConfigError):
    """No ACL with the asked-for guarantees can be made for this config or server."""


@dataclass(frozen=True)
class Grant:
    """`commands` allowed on `keys`, read (`R`), write (`W`) or both (`RW`)."""

    commands: tuple[str, ...]
    keys: tuple[str, ...] = ()
    access: Literal["R", "W", "RW"] = "RW"

    def rules(self) -> list[str]:
        prefix = "~" if self.access == "RW" else f"%{self.access}~"
        return [f"+{command}" for command in self.commands] + [prefix + k for k in self.keys]


@dataclass(frozen=True)
class User:
    """One ACL user; the first grant also holds the keyless commands (PING, MULTI…)."""

    name: str
    role: str
    grants: tuple[Grant, ...]

    def rules(self, redis_major: int) -> str:
        root, *others = self.grants
        if redis_major >= 7:
            selectors = " ".join(f"({' '.join(['-@all', *grant.rules()])})" for grant in others)
            return " ".join(["resetkeys resetchannels -@all", *root.rules(), selectors]).strip()
        # Redis 6: one set of commands on one set of keys, every key readable and writable.
        commands = dict.fromkeys(c for grant in self.grants for c in grant.commands)
        patterns = dict.fromkeys(k for grant in self.grants for k in grant.keys)
        merged = Grant(tuple(commands), tuple(patterns)).rules()
        return " ".join(["resetkeys resetchannels -@all", *merged])

    def weaker_on_redis6(self) -> list[str]:
        """What this user may do on Redis 6 that its Redis 7 rules forbid."""
        gains = []
        for grant in self.grants:
            foreign = [k for other in self.grants if other is not grant for k in other.keys]
            foreign = [k for k in dict.fromkeys(foreign) if k not in grant.keys]
            keyed = [c for c in grant.commands if c not in _KEYLESS]
            if keyed and foreign:
                gains.append(f"{' '.join(keyed)} also on {' '.join(foreign)}")
            if grant.access == "R" and grant.keys:
                gains.append(f"read-only keys become writable: {' '.join(grant.keys)}")
            if "script|load" in grant.commands:
                gains.append("SCRIPT LOAD and EVALSHA: any Lua it sends runs on the server")
        return gains


# Commands that name no key: merging grants on Redis 6 gives them nothing.
_KEYLESS = frozenset(
    {"ping", "client|setinfo", "multi", "exec", "unwatch", "scan", "function|load", "function|list"}
)


# Keyless commands every client sends: PING for health checks (redis-py's CLIENT SETINFO is
# refused harmlessly on 7.0, which does not know it; 7.2 does, so it is granted there).
def _keyless(redis_version: tuple[int, int], *extra: str) -> tuple[str, ...]:
    setinfo = ("client|setinfo",) if redis_version >= (7, 2) else ()
    return ("ping", *setinfo, *extra)


def plan_users(
    settings: Settings,
    redis_version: tuple[int, int] = (7, 0),
    camera_scope: CameraScope = "camera",
    replay_groups: Sequence[str] = (),
) -> list[User]:
    """Every user the deployment described by `settings` needs, least privilege each."""
    on_nodes = [g for node in settings.nodes.values() for g in (*node.groups, *node.draining)]
    groups = sorted(
        {*settings.groups, *on_nodes, *(c.group for c in settings.cameras), *replay_groups}
    )
    if not groups:
        raise AclError(
            "no camera groups in the config: list them under `groups:`, `nodes:` or `cameras:` "
            "(the ACL names each group's keys)"
        )
    version = redis_version
    users = [
        _admin(groups, version),
        _worker(settings, groups, version),
        _backend(groups, version),
        _web(groups, version),
        _bridge(settings, groups, version),
    ]
    users += _cameras(settings, camera_scope, version)
    users += [_replay(group, version) for group in sorted(set(replay_groups))]
    # For health checks (compose, Kubernetes probes): PING and nothing else.
    users.append(User("health", "health", (Grant(_keyless(version)),)))
    return users


def _each(groups: Iterable[str], *makers: Callable[[str], str]) -> tuple[str, ...]:
    return tuple(make(group) for group in groups for make in makers)


def _caches(group: str) -> str:
    return keys.cache(group, "*")


def _snapshots(group: str) -> str:
    return keys.snapshot(group, "*")


def _tracks(group: str) -> str:
    return keys.track(group, "*")


_GALLERY = (keys.GALLERY_IDENTITIES, keys.GALLERY_VERSION)
# Enrol, remove, erase: HSET/HDEL and the version bump (redis-py's INCR is INCRBY).
_GALLERY_WRITES = ("get", "hget", "hgetall", "hset", "hdel", "incrby")


def _erase(groups: list[str]) -> tuple[Grant, ...]:
    """`Gallery.erase`: it purges the person's cached recognitions and the snapshots of tracks
    given that name, found in the live track states and in the events that name them."""
    return (
        Grant(("get", "unlink", "del"), _each(groups, _caches, _snapshots)),
        Grant(("hget",), _each(groups, _tracks), "R"),
        Grant(("xrange",), _each(groups, keys.events), "R"),
    )


def _admin(groups: list[str], version: tuple[int, int]) -> User:
    # SCAN for `status` and `gallery erase`; FUNCTION LOAD once, for the workers' commit.
    functions = ("function|load", "function|list") if version >= (7, 0) else ()
    root = Grant(_keyless(version, "multi", "exec", "scan", *functions))
    return User(
        "admin",
        "admin",
        (
            root,
            Grant(_GALLERY_WRITES, _GALLERY),
            # `status`: stream lengths and consumer groups, entries tried alone, camera health.
            Grant(
                ("xinfo|groups", "xinfo|stream", "xlen", "exists", "get", "hlen"),
                (keys.EVERY_KEY,),
                "R",
            ),
            *_erase(groups),
            Grant(("zcard", "del"), (keys.VISITOR_SEEN, keys.VISITOR_EMBEDDINGS)),
        ),
    )


def _worker(settings: Settings, groups: list[str], version: tuple[int, int]) -> User:
    frames = _each(groups, keys.frames)
    outputs = _each(groups, keys.results, keys.dead)
    caches = _each(groups, _caches)
    events, tracks, snapshots = (_each(groups, k) for k in (keys.events, _tracks, _snapshots))
    solos = _each(groups, keys.solo)
    # FCALL names every key of a commit; the function's own calls are checked again, one by
    # one, against the grants below. Without groups in its config a worker discovers them.
    discovery = ("scan",) if not settings.groups and not settings.nodes else ()
    # Redis 6 has no Functions: the commit script is loaded by the worker itself.
    commit = ("fcall",) if version >= (7, 0) else ("evalsha", "script|load")
    committed = frames + outputs + caches + solos + tracks + events + snapshots
    grants = [
        Grant(_keyless(version, "multi", "exec", *commit, *discovery), committed),
        Grant(
            ("xreadgroup", "xack", "xautoclaim", "xpending", "xgroup|create", "xrange"),
            frames,
        ),
        Grant(("xadd", "xpending"), outputs),
        Grant(("get", "set"), caches),
        Grant(("get", "hgetall"), _GALLERY, "R"),
        Grant(("set", "del"), (keys.worker_heartbeat("*"),), "W"),
        # Solo attempts (recognizer/solo.py): read and put on record before an entry is tried
        # alone, counted (HLEN) for the metric; the commit clears its entry's (HDEL).
        Grant(("hget", "hset", "hdel", "expire", "hlen"), solos),
        # Visits (recognizer/tracks.py and the commit): a camera's track state is a hash read
        # with HMGET and compare-and-set in the commit (HGET, HSET, EXPIRE); the commit checks
        # (TYPE) and writes events and best-face snapshots; a `seen` event goes out after the
        # site-wide once-per-cooldown marker, SET NX EX, which it never reads back.
        Grant(("hmget", "hget", "hset", "expire"), tracks),
        Grant(("type", "xadd"), events),
        Grant(("type", "set"), snapshots),
        Grant(("set",), (keys.seen("*"),), "W"),
    ]
    if settings.visitors.enabled:
        commands = ("hset", "hdel", "hgetall", "zadd", "zrem", "zrangebyscore", "zcard", "del")
        grants.append(Grant(commands, (keys.VISITOR_EMBEDDINGS, keys.VISITOR_SEEN)))
    return User("worker", "worker", tuple(grants))


# A reader's own consumer group on a stream: read, ack, claim, create (MKSTREAM). Never XADD.
# EXISTS: `events tail` checks a group's events stream is there.
_SUBSCRIBE = (
    "xread", "xreadgroup", "xrange", "xrevrange", "xlen", "xinfo|stream", "xinfo|groups",
    "xack", "xautoclaim", "xgroup|create", "exists",
)  # fmt: skip


def _backend(groups: list[str], version: tuple[int, int]) -> User:
    # Results and events in one grant: a subscriber may read both in one XREADGROUP, and a
    # command is allowed only when a single grant covers all of its keys.
    streams = _each(groups, keys.results, keys.events)
    # No SCAN: `results tail` checks the groups it follows with EXISTS (cli_feeds.py); key
    # names of every group, other deployments' included, are none of the backend's business.
    return User(
        "backend",
        "backend",
        (
            Grant(_keyless(version)),
            Grant(_SUBSCRIBE, streams),
            Grant(("get",), _each(groups, _snapshots), "R"),
        ),
    )


def _web(groups: list[str], version: tuple[int, int]) -> User:
    """`facestream web`: what facestream/web/*.py sends, and nothing else (tests/test_acl.py
    runs every page endpoint as this user)."""
    frames = _each(groups, keys.frames)
    dead = _each(groups, keys.dead)
    return User(
        "web",
        "web",
        (
            # SCAN finds groups, cameras and workers; UNWATCH ends a refused dead-letter retry.
            Grant(_keyless(version, "multi", "exec", "unwatch", "scan")),
            # Status samples (XINFO GROUPS, XLEN; XINFO STREAM finds a sabotaged stream:
            # stream_faults.py), frame images for tiles and thumbnails, and a retried dead
            # letter's frame sent again (its only XADD).
            Grant(("exists", "xinfo|groups", "xinfo|stream", "xlen", "xrange", "xadd"), frames),
            Grant(("hlen",), _each(groups, keys.solo), "R"),  # status: entries tried alone
            # The live feed: one XREAD follows a group's results and events together; visits
            # and people are read by time range (XRANGE), a photo's result by XREAD.
            Grant(
                ("xread", "xrange", "xrevrange", "xlen", "xinfo|stream"),
                _each(groups, keys.results, keys.events),
                "R",
            ),
            Grant(("watch", "xrange", "xrevrange", "xlen", "xdel", "del", "xinfo|stream"), dead),
            Grant(("xinfo|stream",), _each(groups, keys.events_dead), "R"),
            Grant(_GALLERY_WRITES, _GALLERY),
            *_erase(groups),
            Grant(("get",), (keys.camera_health("*"), keys.worker_heartbeat("*")), "R"),
        ),
    )


def _bridge(settings: Settings, groups: list[str], version: tuple[int, int]) -> User:
    """MQTT and webhook bridges: each a consumer group on the events (and on the results where
    `bridge.mqtt.results` says so), snapshots to attach, and the events it could not deliver
    written to the events' dead letters."""
    claims = ("xgroup|create", "xreadgroup", "xack", "xautoclaim", "xpending")
    info = ("xinfo|stream", "xinfo|groups", "xinfo|consumers")
    streams = (keys.events, keys.results) if settings.bridge.mqtt.results else (keys.events,)
    return User(
        "bridge",
        "bridge",
        (
            Grant(_keyless(version)),
            Grant((*claims, *info), _each(groups, *streams)),
            Grant(("get",), _each(groups, _snapshots), "R"),
            Grant(("xadd",), _each(groups, keys.events_dead), "W"),
        ),
    )


def _cameras(settings: Settings, scope: CameraScope, version: tuple[int, int]) -> list[User]:
    by_user: dict[str, tuple[str, list[str]]] = {}
    for camera in settings.cameras:
        name = f"camera-{camera.id}" if scope == "camera" else f"camera-{camera.group}"
        by_user.setdefault(name, (camera.group, []))[1].append(camera.id)
    return [
        User(
            name,
            "camera",
            (
                *_sender(group, version),
                Grant(("set",), tuple(keys.camera_health(i) for i in sorted(ids)), "W"),
            ),
        )
        for name, (group, ids) in sorted(by_user.items())
    ]


def _replay(group: str, version: tuple[int, int]) -> User:
    return User(f"replay-{group}", "replay", _sender(group, version))


def _sender(group: str, version: tuple[int, int]) -> tuple[Grant, Grant]:
    """XADD to the group's frames stream, and XINFO GROUPS on it: how far the workers are (a
    camera sheds frames and replay waits while they are behind). No read of any entry."""
    stream = (keys.frames(group),)
    return Grant(_keyless(version, "xadd"), stream, "W"), Grant(("xinfo|groups",), stream, "R")


def check_strength(
    users: Sequence[User], redis_version: tuple[int, int], allow_weaker: bool = False
) -> list[str]:
    """What the users could do on this server beyond their grants (nothing on Redis 7).

    Raises AclError listing it unless `allow_weaker`: a weaker file is never made silently.
    """
    if redis_version >= (7, 0):
        return []
    weaker = [f"{user.name}: {gain}" for user in users for gain in user.weaker_on_redis6()]
    if weaker and not allow_weaker:
        raise AclError(
            f"Redis {redis_version[0]} has no ACL selectors or read-only key patterns, so these "
            f"cannot be restricted: {'; '.join(weaker)}; use Redis 7, or accept them with "
            "--allow-weaker"
        )
    return weaker


def render_acl(
    users: Sequence[User],
    password_hashes: dict[str, str],
    redis_version: tuple[int, int] = (7, 0),
    allow_weaker: bool = False,
) -> str:
    """The ACL file for `users` (`password_hashes`: user → SHA-256 hex of its password).

    An ACL file holds no comments, so it cannot say it is weaker: see `check_strength`.
    """
    check_strength(users, redis_version, allow_weaker)
    lines = ["user default off resetpass resetkeys resetchannels -@all"]
    for user in users:
        rules = user.rules(redis_version[0])
        lines.append(f"user {user.name} on #{password_hashes[user.name]} {rules}")
    return "\n".join(lines) + "\n"


def write_passwords(users: Sequence[User], folder: Path) -> dict[str, str]:
    """A password per user in `folder/<user>.password` (0600), kept if already there.

    Returns user → SHA-256 hex, what the ACL file holds. Keeping existing files makes
    regenerating the ACL (a camera added) leave every running process's password valid.
    """
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return {
        user.name: hashlib.sha256(
            password_file(folder / f"{user.name}.password").encode()
        ).hexdigest()
        for user in users
    }


def write_secrets(users: Sequence[User], folder: Path) -> dict[str, str]:
    """`write_passwords`, plus the `SERVICE_SECRETS` (0600, kept if already there)."""
    hashes = write_passwords(users, folder)
    for name in SERVICE_SECRETS:
        password_file(folder / name)
    return hashes


def password_file(path: Path) -> str:
    """The password in `path`; a new random one, written there 0600, if there is none."""
    if path.exists():
        password = path.read_text().rstrip("\r\n")
        if not password:
            raise AclError(f"{path} is empty: delete it to have a new password generated")
        return password
    password = secrets.token_urlsafe(32)  # URL-safe: no escaping in a redis:// URL
    # Created 0600 from the start: no moment where another user could read it.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(password + "\n")
    return password
