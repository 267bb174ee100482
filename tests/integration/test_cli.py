"""The grey command against the real broker: topics, send, and mistakes it explains."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from grey.transport import TopicError, TopicSpec, open_transport
from tests.integration.workers import ROOT, read_all, settings

APP = "tests.integration.apps.forwarder:app"


def grey_cmd(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "grey", *args], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)


def app_env(unique: str, kafka_url: str) -> dict[str, str]:
    return {"APP_ID": unique, "SRC": f"{unique}-in", "OUT": f"{unique}-out", "GREY_BROKER": kafka_url}


async def test_topics_create_list_and_send(kafka_url: str, unique: str) -> None:
    env = app_env(unique, kafka_url)
    created = grey_cmd("topics", "create", "-A", APP, env=env)
    assert created.returncode == 0, created.stderr
    assert f"{unique}-in\tpartitions=8\tcreated" in created.stdout
    again = grey_cmd("topics", "create", "-A", APP, env=env)
    assert f"{unique}-in\tpartitions=8\texists" in again.stdout

    listed = grey_cmd("topics", "list", "-A", APP, env=env)
    assert f"{unique}-out\tpartitions=8" in listed.stdout

    sent = grey_cmd("send", "-A", APP, f"{unique}-in", "--key", "ada", "--value", '{"id": 42}', env=env)
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith(f"{unique}-in[")
    got = await read_all(kafka_url, f"{unique}-in", f"{unique}-reader", until=1, timeout=30)
    assert got == [{"id": 42}]


def test_cli_errors_name_the_fix(kafka_url: str, unique: str) -> None:
    env = app_env(unique, kafka_url)
    missing = grey_cmd("worker", "-A", "no_such_module_here", env=env)
    assert missing.returncode == 2
    assert "no module named 'no_such_module_here'" in missing.stderr
    not_json = grey_cmd("send", "-A", APP, f"{unique}-in", "--value", "{oops", env=env)
    assert not_json.returncode == 2 and "--value is not JSON" in not_json.stderr
    typo = grey_cmd("topics", "list", "-A", APP, env={**env, "GREY_PROCESSING_GUARANTEE": "exactly_one"})
    assert typo.returncode == 2 and "did you mean 'exactly_once'" in typo.stderr


async def test_topic_creation_errors_are_reported_per_topic(kafka_url: str, unique: str) -> None:
    admin = open_transport(kafka_url).admin(settings("admin"))
    await admin.start()
    try:
        with pytest.raises(TopicError, match=rf"{unique}-rf3: Kafka error 38"):  # INVALID_REPLICATION_FACTOR
            await admin.create_topics([TopicSpec(f"{unique}-ok", 1), TopicSpec(f"{unique}-rf3", 1, replicas=3)])
        assert f"{unique}-ok" in await admin.list_topics()
    finally:
        await admin.stop()
