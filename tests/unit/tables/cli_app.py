"""An app for the `grey tables` test: a keyed table and a windowed one, on the memory broker."""

import grey
from grey.tables import Count, Sum

app = grey.App("cli-tables", broker="memory://cli-tables", commit_interval=0.1)
orders = app.topic("orders", key_type=str, value_type=dict, partitions=2)
totals = app.Table("totals", default=float, key_type=str, value_type=float)
per_minute = app.Table("per-minute", key_type=str).tumbling(
    60, aggregations={"n": Count(), "amount": Sum("amount")}, time="at", idle_close=None
)


@app.agent(orders)
async def add(stream: grey.Stream) -> None:
    async for order in stream:
        event = stream.current_event
        assert event is not None
        totals[event.key] += order["amount"]
        per_minute.update(event.key, order)
