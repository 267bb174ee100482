"""The case study's aggregate stage: 1-minute tumbling windows per [user_id, event_type].

count(), sum(amount) and avg(latency), 5 minutes of late-arrival tolerance,
final aggregates to the topic ``click-window-totals`` when a window closes.

    grey worker -A windowed_clicks           # from this folder, with Kafka on 127.0.0.1:9092
    grey send -A windowed_clicks clicks --key u1 \\
        --value '{"user_id": "u1", "event_type": "click", "amount": 0, "latency": 12.5, "timestamp": 1700000000}'
"""

import grey
from grey.tables import Avg, Count, Sum

app = grey.App("windowed-clicks", broker="kafka://127.0.0.1:9092")


class Click(grey.Record):
    user_id: str
    event_type: str
    amount: float
    latency: float
    timestamp: float  # event time, seconds since the epoch


clicks = app.topic("clicks", key_type=str, value_type=Click, partitions=8)
window_totals = app.topic("click-window-totals", key_type=list[str], partitions=8)

totals = app.Table("click-totals", key_type=list[str]).tumbling(
    60,
    grace=300,
    expires=3600,
    aggregations={"count": Count(), "amount": Sum("amount"), "latency": Avg("latency")},
    time="timestamp",
    on_close=window_totals,
)


@app.agent(clicks)
async def aggregate(stream: grey.Stream) -> None:
    async for batch in stream.batches(max=1000):
        for click in batch:
            totals.update([click.user_id, click.event_type], click)
