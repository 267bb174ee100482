"""A worker app for the integration tests: forwards each event's id to an output topic.

Configured by environment so each test gets its own topics and group:
APP_ID, SRC, OUT, MODE (batch|event), DELAY (seconds of pretend work per batch/event).
"""

import asyncio
import os

import grey

app = grey.App(os.environ["APP_ID"], commit_interval=1.0, checkpoint_interval=200)
source = app.topic(os.environ["SRC"], key_type=str, partitions=8)
out = app.topic(os.environ["OUT"], key_type=str, partitions=8)
MODE = os.environ.get("MODE", "batch")
DELAY = float(os.environ.get("DELAY", "0"))
PID = os.getpid()


@app.agent(source)
async def forward(stream: grey.Stream) -> None:
    if MODE == "batch":
        async for batch in stream.batches(max=100):
            for event in batch.events:
                await out.send({"id": event.value["id"], "pid": PID, "p": event.partition}, key=event.key)
            if DELAY:
                await asyncio.sleep(DELAY)
    else:
        async for value in stream:
            event = stream.current_event
            assert event is not None
            await out.send({"id": value["id"], "pid": PID, "p": event.partition}, key=event.key)
            if DELAY:
                await asyncio.sleep(DELAY)
