from pathlib import Path

import pytest

import grey
from grey.config import ConfigError, read_connector_file

SEED_SHAPE = """\
connector:
  name: grey-kafka-bridge
  kafka:
    bootstrap_servers:
      - kafka-1.prod:9092
      - kafka-2.prod:9092
    security:
      protocol: SASL_SSL
      mechanism: SCRAM-SHA-512
      username: ${KAFKA_USER:-grey}
      password: ${KAFKA_PASSWORD}
  consumer:
    group_id: grey-processing-group
    auto_offset_reset: earliest
    enable_auto_commit: false
    max_poll_records: 500
    fetch_max_bytes: 52428800
    session_timeout_ms: 45000
  producer:
    acks: all
    enable_idempotence: true
    transactional_id_prefix: grey-tx-
    batch_size: 16384
    linger_ms: 5
    compression_type: lz4
  grey:
    exactly_once: true
    offset_storage: grey-consensus
    checkpoint_interval: 1000
    max_inflight_batches: 4
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "grey-kafka-connector.yaml"
    path.write_text(text)
    return path


def test_case_study_file_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_PASSWORD", "s3cret")
    monkeypatch.delenv("GREY_BROKER", raising=False)
    app = grey.App.from_config(write(tmp_path, SEED_SHAPE))
    conf = app.conf
    assert app.id == "grey-processing-group"
    assert conf.broker == "kafka://kafka-1.prod:9092,kafka-2.prod:9092"
    assert conf.processing_guarantee == "exactly_once"
    assert conf.client.isolation_level == "read_committed"
    assert conf.client.sasl_password == "s3cret"
    assert conf.client.sasl_username == "grey"
    assert conf.client.max_poll_records == 500
    assert conf.client.compression_type == "lz4"
    assert conf.checkpoint_interval == 1000


def test_missing_secret_variable_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match=r"KAFKA_PASSWORD.*not set"):
        grey.App.from_config(write(tmp_path, SEED_SHAPE))


def test_literal_secret_is_refused(tmp_path: Path) -> None:
    text = SEED_SHAPE.replace("${KAFKA_PASSWORD}", "hunter2")
    with pytest.raises(ConfigError, match=r"security.password holds a literal secret"):
        read_connector_file(write(tmp_path, text))


def test_typo_names_key_file_and_closest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_PASSWORD", "x")
    path = write(tmp_path, SEED_SHAPE.replace("max_poll_records", "max_pol_records"))
    with pytest.raises(ConfigError) as info:
        read_connector_file(path)
    message = str(info.value)
    assert str(path) in message
    assert "'max_pol_records'" in message
    assert "did you mean 'max_poll_records'" in message


def test_auto_commit_true_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_PASSWORD", "x")
    path = write(tmp_path, SEED_SHAPE.replace("enable_auto_commit: false", "enable_auto_commit: true"))
    with pytest.raises(ConfigError, match="grey commits offsets itself"):
        read_connector_file(path)


def test_unknown_app_option_suggests() -> None:
    with pytest.raises(ConfigError, match=r"did you mean 'checkpoint_interval'"):
        grey.App("a", checkpont_interval=10)


def test_bad_guarantee() -> None:
    with pytest.raises(ConfigError, match=r"did you mean 'at_least_once'"):
        grey.App("a", processing_guarantee="at_least_one")


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREY_BROKER", "kafka://127.0.0.1:19092")
    monkeypatch.setenv("GREY_CHECKPOINT_INTERVAL", "50")
    monkeypatch.setenv("GREY_SESSION_TIMEOUT_MS", "6000")
    app = grey.App("a", broker="kafka://elsewhere:9092")
    assert app.conf.broker == "kafka://127.0.0.1:19092"
    assert app.conf.checkpoint_interval == 50
    assert app.conf.client.session_timeout_ms == 6000


def test_environment_override_type_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREY_CHECKPOINT_INTERVAL", "often")
    with pytest.raises(ConfigError, match="GREY_CHECKPOINT_INTERVAL='often': expected an integer"):
        grey.App("a")


def test_defaults_follow_the_case_study(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GREY_BROKER", raising=False)
    conf = grey.App("clicks").conf
    assert conf.group_id == "clicks"
    assert conf.client.acks == "all" and conf.client.enable_idempotence
    assert conf.client.compression_type == "lz4" and conf.client.linger_ms == 5
    assert conf.processing_guarantee == "at_least_once"


def test_exactly_once_from_the_environment_takes_its_own_interval_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREY_PROCESSING_GUARANTEE", "exactly_once")
    conf = grey.App("eos").conf
    assert (conf.processing_guarantee, conf.client.isolation_level) == ("exactly_once", "read_committed")
    assert conf.commit_interval == 1.0 and conf.checkpoint_interval == 1_000_000
    monkeypatch.setenv("GREY_COMMIT_INTERVAL", "0.1")
    assert grey.App("eos").conf.commit_interval == 0.1  # set explicitly: kept
