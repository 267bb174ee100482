"""SASL_SSL / SCRAM-SHA-512 against the local broker's secure listener, configured from the connector file."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

import grey
from grey.transport import BrokerConnectionError, open_transport
from tests.integration.workers import ROOT
from tests.transport_contract import noop

SASL_PORT = int(os.environ.get("GREY_KAFKA_SASL_PORT", "9094"))
CA = ROOT / ".run" / "kafka" / "tls" / "ca.pem"
PASSWORD_FILE = ROOT / ".run" / "kafka" / "sasl.password"

CONNECTOR = """\
connector:
  name: secure
  kafka:
    bootstrap_servers: ["127.0.0.1:{port}"]
    security:
      protocol: SASL_SSL
      mechanism: SCRAM-SHA-512
      username: grey
      password: ${{KAFKA_PASSWORD}}
      ssl_cafile: {ca}
  consumer:
    group_id: {group}
"""


@pytest.fixture
def sasl_password() -> str:
    password = os.environ.get("GREY_KAFKA_SASL_PASSWORD") or (
        PASSWORD_FILE.read_text() if PASSWORD_FILE.exists() else None)
    if not password or not CA.exists():
        pytest.fail("no SASL_SSL listener: start Kafka with `GREY_KAFKA_SASL=1 scripts/services up kafka` "
                    "(make test does)")
    return password


def connector(tmp_path: Path, group: str) -> Path:
    path = tmp_path / "grey-kafka-connector.yaml"
    path.write_text(CONNECTOR.format(port=SASL_PORT, ca=CA, group=group))
    return path


async def test_round_trip_over_sasl_ssl(tmp_path: Path, unique: str, sasl_password: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_PASSWORD", sasl_password)
    monkeypatch.delenv("GREY_BROKER", raising=False)
    app = grey.App.from_config(connector(tmp_path, unique))
    topic = app.topic(f"{unique}-secure", partitions=1)
    for attempt in range(20):  # a SCRAM user added to a running broker takes a moment to be known
        try:
            async with app.running(consume=False):
                metadata = await topic.send_and_wait({"secret": "sauce"}, key="k")
            break
        except BrokerConnectionError:
            if attempt == 19:
                raise
            await asyncio.sleep(0.5)
    reader = open_transport(app.conf.broker).consumer(app.conf.client)
    reader.subscribe([topic.name], noop, noop)
    await reader.start()
    try:
        got = []
        for _ in range(40):
            for messages in (await reader.getmany(timeout_ms=500, max_records=None)).values():
                got.extend(messages)
            if got:
                break
    finally:
        await reader.stop()
    assert metadata.offset == 0
    assert [m.value for m in got] == [b'{"secret":"sauce"}']


async def test_wrong_password_is_refused(tmp_path: Path, unique: str, sasl_password: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_PASSWORD", sasl_password + "-wrong")
    monkeypatch.delenv("GREY_BROKER", raising=False)
    app = grey.App.from_config(connector(tmp_path, unique))
    app.topic(f"{unique}-secure", partitions=1)
    with pytest.raises(BrokerConnectionError, match="the credentials"):
        async with app.running(consume=False):
            pass
