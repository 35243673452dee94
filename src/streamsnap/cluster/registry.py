"""The stream registry of a cluster, on Redis: one namespace of stream names for every node.

Keys (all under one hash tag, so that the scripts below run on one Redis Cluster slot):

- `<prefix>streams`: a sorted set of live names, scored by the time their record expires;
- `<prefix>stream:<name>`: a hash (`lease`, `record` as JSON, `started`, `node`, `figures` as
  JSON) that expires `ttl` after its node last refreshed it;
- `<prefix>node:<id>`: the node's own record (its id and the URL other nodes reach it at),
  with the same time to live.

A claim is one Lua script: expired names are dropped, the name is checked, the count is
checked against `max_streams`, the record is written. A node refreshes the records of its own
streams every third of the TTL in one script call; the streams of a node that died vanish
within the TTL. The same call writes what the node measures of each stream (`figures` in the
hash: fps, frames received), so that every node lists a stream with the same figures, those of
its holder's last heartbeat, the holder included. The registry also keeps the node's own records
in memory, so that local publishing and pictures go on while Redis is away; when it is back, the
refresh writes them again. Conflicts (the same name claimed on two nodes while Redis was away) are
resolved by one rule: the stream that started first keeps the name (ties: the smaller node id), and
the other node is told through `on_lost`, which ends its stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from streamsnap.reasons import StreamEnd
from streamsnap.streams import (
    ClaimRefused,
    LocalStreamRegistry,
    RegistryUnavailable,
    StreamFigures,
    StreamRecord,
    StreamRegistry,
)

logger = logging.getLogger(__name__)

_CLAIM = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('EXISTS', KEYS[2]) == 1 then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[6]) then return 2 end
redis.call('HSET', KEYS[2], 'lease', ARGV[2], 'record', ARGV[3], 'started', ARGV[4], 'node', ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[7])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[7]), ARGV[1])
return 0
"""
"KEYS: streams, stream key. ARGV: name, lease, record, started, node, max_streams, ttl_ms. 0 ok, 1 taken, 2 full."

_REFRESH = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local ttl = tonumber(ARGV[1])
local lost = {}
for i = 2, #KEYS do
  local base = 2 + (i - 2) * 7
  local name, lease, record, started, node = ARGV[base], ARGV[base + 1], ARGV[base + 2], ARGV[base + 3], ARGV[base + 4]
  local stale = ARGV[base + 5] == '1'
  local figures = ARGV[base + 6]
  local held = redis.call('HMGET', KEYS[i], 'lease', 'started', 'node')
  local keep = true
  if held[1] and held[1] ~= lease then
    local theirs, ours = tonumber(held[2]), tonumber(started)
    if theirs < ours or (theirs == ours and held[3] < node) then keep = false end
  end
  if keep then
    if held[1] ~= lease or stale then  -- missing (expired, Redis restarted), taken over, or not updated
      redis.call('HSET', KEYS[i], 'lease', lease, 'record', record, 'started', started, 'node', node)
    end
    if figures ~= '' then redis.call('HSET', KEYS[i], 'figures', figures) end
    redis.call('PEXPIRE', KEYS[i], ttl)
    redis.call('ZADD', KEYS[1], now + ttl, name)
  else
    table.insert(lost, name)
  end
end
return lost
"""
"""KEYS: streams, then one stream key per record. ARGV: ttl_ms, then name, lease, record, started, node,
stale ('1' when an update did not reach Redis) and figures (JSON, '' for none) per record. A record is
written whole only when needed; its figures at every refresh."""

_RELEASE = """
if redis.call('HGET', KEYS[2], 'lease') == ARGV[2] then
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
return 0
"""

_UPDATE = """
if redis.call('HGET', KEYS[1], 'lease') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'record', ARGV[2])
  return 1
end
return 0
"""

_ALL = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local names = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
local records = {}
for _, name in ipairs(names) do
  local held = redis.call('HMGET', ARGV[1] .. name, 'record', 'figures')
  if held[1] then
    table.insert(records, held[1])
    table.insert(records, held[2] or '')
  end
end
return records
"""
"""All live records, each followed by its figures ('' for none). KEYS: streams. ARGV: the stream key prefix
(same hash tag, so the same slot)."""

_COUNT = """
local t = redis.call('TIME')
return redis.call('ZCOUNT', KEYS[1], t[1] * 1000 + math.floor(t[2] / 1000), '+inf')
"""


class NodeInfo(msgspec.Struct, frozen=True):
    """A node as other nodes find it."""

    id: str
    url: str
    "Where other nodes reach its cluster endpoints."
    started_at: float


@dataclass
class ClusterStatus:
    """What the registry knows of its link to Redis (for /readyz and /metrics)."""

    redis_up: bool = False
    last_refresh: float | None = None
    "Monotonic time of the last successful refresh."
    conflicts: int = 0
    "Streams this node lost to another node's earlier claim."


_ENCODER = msgspec.json.Encoder()
_RECORD = msgspec.json.Decoder(StreamRecord)
_FIGURES = msgspec.json.Decoder(StreamFigures)
_NODE = msgspec.json.Decoder(NodeInfo)


LostStream = Callable[[StreamRecord], Awaitable[None]]
"What a node does with a stream whose name another node's earlier claim kept (it ends it)."

Measure = Callable[[StreamRecord], StreamFigures | None]
"What the node measures of one of its streams now (None: nothing to tell), written with each heartbeat."


class RedisStreamRegistry(StreamRegistry):
    """A `StreamRegistry` shared by every node of a cluster, through Redis."""

    def __init__(self, client: Any, node: NodeInfo, *, ttl: float = 5.0, prefix: str = "streamsnap",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.node = node
        self.ttl = ttl
        self.clock = clock
        tag = "{" + prefix + "}"
        self._streams_key = f"{tag}:streams"
        self._stream_prefix = f"{tag}:stream:"
        self._node_prefix = f"{tag}:node:"
        self._own = LocalStreamRegistry()
        self.status = ClusterStatus()
        self._claim = client.register_script(_CLAIM)
        self._refresh_script = client.register_script(_REFRESH)
        self._release = client.register_script(_RELEASE)
        self._update = client.register_script(_UPDATE)
        self._all = client.register_script(_ALL)
        self._count = client.register_script(_COUNT)
        self._nodes: dict[str, tuple[float, NodeInfo | None]] = {}
        self._stale: set[str] = set()
        self._figures: dict[str, tuple[str, StreamFigures]] = {}
        "The figures of each own stream (by name: lease, figures) as the last heartbeat wrote them."

    @classmethod
    async def connect(cls, url: str, node: NodeInfo, *, ttl: float = 5.0, prefix: str = "streamsnap",
                      timeout: float = 1.0) -> RedisStreamRegistry:
        """A registry on the Redis at `url` (a single Redis or a Redis Cluster, told apart by asking it)."""
        options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        client: Any = redis.from_url(url, **options)
        try:
            info = await client.info("cluster")
            if info.get("cluster_enabled"):
                await client.aclose()
                client = RedisCluster.from_url(url, **options)
                await client.initialize()
        except (RedisError, OSError) as exc:
            logger.warning("redis at %s not reachable yet (%s): starting degraded", _safe(url), exc)
        return cls(client, node, ttl=ttl, prefix=prefix)

    async def close(self) -> None:
        """Close the connection (records expire by their TTL)."""
        with contextlib.suppress(RedisError, OSError):
            await self.client.aclose()

    # The StreamRegistry interface.

    async def claim(self, record: StreamRecord, *, max_streams: int) -> StreamRecord:
        # The node's own table first: it refuses a name this node holds, even without Redis.
        claimed = await self._own.claim(record, max_streams=max_streams)
        try:
            answer = await self._claim(keys=[self._streams_key, self._stream_key(record.name)],
                                       args=[record.name, claimed.lease, _ENCODER.encode(claimed),
                                             _started(claimed), self.node.id, max_streams, self._ttl_ms])
        except (RedisError, OSError) as exc:
            self._down(exc)
            logger.info("stream %s claimed on this node only (redis away)", record.name)
            return claimed
        self._up()
        if answer != 0:
            await self._own.release(claimed.name, claimed.lease)
            raise ClaimRefused(StreamEnd.NAME_IN_USE if answer == 1 else StreamEnd.TOO_MANY_STREAMS)
        return claimed

    async def update(self, record: StreamRecord) -> bool:
        if not await self._own.update(record):
            return False
        try:
            await self._update(keys=[self._stream_key(record.name)], args=[record.lease, _ENCODER.encode(record)])
        except (RedisError, OSError) as exc:
            self._down(exc)
            self._stale.add(record.name)  # the next refresh writes it whole
        return True

    async def release(self, name: str, lease: str) -> bool:
        released = await self._own.release(name, lease)
        try:
            await self._release(keys=[self._streams_key, self._stream_key(name)], args=[name, lease])
        except (RedisError, OSError) as exc:
            self._down(exc)  # the record expires with its TTL
        return released

    async def lookup(self, name: str) -> StreamRecord | None:
        own = await self._own.lookup(name)
        if own is not None:
            return own
        try:
            raw = await self.client.hget(self._stream_key(name), "record")
        except (RedisError, OSError) as exc:
            self._down(exc)
            raise RegistryUnavailable(str(exc)) from None
        self._up()
        return _RECORD.decode(raw) if raw is not None else None

    async def all(self) -> list[StreamRecord]:
        own = await self._own.all()
        try:
            raws = await self._all(keys=[self._streams_key], args=[self._stream_prefix])
        except (RedisError, OSError) as exc:
            self._down(exc)
            return own  # degraded: what this node holds
        self._up()
        records: dict[str, StreamRecord] = {}
        for raw, raw_figures in zip(raws[::2], raws[1::2], strict=True):
            record = _RECORD.decode(raw)
            if raw_figures:
                record = msgspec.structs.replace(record, figures=_FIGURES.decode(raw_figures))
            records[record.name] = record
        records.update({record.name: self._with_figures(record) for record in own})
        return sorted(records.values(), key=lambda record: record.started_at)

    def _with_figures(self, record: StreamRecord) -> StreamRecord:
        """An own record with the figures its last heartbeat wrote (what every other node lists too)."""
        written = self._figures.get(record.name)
        if written is None or written[0] != record.lease:
            return record
        return msgspec.structs.replace(record, figures=written[1])

    async def count(self) -> int:
        try:
            counted = int(await self._count(keys=[self._streams_key]))
        except (RedisError, OSError) as exc:
            self._down(exc)
            return await self._own.count()
        self._up()
        return counted

    async def local(self) -> list[StreamRecord]:
        return await self._own.all()

    # Nodes.

    async def node_info(self, node_id: str) -> NodeInfo | None:
        """The node `node_id` as it last announced itself (cached for a second)."""
        cached = self._nodes.get(node_id)
        if cached is not None and self.clock() - cached[0] < 1.0:
            return cached[1]
        try:
            raw = await self.client.get(self._node_prefix + node_id)
        except (RedisError, OSError) as exc:
            self._down(exc)
            raise RegistryUnavailable(str(exc)) from None
        info = _NODE.decode(raw) if raw is not None else None
        self._nodes[node_id] = (self.clock(), info)
        return info

    # Keeping the records alive.

    async def refresh(self, on_lost: LostStream | None = None, measure: Measure | None = None) -> None:
        """Announce the node and refresh (or write again) the records of its streams, with what `measure`
        tells of each; raises on Redis errors.

        `on_lost` is called with each stream of this node whose name another node's earlier claim kept."""
        own = await self._own.all()
        await self.client.set(self._node_prefix + self.node.id, _ENCODER.encode(self.node), px=self._ttl_ms)
        lost: list[bytes] = []
        figures: dict[str, tuple[str, StreamFigures]] = {}
        if own:
            keys = [self._streams_key] + [self._stream_key(record.name) for record in own]
            args: list[Any] = [self._ttl_ms]
            stale = set(self._stale)
            for record in own:
                measured = measure(record) if measure is not None else None
                if measured is not None:
                    figures[record.name] = (record.lease, measured)
                args += [record.name, record.lease, _ENCODER.encode(record), _started(record), self.node.id,
                         "1" if record.name in stale else "0", _ENCODER.encode(measured) if measured else ""]
            lost = await self._refresh_script(keys=keys, args=args)
            self._stale -= stale
        self._figures = figures  # what Redis now holds: the node lists its own streams with the same
        self._up()
        self.status.last_refresh = self.clock()
        for raw_name in lost:
            name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
            loser = await self._own.lookup(name)
            if loser is None:
                continue
            self.status.conflicts += 1
            logger.warning("stream %s: an earlier claim on another node keeps the name; ending it here", name,
                           extra={"stream": name})
            await self._own.release(loser.name, loser.lease)
            if on_lost is not None:
                await on_lost(loser)

    async def run(self, on_lost: LostStream | None = None, measure: Measure | None = None) -> None:
        """Refresh every third of the TTL until cancelled; a failed refresh is retried at the next tick."""
        interval = self.ttl / 3
        while True:
            try:
                await asyncio.wait_for(self.refresh(on_lost, measure), timeout=interval)
            except (RedisError, OSError, TimeoutError) as exc:
                self._down(exc)
            await asyncio.sleep(interval)

    @property
    def _ttl_ms(self) -> int:
        return int(self.ttl * 1000)

    def _stream_key(self, name: str) -> str:
        return self._stream_prefix + name

    def _down(self, exc: BaseException) -> None:
        if self.status.redis_up:
            logger.warning("redis unreachable: %s (local streams go on; other nodes' are unknown)",
                           exc or type(exc).__name__)
        self.status.redis_up = False

    def _up(self) -> None:
        if not self.status.redis_up:
            logger.info("redis reachable")
        self.status.redis_up = True


def _started(record: StreamRecord) -> str:
    return repr(record.started_at)


def _safe(url: str) -> str:
    """`url` without a password."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest
