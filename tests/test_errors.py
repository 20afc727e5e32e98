"""One exception tree and one Redis-error classifier: every class drawn, every fault sorted from
what a real redis-server answers."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import structlog

import facestream
from facestream.outage import Outage
from facestream.redis_errors import Fault, classify, is_transient
from facestream.schemas import FacestreamError, errors
from facestream.server import EmbeddedRedis, free_port

from .helpers import wait_for


def _project_exceptions() -> Iterator[type[BaseException]]:
    for module_info in pkgutil.walk_packages(facestream.__path__, "facestream."):
        if module_info.name.endswith("__main__"):
            continue  # running it is the CLI
        module = importlib.import_module(module_info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == module.__name__:
                yield value


def test_every_project_exception_is_in_the_one_tree_and_drawn() -> None:
    found = set(_project_exceptions())
    assert len(found) >= 16  # the tree as drawn today; a new class must join it
    for cls in found:
        assert issubclass(cls, FacestreamError), f"{cls.__module__}.{cls.__name__}"
        assert re.search(rf"\b{cls.__name__}\b", errors.__doc__ or ""), f"{cls.__name__} not drawn"


def _error(call: object) -> BaseException:
    with pytest.raises(Exception) as caught:
        call()  # type: ignore[operator]
    return caught.value


def test_what_a_real_server_answers_is_sorted_into_faults(client: redis.Redis) -> None:
    client.set("a-string", "x")
    assert classify(_error(lambda: client.xlen("a-string"))) is Fault.GROUP  # WRONGTYPE
    client.xadd("s", {"f": "v"})
    nogroup = _error(lambda: client.xreadgroup("nobody", "c", {"s": ">"}))
    assert classify(nogroup) is Fault.NO_GROUP
    assert classify(_error(lambda: client.execute_command("NOSUCHCOMMAND"))) is Fault.REFUSED
    client.acl_setuser("pinger", enabled=True, passwords=["+pw"], commands=["+ping", "+auth"])
    port = client.connection_pool.connection_kwargs["port"]
    limited = redis.Redis(port=port, username="pinger", password="pw")
    assert classify(_error(lambda: limited.get("k"))) is Fault.GROUP  # NOPERM
    wrong = redis.Redis(port=port, username="pinger", password="wrong")
    assert classify(_error(wrong.ping)) is Fault.CREDENTIALS
    client.acl_deluser("pinger")
    nobody = redis.Redis(port=free_port())
    assert classify(_error(nobody.ping)) is Fault.UNREACHABLE
    assert classify(ValueError("not Redis's")) is None


def test_a_replica_answers_not_now(redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    """READONLY from a replica, MASTERDOWN from one that may not serve stale data: transient."""
    replica = EmbeddedRedis(
        tmp_path,
        appendonly=False,
        extra_args=(
            "--replicaof", "127.0.0.1", str(free_port()),  # a master that is not there
            "--replica-serve-stale-data", "no",
        ),
    )  # fmt: skip
    with replica:
        reader = redis.Redis(port=replica.port)
        masterdown = _error(lambda: reader.get("k"))
        assert isinstance(masterdown, redis.exceptions.MasterDownError)
        assert classify(masterdown) is Fault.TRANSIENT
        reader.replicaof("127.0.0.1", redis_server.port)
        wait_for(lambda: reader.info("replication")["master_link_status"] == "up")
        readonly = _error(lambda: reader.set("k", "v"))
        assert isinstance(readonly, redis.exceptions.ReadOnlyError)
        assert is_transient(readonly)
        reader.close()


def test_an_outage_is_said_once_then_seldom_then_once_when_over() -> None:
    with structlog.testing.capture_logs() as said:
        outage = Outage(structlog.get_logger("t"), who="test")
        error = redis.ConnectionError("Error 111 connecting")
        for _ in range(50):  # many retries in much less than the first repeat interval (2 s)
            outage.failed(error, retry_in_s=0.1)
        outage.recovered()
        outage.recovered()  # nothing more: it was said
    assert [line["event"] for line in said] == ["redis unavailable", "redis available again"]
    assert said[0]["log_level"] == "warning"
    assert said[0]["error"] == "ConnectionError: Error 111 connecting"
    assert said[1]["attempts"] == 50
