"""A worker app whose agent returns early: the worker must exit non-zero, not hang."""

import os

import grey

app = grey.App(os.environ["APP_ID"])
source = app.topic(os.environ["SRC"], partitions=1)


@app.agent(source)
async def quit_early(stream: grey.Stream) -> None:
    async for _ in stream:
        return
