"""Settings for an App, from keyword arguments, the connector YAML file and the environment.

Precedence, strongest first: ``grey worker`` flags, ``GREY_*`` environment
variables, then the file or the ``App(...)`` arguments, then defaults.
Secrets are never read from the file itself: it names environment variables
(``password: ${KAFKA_PASSWORD}``).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from grey.transport.base import ClientSettings

GUARANTEES = ("at_most_once", "at_least_once", "exactly_once")
ERROR_POLICIES = ("stop_partition", "crash")


class ConfigError(ValueError):
    """A setting is missing, mistyped or unknown; the message names the fix."""


def closest(word: str, choices: list[str]) -> str:
    """' (did you mean X?)' for the nearest valid name, or ''."""
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


@dataclass(slots=True)
class Settings:
    """Everything an App can be told. Client knobs live in ``client``."""

    id: str
    broker: str = "kafka://127.0.0.1:9092"
    processing_guarantee: str = "at_least_once"
    checkpoint_interval: int = 1000
    commit_interval: float = 5.0
    max_inflight_batches: int = 4
    transactional_id_prefix: str = "grey-tx-"
    on_error: str = "stop_partition"
    retry_count: int = 8
    retry_backoff: float = 0.5
    dead_letter_topic: str | None = None
    topic_replicas: int = 1
    topic_partitions: int = 8
    shutdown_timeout: float = 30.0
    gc_tuning: bool = True
    data_dir: str = "grey-data"
    client: ClientSettings = field(default_factory=lambda: ClientSettings(group_id=""))

    def __post_init__(self) -> None:
        if not self.client.group_id:
            self.client.group_id = self.id
        self.validate()

    def validate(self) -> None:
        if not self.id or not re.fullmatch(r"[A-Za-z0-9._-]+", self.id):
            raise ConfigError(f"app id {self.id!r} must be non-empty and use only letters, digits, '.', '_', '-'")
        if self.processing_guarantee not in GUARANTEES:
            raise ConfigError(
                f"processing_guarantee={self.processing_guarantee!r} is not one of {', '.join(GUARANTEES)}"
                + closest(self.processing_guarantee, list(GUARANTEES))
            )
        if self.on_error not in ERROR_POLICIES:
            raise ConfigError(f"on_error={self.on_error!r} is not one of {', '.join(ERROR_POLICIES)}")
        if self.checkpoint_interval < 1:
            raise ConfigError(f"checkpoint_interval must be >= 1 message, got {self.checkpoint_interval}")
        if self.commit_interval <= 0:
            raise ConfigError(f"commit_interval must be > 0 seconds, got {self.commit_interval}")
        if self.retry_count < 0 or self.retry_backoff < 0:
            raise ConfigError(f"retry_count and retry_backoff must be >= 0, got {self.retry_count} and "
                              f"{self.retry_backoff}")
        if self.max_inflight_batches < 1:
            raise ConfigError(f"max_inflight_batches must be >= 1, got {self.max_inflight_batches}")
        if not (self.broker.startswith("kafka://") or self.broker.startswith("memory://")):
            raise ConfigError(f"broker={self.broker!r}: use kafka://host:port[,host:port] or memory://name")
        if self.processing_guarantee == "exactly_once":
            self.client.isolation_level = "read_committed"

    @property
    def group_id(self) -> str:
        return self.client.group_id


_APP_KEYS = [f.name for f in fields(Settings) if f.name not in ("id", "client")]
_CLIENT_KEYS = [f.name for f in fields(ClientSettings)]


def build_settings(app_id: str, options: Mapping[str, Any], source: str = "App(...)") -> Settings:
    """Settings from flat keyword options (app keys and client keys mixed), checked by name."""
    app_opts: dict[str, Any] = {}
    client_opts: dict[str, Any] = {}
    for key, value in options.items():
        if key in _APP_KEYS:
            app_opts[key] = value
        elif key in _CLIENT_KEYS:
            client_opts[key] = value
        else:
            raise ConfigError(f"unknown setting {key!r} in {source}" + closest(key, _APP_KEYS + _CLIENT_KEYS))
    client_opts.setdefault("group_id", "")
    settings = Settings(id=app_id, client=ClientSettings(**client_opts), **app_opts)
    apply_environment(settings, os.environ)
    if settings.processing_guarantee == "exactly_once":
        # A transaction per checkpoint and partition group: checkpoint on time, not every 1,000 events.
        for name, value in EXACTLY_ONCE_DEFAULTS.items():
            if name not in app_opts and f"GREY_{name.upper()}" not in os.environ:
                setattr(settings, name, value)
    return settings


#: Defaults that differ under exactly-once (unless set explicitly).
EXACTLY_ONCE_DEFAULTS: dict[str, Any] = {"checkpoint_interval": 1_000_000, "commit_interval": 1.0}


def _coerce(name: str, raw: str, current: Any) -> Any:
    if isinstance(current, bool):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"GREY_{name.upper()}={raw!r}: expected true or false")
    if isinstance(current, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"GREY_{name.upper()}={raw!r}: expected an integer") from None
    if isinstance(current, float):
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"GREY_{name.upper()}={raw!r}: expected a number") from None
    return raw


def apply_environment(settings: Settings, env: Mapping[str, str]) -> None:
    """Apply ``GREY_<SETTING>`` overrides, e.g. ``GREY_BROKER=kafka://127.0.0.1:19092``."""
    for key in _APP_KEYS:
        raw = env.get(f"GREY_{key.upper()}")
        if raw is not None:
            setattr(settings, key, _coerce(key, raw, getattr(settings, key)))
    for key in _CLIENT_KEYS:
        raw = env.get(f"GREY_{key.upper()}")
        if raw is not None:
            setattr(settings.client, key, _coerce(key, raw, getattr(settings.client, key)))
    settings.validate()


# -- the connector file (grey-kafka-connector.yaml) -----------------------

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

# section -> {file key: setting name}; None means "checked, then handled specially".
_SECTIONS: dict[str, dict[str, str | None]] = {
    "connector": {"name": None, "kafka": None, "consumer": None, "producer": None, "grey": None},
    "kafka": {"bootstrap_servers": None, "security": None},
    "security": {
        "protocol": "security_protocol",
        "mechanism": "sasl_mechanism",
        "username": "sasl_username",
        "password": "sasl_password",
        "ssl_cafile": "ssl_cafile",
    },
    "consumer": {
        "group_id": "group_id",
        "auto_offset_reset": "auto_offset_reset",
        "enable_auto_commit": None,
        "max_poll_records": "max_poll_records",
        "fetch_max_bytes": "fetch_max_bytes",
        "max_partition_fetch_bytes": "max_partition_fetch_bytes",
        "session_timeout_ms": "session_timeout_ms",
        "heartbeat_interval_ms": "heartbeat_interval_ms",
        "max_poll_interval_ms": "max_poll_interval_ms",
        "isolation_level": "isolation_level",
    },
    "producer": {
        "acks": "acks",
        "enable_idempotence": "enable_idempotence",
        "transactional_id_prefix": "transactional_id_prefix",
        "batch_size": "batch_size",
        "linger_ms": "linger_ms",
        "compression_type": "compression_type",
        "request_timeout_ms": "request_timeout_ms",
        "transaction_timeout_ms": "transaction_timeout_ms",
    },
    "grey": {
        "exactly_once": None,
        "processing_guarantee": "processing_guarantee",
        "offset_storage": None,
        "checkpoint_interval": "checkpoint_interval",
        "commit_interval": "commit_interval",
        "max_inflight_batches": "max_inflight_batches",
        "on_error": "on_error",
        "retry_count": "retry_count",
        "retry_backoff": "retry_backoff",
        "dead_letter_topic": "dead_letter_topic",
        "topic_replicas": "topic_replicas",
        "topic_partitions": "topic_partitions",
        "shutdown_timeout": "shutdown_timeout",
        "gc_tuning": "gc_tuning",
        "data_dir": "data_dir",
    },
}
_SECRET_KEYS = {"password"}


def _expand(value: Any, where: str, path: Path, env: Mapping[str, str]) -> Any:
    if not isinstance(value, str):
        return value

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"{path}: {where} refers to ${{{name}}}, but the environment variable {name} is not set")

    return _ENV_REF.sub(sub, value)


def _section(data: Any, name: str, path: Path) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: '{name}' must be a mapping of keys, got {type(data).__name__}")
    allowed = _SECTIONS[name]
    for key in data:
        if key not in allowed:
            raise ConfigError(
                f"{path}: unknown key '{key}' in section '{name}'" + closest(str(key), list(allowed))
                + f"; valid keys: {', '.join(allowed)}"
            )
    return data


def read_connector_file(
    path: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> tuple[str, dict[str, Any]]:
    """Parse the connector YAML into (app id, flat settings) for :func:`build_settings`."""
    env = os.environ if env is None else env
    file = Path(path)
    try:
        doc = yaml.safe_load(file.read_text())
    except FileNotFoundError:
        raise ConfigError(f"connector file {file} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or set(doc) != {"connector"}:
        keys = ", ".join(map(str, doc)) if isinstance(doc, dict) else type(doc).__name__
        raise ConfigError(f"{file}: expected one top-level key 'connector', found {keys}")
    connector = _section(doc["connector"], "connector", file)
    kafka = _section(connector.get("kafka"), "kafka", file)
    options: dict[str, Any] = {}

    servers = kafka.get("bootstrap_servers")
    if servers is not None:
        if isinstance(servers, str):
            servers = [servers]
        hosts = [_expand(s, "kafka.bootstrap_servers", file, env) for s in servers]
        options["broker"] = "kafka://" + ",".join(hosts)

    for section_name, data in (
        ("security", kafka.get("security")),
        ("consumer", connector.get("consumer")),
        ("producer", connector.get("producer")),
        ("grey", connector.get("grey")),
    ):
        section = _section(data, section_name, file)
        for key, value in section.items():
            where = f"{section_name}.{key}"
            if key in _SECRET_KEYS and value is not None and not (
                isinstance(value, str) and _ENV_REF.fullmatch(value)
            ):
                raise ConfigError(
                    f"{file}: {where} holds a literal secret; write {key}: ${{KAFKA_PASSWORD}} "
                    "and set the variable in the environment instead"
                )
            target = _SECTIONS[section_name][key]
            expanded = _expand(value, where, file, env)
            if target is not None:
                options[target] = expanded
            elif key == "enable_auto_commit" and expanded:
                raise ConfigError(f"{file}: consumer.enable_auto_commit must be false: grey commits offsets itself")
            elif key == "exactly_once":
                if expanded:
                    options["processing_guarantee"] = "exactly_once"
            elif key == "offset_storage" and expanded not in ("kafka", "grey-consensus"):
                raise ConfigError(f"{file}: grey.offset_storage={expanded!r}: offsets are stored in Kafka; use 'kafka'")
    name = connector.get("name")
    app_id = str(options.get("group_id") or name or file.stem)
    return app_id, options
