"""Settings: YAML < env < flags, and a bad value fails at start-up naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from facestream.config import ConfigError, load_settings

REPO = Path(__file__).resolve().parents[1]


def test_example_config_is_valid() -> None:
    settings = load_settings(REPO / "configs" / "facestream.yaml")
    assert settings.redis.url.startswith("redis://127.0.0.1")


def test_precedence_yaml_env_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("worker:\n  batch_size: 4\n  max_deliveries: 5\nmatch:\n  threshold: 0.5\n")
    monkeypatch.setenv("FACESTREAM_WORKER__BATCH_SIZE", "6")
    settings = load_settings(config, match={"threshold": 0.4, "margin": None})
    assert settings.worker.batch_size == 6  # env beats YAML
    assert settings.worker.max_deliveries == 5  # YAML beats default
    assert settings.match.threshold == 0.4  # flag beats YAML
    assert settings.match.margin == 0.05  # an unset flag overrides nothing


def test_bad_value_names_the_field(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("worker:\n  batch_size: 0\n")
    with pytest.raises(
        ConfigError, match=r"worker\.batch_size: Input should be greater than or equal to 1"
    ):
        load_settings(config)


def test_unknown_field_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("worker:\n  batchsize: 3\n")
    with pytest.raises(ConfigError, match=r"worker\.batchsize: Extra inputs are not permitted"):
        load_settings(config)


def test_bad_group_and_url_are_named() -> None:
    with pytest.raises(ConfigError, match=r"groups: Value error, invalid camera group 'a b'"):
        load_settings(groups=["a b"])
    with pytest.raises(ConfigError, match=r"redis\.url: Value error, must start with redis://"):
        load_settings(redis={"url": "http://x"})


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^config file .*nope\.yaml does not exist$"):
        load_settings(tmp_path / "nope.yaml")
