"""Process helpers that the tests and the benchmarks (bench/) share: one copy of each.

A free loopback port, waiting until a process listens, stopping it; a real redis-server (or
Redis Cluster); a `streamsnap serve` node; the RTSP test camera. Plain functions and classes,
no pytest: the fixtures built on them stay in the conftest files. tests.harness.peer (our
own aiortc peer as a hostile client) is imported by its own name, as it loads aiortc.
"""

from tests.harness.node import Node, serve_command, start_node
from tests.harness.processes import (
    LISTEN_TIMEOUT,
    LOOPBACK,
    Processes,
    closed_by_peer,
    free_port,
    read_line,
    stop,
    wait_listening,
)
from tests.harness.redis import Redis, cluster_port, redis_available, start_redis_cluster
from tests.harness.rtsp import RtspCamera, gstreamer_missing

__all__ = [
    "LISTEN_TIMEOUT",
    "LOOPBACK",
    "Node",
    "Processes",
    "Redis",
    "RtspCamera",
    "closed_by_peer",
    "cluster_port",
    "free_port",
    "gstreamer_missing",
    "read_line",
    "redis_available",
    "serve_command",
    "start_node",
    "start_redis_cluster",
    "stop",
    "wait_listening",
]
