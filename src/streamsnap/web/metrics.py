"""Prometheus `/metrics`: a collector that reads the counters the server keeps anyway.

Nothing in the core calls into prometheus-client: each scrape builds the metric families
from `EngineStats`, the session set and the live streams' frame caches.

With `auth_secret` set, `/metrics` on the main port needs a token with the `metrics` right,
and its per-stream series cover only the streams that token covers; the separate listener of
`metrics_port` (for a scraper on a private network) needs none. Either way at most
`metrics_max_streams` streams get per-stream series, so a scrape stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from streamsnap import __version__
from streamsnap.access import AccessDenied, Right
from streamsnap.service.node import Node
from streamsnap.streams import SourceKind, StreamRecord
from streamsnap.web.errors import error_answers
from streamsnap.web.guard import request_grant
from streamsnap.web.node import NODE


class ServerCollector(Collector):
    """The server's state at one scrape."""

    def __init__(self, node: Node, streams: Sequence[StreamRecord]) -> None:
        self.node = node
        self.streams = streams

    def collect(self) -> Iterator[Metric]:
        stats = self.node.engine.stats
        info = GaugeMetricFamily("streamsnap_info", "Version and node name of this server.",
                                 labels=["version", "node"])
        info.add_metric([__version__, self.node.name], 1)
        yield info
        yield GaugeMetricFamily("streamsnap_sessions", "Open WebSocket sessions.", value=len(self.node.sessions))
        yield GaugeMetricFamily("streamsnap_streams", "Live streams held by this node.", value=len(self.streams))
        by_kind = GaugeMetricFamily("streamsnap_streams_by_kind", "Live streams by kind of source "
                                    "(webrtc, rtsp, rtmp, whip).", labels=["kind"])
        for kind in SourceKind:
            by_kind.add_metric([kind.value], sum(1 for record in self.streams if record.kind is kind))
        yield by_kind

        # Counted by the snapshot service, the one place every transport asks (refusals before the engine,
        # pictures reused or fetched from another node included), not by the engine.
        answers = self.node.snapshots.answers
        snapshots = CounterMetricFamily("streamsnap_snapshots", "Picture requests answered (WebSocket, REST, image "
                                        "url, MJPEG, thumbnails, hops from other nodes), by result: 'ok', the "
                                        "failure's reason, or 'bad_request' (parameters refused).", labels=["result"])
        for result, count in sorted(answers.results.items()):
            snapshots.add_metric([result], count)
        yield snapshots

        buckets: list[tuple[str, float]] = []
        cumulative = 0
        for bound, count in zip(answers.latency.bounds, answers.latency.counts, strict=False):
            cumulative += count
            buckets.append((repr(bound), cumulative))
        buckets.append(("+Inf", sum(answers.latency.counts)))
        latency = HistogramMetricFamily("streamsnap_snapshot_latency_seconds",
                                        "Time from a picture request to its answer (every result).")
        latency.add_metric([], buckets, sum_value=answers.latency.total)
        yield latency

        yield CounterMetricFamily("streamsnap_decode_seconds", "Seconds spent decoding video.",
                                  value=stats.decode_seconds)
        yield CounterMetricFamily("streamsnap_encode_seconds", "Seconds spent encoding image files.",
                                  value=stats.encode_seconds)
        yield CounterMetricFamily("streamsnap_decodes", "Groups of frames decoded.", value=stats.decodes)
        yield CounterMetricFamily("streamsnap_frames_decoded", "Encoded frames decoded.", value=stats.frames_decoded)
        yield CounterMetricFamily("streamsnap_encodes", "Image files encoded.", value=stats.encodes)
        yield CounterMetricFamily("streamsnap_snapshots_coalesced",
                                  "Requests served by a picture already being made.", value=stats.coalesced)
        yield CounterMetricFamily("streamsnap_plis_sent", "Keyframe requests (RTCP PLI) sent to publishers.",
                                  value=stats.keyframe_requests)
        yield CounterMetricFamily("streamsnap_plis_withheld", "Keyframe requests not sent: the stream's "
                                  "budget (max_keyframe_requests_per_second) was spent.",
                                  value=stats.keyframe_requests_withheld)
        yield from self._load()
        snapshots_service = self.node.snapshots
        yield GaugeMetricFamily("streamsnap_snapshots_in_flight", "Snapshot requests being served.",
                                value=snapshots_service.in_flight)
        refused = CounterMetricFamily("streamsnap_snapshots_refused", "Snapshot requests refused before any "
                                      "work (limits, shutdown), by reason.", labels=["reason"])
        for reason, count in sorted(snapshots_service.refused.items()):
            refused.add_metric([reason], count)
        yield refused
        yield CounterMetricFamily("streamsnap_pictures_reused", "Requests answered with a picture made for an "
                                  "earlier one (younger than their max_age_ms).", value=snapshots_service.pictures.hits)

        yield from self._cluster()

        frames = CounterMetricFamily("streamsnap_stream_frames_received",
                                     "Encoded video frames received, per live stream.", labels=["stream"])
        fps = GaugeMetricFamily("streamsnap_stream_fps", "Frames per second over the last 5 s, per live stream "
                                "(none while too few frames came to tell).",
                                labels=["stream"])
        for record in self.streams[:self.node.settings.metrics.max_streams]:
            source_stats = self.node.sources.stats(record.name, record.lease)
            if source_stats is None:  # held by another node
                continue
            frames.add_metric([record.name], source_stats.frames_received)
            if source_stats.fps is not None:
                fps.add_metric([record.name], source_stats.fps)
        yield frames
        yield fps


    def _load(self) -> Iterator[Metric]:
        """Load shedding and the media loop (the engine's measures)."""
        engine = self.node.engine
        stats = engine.stats
        yield GaugeMetricFamily("streamsnap_event_loop_lag_seconds", "How late the event loop that receives "
                                "media ran, at most, over the last second.", value=engine.loop_lag.recent)
        yield GaugeMetricFamily("streamsnap_event_loop_lag_mean_seconds", "How late the event loop ran on average "
                                "over the last second (new pictures are refused above max_event_loop_lag_ms).",
                                value=engine.loop_lag.recent_mean)
        yield GaugeMetricFamily("streamsnap_event_loop_lag_max_seconds", "The largest event loop lag since start.",
                                value=engine.loop_lag.largest)
        yield GaugeMetricFamily("streamsnap_snapshot_capacity", "Pictures per second the worker pool achieves, "
                                "as measured (what admission counts on).", value=engine.capacity)
        yield GaugeMetricFamily("streamsnap_snapshot_backlog_seconds", "Seconds of picture work under way at "
                                "the measured capacity.", value=engine.backlog)
        yield CounterMetricFamily("streamsnap_snapshots_overloaded", "Requests refused at once because the "
                                  "server could not make them in time (snapshot_deadline_ms, "
                                  "max_event_loop_lag_ms).", value=stats.overloaded)
        yield CounterMetricFamily("streamsnap_snapshots_keyframe_only", "Pictures decoded from the cached "
                                  "keyframe alone (younger than the caller's max_age_ms).", value=stats.keyframe_only)
        yield CounterMetricFamily("streamsnap_snapshots_abandoned", "Pictures and encodes stopped because "
                                  "every caller waiting for them had gone.", value=stats.abandoned)
        yield CounterMetricFamily("streamsnap_worker_jobs_skipped", "Decode and encode jobs dropped before "
                                  "they started: their callers had gone.", value=engine.pool.stats.skipped)
        yield CounterMetricFamily("streamsnap_decode_cpu_seconds", "CPU seconds the worker threads spent "
                                  "decoding.", value=stats.decode_cpu_seconds)

    def _cluster(self) -> Iterator[Metric]:
        cluster = self.node.cluster
        if cluster is None:
            return
        yield GaugeMetricFamily("streamsnap_cluster_redis_up", "1 while the cluster's Redis answers.",
                                value=1 if cluster.redis_up else 0)
        if cluster.last_refresh is not None:
            yield GaugeMetricFamily("streamsnap_cluster_heartbeat_age_seconds",
                                    "Seconds since this node last refreshed its records in Redis.",
                                    value=self.node.clock() - cluster.last_refresh)
        yield CounterMetricFamily("streamsnap_cluster_conflicts", "Streams this node lost to an earlier claim "
                                  "of the same name on another node (after Redis came back).", value=cluster.conflicts)
        remote = CounterMetricFamily("streamsnap_cluster_remote_pictures", "Pictures asked of other nodes, by "
                                     "result ('ok' or the reason).", labels=["result"])
        for result, count in sorted(self.node.snapshots.remote_requests.items()):
            remote.add_metric([result], count)
        yield remote


OPEN_METRICS = web.AppKey("open_metrics", bool)
"Set on the metrics listener's app: no token asked there."


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: the Prometheus text exposition."""
    node = request.app[NODE]
    streams = await node.registry.local()  # per node: Prometheus sums the nodes of a cluster
    if not request.app.get(OPEN_METRICS, False):
        grant = request_grant(request)  # 401 without a valid token when tokens are on
        if Right.METRICS not in grant.rights:
            raise AccessDenied("no metrics right")
        streams = [record for record in streams if grant.sees(record.name)]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServerCollector(node, streams))
    return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_metrics_route(app: web.Application) -> None:
    """Route `/metrics`."""
    app.router.add_get("/metrics", metrics)


def create_metrics_app(node: Node) -> web.Application:
    """`/metrics` alone, without a token, for the `metrics_port` listener."""
    from streamsnap.web.app import json_http_errors  # the app module imports this one

    app = web.Application(middlewares=[error_answers, json_http_errors])
    app[NODE] = node
    app[OPEN_METRICS] = True
    add_metrics_route(app)
    return app
