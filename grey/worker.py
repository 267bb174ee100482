"""``grey worker``: an App's runtime inside mode's Worker (signals, logging, exit codes)."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any, NoReturn

import mode

from grey.app import App
from grey.runtime.runtime import Runtime

log = logging.getLogger(__name__)


class AppService(mode.Service):
    """Lifecycle only: start the runtime, crash the worker if the runtime crashes, stop it on exit."""

    def __init__(self, app: App, broker: str | None = None, **kwargs: Any) -> None:
        self.app = app
        self.broker = broker
        self.runtime: Runtime | None = None
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        if self.app.runtime is not None:
            raise RuntimeError(f"app {self.app.id!r} is already running in this process")
        self.runtime = Runtime(self.app, broker=self.broker)
        self.app.runtime = self.runtime
        await self.runtime.start()
        if self.app.conf.gc_tuning:
            tune_gc()
        self.add_future(self._watch(self.runtime))

    async def _watch(self, runtime: Runtime) -> None:
        assert runtime.crashed is not None
        try:
            await runtime.crashed
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            await self.crash(exc)

    async def on_stop(self) -> None:
        if self.runtime is not None:
            try:
                await self.runtime.stop()
            finally:
                self.app.runtime = None


def tune_gc(young_threshold: int = 10_000) -> None:
    """Make the cycle collector cheap for a stream processor's allocation pattern.

    A worker allocates and frees a few objects per event, nearly all freed by
    reference counting; the default (collect the young generation every 700
    allocations, and now and then scan every object alive) then costs a fifth
    of the CPU. Objects alive after startup are frozen out of the scans, and
    the young generation is collected every ``young_threshold`` allocations.
    Set ``gc_tuning=False`` to keep Python's defaults.
    """
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, young_threshold), middle, old)


def run_worker(app: App, *, loglevel: str = "info", broker: str | None = None) -> NoReturn:
    """Run ``app`` until SIGTERM/SIGINT (clean stop, exit 0) or a crash (exit 1)."""
    service = AppService(app, broker=broker)
    worker = mode.Worker(service, loglevel=loglevel, redirect_stdouts=False, override_logging=True)
    worker.execute_from_commandline()
