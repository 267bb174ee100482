"""Tables for people: as_ansitable() and `grey tables` on the stores a run left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from grey.cli import main
from grey.transport.memory import MemoryBroker
from tests.unit.tables import cli_app
from tests.waiting import wait_for


async def test_as_ansitable_and_grey_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli_app.app.conf.data_dir = str(tmp_path)
    try:
        async with cli_app.app.running() as runtime:
            for i, (key, amount, at) in enumerate([("ann", 2.5, 10), ("bob", 1.0, 20), ("ann", 4.0, 70)]):
                await cli_app.orders.send({"amount": amount, "at": at, "i": i}, key=key)
            await wait_for(lambda: runtime.processed == 3)
            text = cli_app.totals.as_ansitable()
            assert "| ann | 6.5   |" in text and "| bob | 1     |" in text
            windows = cli_app.per_minute.table.as_ansitable()
            assert "| ann | 0     | 60  | 1 | 2.5    |" in windows
    finally:
        MemoryBroker.forget("cli-tables")

    main(["tables", "-A", "tests.unit.tables.cli_app:app", "--data-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "table totals" in out and "table per-minute" in out
    assert "| 0         | ann | 6.5   |" in out
    assert "| partition | key | start | end | n | amount |" in out
    assert "| 0         | ann | 60    | 120 | 1 | 4      |" in out
    with pytest.raises(SystemExit):
        main(["tables", "-A", "tests.unit.tables.cli_app:app", "--table", "nope"])
    assert "has no table 'nope'" in capsys.readouterr().err
