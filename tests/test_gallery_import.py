"""Gallery import refuses a bad file whole; an unusable identity in Redis costs only itself."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from prometheus_client import REGISTRY

from facestream.recognizer import Gallery, current_model_id
from facestream.schemas import Identity, keys
from facestream.server import EmbeddedRedis

MODEL = current_model_id()


def _unit(seed: int) -> list[float]:
    vector = np.random.default_rng(seed).standard_normal(128)
    return [float(x) for x in vector / np.linalg.norm(vector)]


def _identity(name: str, **changes: Any) -> dict[str, Any]:
    entry = {"name": name, "model": MODEL, "embeddings": [_unit(len(name))], "enrolled_at": 1}
    return {**entry, **changes}


def _facestream(server: EmbeddedRedis, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "facestream", *args, "--redis-url", server.url],
        env=os.environ, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _export(identities: list[dict[str, Any]], **top: Any) -> dict[str, Any]:
    return {"model": MODEL, "exported_at": 1, "identities": identities, **top}


BAD = [
    (
        _identity("zero", embeddings=[[0.0] * 128]),
        "identity 'zero': embeddings[0]: length 0, not a unit vector",
    ),
    (
        _identity("nan", embeddings=[[math.nan, *_unit(1)[1:]]]),
        "identity 'nan': embeddings[0]: holds NaN or infinity",
    ),
    (
        _identity("null", embeddings=[[None, *_unit(1)[1:]]]),  # orjson's NaN
        "identity 'null': embeddings.0.0: Input should be a valid number",
    ),
    (
        _identity("short", embeddings=[_unit(1)[:64]]),
        "identity 'short': embeddings[0]: 64 values, the model makes 128",
    ),
    (
        _identity("ragged", embeddings=[_unit(1), _unit(2)[:127]]),
        "identity 'ragged': embeddings[1]: 127 values, the model makes 128",
    ),
    (
        _identity("half", negatives=[[x / 2 for x in _unit(3)]]),
        "identity 'half': negatives[0]: length 0.5, not a unit vector",
    ),
    (
        _identity("other", model="yunet@0+sface@0"),
        f"identity 'other': model: enrolled with yunet@0+sface@0, this installation runs {MODEL}",
    ),
    (
        _identity("many", embeddings=[_unit(1)] * 1001),
        "identity 'many': embeddings: 1001 entries, at most 1000",
    ),
]


@pytest.mark.parametrize(("bad", "message"), BAD, ids=[bad["name"] for bad, _ in BAD])
def test_import_refuses_the_file_naming_identity_and_field(
    redis_server: EmbeddedRedis, client: redis.Redis, tmp_path: Path, bad: Any, message: str
) -> None:
    Gallery(client).enroll(Identity.model_validate(_identity("kept")))
    before = client.hgetall(keys.GALLERY_IDENTITIES), client.get(keys.GALLERY_VERSION)
    source = tmp_path / "gallery.json"
    source.write_text(json.dumps(_export([_identity("fine"), bad])))  # NaN as JSON's NaN
    done = _facestream(redis_server, "gallery", "import", str(source))
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"error: {source}: {message}; nothing imported\n"
    assert (client.hgetall(keys.GALLERY_IDENTITIES), client.get(keys.GALLERY_VERSION)) == before


def test_import_refuses_a_name_twice_and_accepts_a_good_file(
    redis_server: EmbeddedRedis, client: redis.Redis, tmp_path: Path
) -> None:
    source = tmp_path / "gallery.json"
    source.write_text(json.dumps(_export([_identity("twin"), _identity("twin")])))
    done = _facestream(redis_server, "gallery", "import", str(source))
    assert done.returncode == 2
    assert (
        done.stderr == f"error: {source}: identity 'twin': name: listed twice; nothing imported\n"
    )
    assert client.hlen(keys.GALLERY_IDENTITIES) == 0
    source.write_text(json.dumps(_export([_identity("ann"), _identity("bob")])))
    done = _facestream(redis_server, "gallery", "import", str(source))
    assert (done.returncode, done.stdout) == (0, "imported 2 identities; gallery version 1\n")


def _skipped_gauge() -> float | None:
    return REGISTRY.get_sample_value("facestream_gallery_identities_skipped")


def test_an_unusable_identity_in_redis_is_skipped_logged_and_counted(
    redis_server: EmbeddedRedis, client: redis.Redis, tmp_path: Path
) -> None:
    good = Identity.model_validate(_identity("good"))
    Gallery(client).enroll(good)
    # What an edited import of old wrote: NaN stored as null, a zero vector, another model.
    client.hset(
        keys.GALLERY_IDENTITIES,
        mapping={
            "nan": json.dumps(_identity("nan", embeddings=[[None] * 128])),
            "zero": json.dumps(_identity("zero", embeddings=[[0.0] * 128])),
            "other": json.dumps(_identity("other", model="yunet@0+sface@0")),
        },
    )
    matcher = Gallery(client).matcher(MODEL, 0.363, 0.05)
    assert matcher.names == ["good"]
    probe = np.asarray([good.embeddings[0]], dtype=np.float32)
    assert [m.identity for m in matcher.match(probe)] == ["good"]
    assert _skipped_gauge() == 3

    listed = _facestream(redis_server, "gallery", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.endswith("1 identities, gallery version 1\n")
    assert (
        "warning: identity 'zero' is unusable, workers skip it: embeddings[0]: length 0, "
        "not a unit vector\n" in listed.stderr
    )
    export = tmp_path / "out.json"
    assert _facestream(redis_server, "gallery", "export", str(export)).returncode == 0
    assert [i["name"] for i in json.loads(export.read_text())["identities"]] == ["good"]
    status = _facestream(redis_server, "status")
    assert status.returncode == 0, status.stderr
    assert (
        "gallery: 3 unusable identities skipped by workers: 'nan' (embeddings.0.0: Input "
        "should be a valid number); 'other' (model: enrolled with yunet@0+sface@0, this "
        f"installation runs {MODEL}); 'zero' (embeddings[0]: length 0, not a unit vector)"
    ) in status.stdout
    # The unusable identity can still be erased (it never matched, so no cache is purged).
    done = _facestream(redis_server, "gallery", "erase", "nan")
    assert done.returncode == 0, done.stderr
    assert client.hexists(keys.GALLERY_IDENTITIES, "nan") == 0
