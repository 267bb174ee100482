"""The Redis sink: per-key values (``realtime:{user_id}``) written with their marker in one Lua script.

The script sets every staged key (with ``expire`` seconds) and the group's
marker only if the stored marker is older than the batch's, so a batch replayed
after a crash, or an older batch arriving late, cannot apply twice or overwrite
a newer one. All keys of a flush go to one Redis server (not a cluster: the
script touches keys in many hash slots).
"""

from __future__ import annotations

import string
from typing import Any

import msgspec

from grey.sinks.staged import Delivery, SinkMarker, StagedSink

# KEYS[1] is the marker, KEYS[2..] the data keys; ARGV[1] the marker offset, ARGV[2] the expiry
# (0: none), ARGV[3..] the values for KEYS[2..].
_APPLY = """
local stored = redis.call('GET', KEYS[1])
if stored and tonumber(stored) >= tonumber(ARGV[1]) then
  return 0
end
local ttl = tonumber(ARGV[2])
for i = 2, #KEYS do
  if ttl > 0 then
    redis.call('SET', KEYS[i], ARGV[i + 1], 'EX', ttl)
  else
    redis.call('SET', KEYS[i], ARGV[i + 1])
  end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""


class RedisSink(StagedSink):
    """Upserts JSON values under keys made from the value's fields; exactly-once with markers."""

    delivery: Delivery = "exactly_once"

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        key_pattern: str = "realtime:{user_id}",
        expire: int = 3600,
        marker_prefix: str = "grey:marker:",
    ) -> None:
        fields = [name for _, name, _, _ in string.Formatter().parse(key_pattern) if name]
        if not fields:
            raise ValueError(f"key_pattern {key_pattern!r} names no field, e.g. 'realtime:{{user_id}}'")
        self.url = url
        self.key_pattern = key_pattern
        self.fields = fields
        self.expire = expire
        self.marker_prefix = marker_prefix
        self.app_id = ""
        self.name = f"redis:{key_pattern}"
        self._staged: dict[str, dict[str, bytes]] = {}
        self._client: Any = None
        self._apply: Any = None
        self._encode = msgspec.json.Encoder().encode

    def __repr__(self) -> str:
        return f"<RedisSink {self.url} {self.key_pattern}>"

    async def start(self, app_id: str = "") -> None:
        self.app_id = app_id
        import redis.asyncio as aioredis  # the 'redis' extra

        self._client = aioredis.from_url(self.url)
        await self._client.ping()
        self._apply = self._client.register_script(_APPLY)

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def key_for(self, value: Any) -> str:
        data = value if isinstance(value, dict) else msgspec.structs.asdict(value)
        try:
            return self.key_pattern.format(**{name: data[name] for name in self.fields})
        except KeyError as exc:
            raise KeyError(f"Redis sink key_pattern {self.key_pattern!r} needs field {exc.args[0]!r}; "
                           f"the value has {sorted(data)}") from None

    def stage(self, group: str, value: Any) -> None:
        self._staged.setdefault(group, {})[self.key_for(value)] = self._encode(value)

    def discard(self, group: str) -> None:
        self._staged.pop(group, None)

    def staged_groups(self) -> set[str]:
        return set(self._staged)

    def marker_key(self, group: str) -> str:
        """``grey:marker:{app_id}:{group}`` (without the app id when started outside a worker)."""
        return f"{self.marker_prefix}{self.app_id}:{group}" if self.app_id else f"{self.marker_prefix}{group}"

    async def flush(self, marker: SinkMarker) -> bool:
        staged = self._staged.pop(marker.group, {})
        if self._apply is None:
            raise RuntimeError("RedisSink.flush() before start()")
        keys = [self.marker_key(marker.group), *staged]
        args: list[Any] = [marker.offset, self.expire, *staged.values()]
        applied = await self._apply(keys=keys, args=args)
        return bool(applied)

    async def marker(self, group: str) -> int | None:
        """The last offset applied for a group, or None."""
        raw = await self._client.get(self.marker_key(group))
        return None if raw is None else int(raw)
