"""The ``grey`` command: worker, topics, send."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from grey.app import App
from grey.config import ConfigError
from grey.transport import TopicSpec, open_transport


class UsageError(Exception):
    """A command-line mistake; printed without a traceback."""


def load_app(spec: str) -> App:
    """``module`` or ``module:attribute`` -> the App it names."""
    module_name, _, attr = spec.partition(":")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name or module_name.startswith(f"{exc.name}."):
            raise UsageError(
                f"-A {spec}: no module named {module_name!r} (run from the folder that holds it)"
            ) from None
        raise
    if attr:
        app = getattr(module, attr, None)
        if not isinstance(app, App):
            raise UsageError(f"-A {spec}: {module_name}.{attr} is not a grey.App")
        return app
    apps = [v for v in vars(module).values() if isinstance(v, App)]
    if len(apps) != 1:
        raise UsageError(
            f"-A {spec}: module {module_name} has {len(apps)} grey.App objects; name one as {module_name}:NAME"
        )
    return apps[0]


def _cmd_worker(args: argparse.Namespace) -> None:
    from grey.worker import run_worker

    app = load_app(args.app)
    run_worker(app, loglevel=args.loglevel, broker=args.broker)


async def _topics_create(app: App, broker: str | None) -> list[str]:
    transport = open_transport(broker or app.conf.broker)
    admin = transport.admin(app.conf.client)
    await admin.start()
    try:
        return await admin.create_topics([t.spec() for t in app.topics.values()])
    finally:
        await admin.stop()


async def _topics_list(app: App, broker: str | None) -> dict[str, int]:
    transport = open_transport(broker or app.conf.broker)
    admin = transport.admin(app.conf.client)
    await admin.start()
    try:
        return await admin.list_topics()
    finally:
        await admin.stop()


def _cmd_topics(args: argparse.Namespace) -> None:
    app = load_app(args.app)
    if args.action == "create":
        created = asyncio.run(_topics_create(app, args.broker))
        declared: list[TopicSpec] = [t.spec() for t in app.topics.values()]
        for spec in declared:
            state = "created" if spec.name in created else "exists"
            print(f"{spec.name}\tpartitions={spec.partitions}\t{state}")
    else:
        for name, partitions in sorted(asyncio.run(_topics_list(app, args.broker)).items()):
            print(f"{name}\tpartitions={partitions}")


async def _send(app: App, topic_name: str, key: str | None, value: Any, broker: str | None) -> str:
    topic = app.topics.get(topic_name) or app.topic(topic_name)
    async with app.running(consume=False, broker=broker, run_timers=False):
        metadata = await topic.send_and_wait(value, key=key)
    return f"{metadata.topic}[{metadata.partition}]@{metadata.offset}"


def _cmd_send(args: argparse.Namespace) -> None:
    app = load_app(args.app)
    try:
        value = json.loads(args.value) if args.value is not None else None
    except json.JSONDecodeError as exc:
        raise UsageError(f"--value is not JSON: {exc} (quote strings: --value '\"text\"')") from None
    print(asyncio.run(_send(app, args.topic, args.key, value, args.broker)))


def table_report(app: App, name: str | None, data_dir: str | None, limit: int | None) -> str:
    """The contents of the app's local table stores (read-only: a running worker may hold them)."""
    from pathlib import Path

    from grey.tables.display import render
    from grey.tables.stores import read_store
    from grey.tables.windows import WindowedTable

    tables = [t for t in app.tables if name is None or t.name == name]
    if not tables:
        known = ", ".join(t.name for t in app.tables) or "none"
        raise UsageError(f"app {app.id!r} has no table {name!r} (tables: {known})")
    if data_dir is not None:
        app.conf.data_dir = data_dir
    reports = []
    for table in tables:
        root = Path(app.conf.data_dir) / app.id / "tables" / table.name
        parts = sorted((p for p in root.glob("*") if p.name.isdigit()), key=lambda p: int(p.name))
        if not parts:
            reports.append(f"table {table.name}: no local store under {root}")
            continue
        view = table.listener if isinstance(table.listener, WindowedTable) else None
        rows: list[list[object]] = []
        offsets = []
        for part in parts:
            items, offset = read_store(part)
            offsets.append(f"{part.name}@{offset}")
            for key_bytes, raw in items:
                value = table.value_codec.loads(raw)
                if view is not None:
                    window = view.window_of(key_bytes)
                    rows.append([int(part.name), window[0], window[1].start, window[1].end,
                                 *view.results(value).values()])
                else:
                    rows.append([int(part.name), table.key_codec.loads(key_bytes), value])
        headers = (["partition", "key", "start", "end", *view.names] if view is not None
                   else ["partition", "key", "value"])
        title = f"table {table.name} ({root}; changelog offsets {', '.join(offsets)})"
        reports.append(render(title, headers, rows, limit))
    return "\n\n".join(reports)


def _cmd_tables(args: argparse.Namespace) -> None:
    app = load_app(args.app)
    print(table_report(app, args.table, args.data_dir, None if args.limit == 0 else args.limit))


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="grey", description="Stream processing over Apache Kafka.")
    sub = root.add_subparsers(dest="command", required=True)

    def with_app(p: argparse.ArgumentParser) -> None:
        p.add_argument("-A", "--app", required=True, help="module or module:attribute holding the grey.App")
        p.add_argument("--broker", help="override the broker URL, e.g. kafka://127.0.0.1:9092")

    worker = sub.add_parser("worker", help="run the app's agents, timers and tasks")
    with_app(worker)
    worker.add_argument("-l", "--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    worker.set_defaults(func=_cmd_worker)

    topics = sub.add_parser("topics", help="create or list topics")
    topics.add_argument("action", choices=["create", "list"])
    with_app(topics)
    topics.set_defaults(func=_cmd_topics)

    tables = sub.add_parser("tables", help="print the app's tables from their local stores")
    tables.add_argument("-A", "--app", required=True, help="module or module:attribute holding the grey.App")
    tables.add_argument("--table", help="only this table")
    tables.add_argument("--data-dir", help="the stores' folder (default: the app's data_dir)")
    tables.add_argument("--limit", type=int, default=100, help="rows per table (0: all)")
    tables.set_defaults(func=_cmd_tables)

    send = sub.add_parser("send", help="send one record to a topic")
    with_app(send)
    send.add_argument("topic")
    send.add_argument("--key")
    send.add_argument("--value", help="the value as JSON")
    send.set_defaults(func=_cmd_send)
    return root


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.command != "worker":
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except (UsageError, ConfigError) as exc:
        print(f"grey: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
