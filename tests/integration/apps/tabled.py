"""A worker app with a table for the integration tests: which event ids each key has seen.

The value is a set (kept as a sorted list), so a repeated event (at-least-once)
does not change it, while a lost table update would: the final table must hold
exactly every id. APP_ID, SRC and GREY_DATA_DIR come from the environment.
"""

import asyncio
import os

import grey

app = grey.App(os.environ["APP_ID"], commit_interval=0.5, checkpoint_interval=200)
source = app.topic(os.environ["SRC"], key_type=str, partitions=8)
seen = app.Table("seen", default=list, key_type=str, value_type=list[int])
DELAY = float(os.environ.get("DELAY", "0"))


@app.agent(source)
async def remember(stream: grey.Stream) -> None:
    async for batch in stream.batches(max=50):
        for event in batch.events:
            ids = seen[event.key]
            if event.value["id"] not in ids:
                seen[event.key] = sorted([*ids, event.value["id"]])
        if DELAY:
            await asyncio.sleep(DELAY)
