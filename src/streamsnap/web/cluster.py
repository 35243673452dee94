"""The cluster listener: what other nodes of a cluster ask this one (pictures of its streams, ending them).

It listens apart from the public port (`cluster.host:cluster.port`), so that with several
workers sharing the public port each worker is still reachable by itself. Every request must
be signed with the cluster secret; paths, queries and headers are `cluster/wire.py`'s. Access
was checked by the node that routed the request, so the snapshot service skips it here
(`Requester.checked`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from streamsnap.access import OPEN_GRANT
from streamsnap.cluster.wire import (
    PICTURE_PATH,
    SIGNATURE_HEADER,
    TERMINATE_PATH,
    BadHop,
    picture_headers,
    read_picture_query,
    read_terminate_query,
)
from streamsnap.service.node import Node
from streamsnap.service.snapshots import Requester
from streamsnap.web.errors import error_answers, json_error
from streamsnap.web.images import query_limits
from streamsnap.web.node import NODE

logger = logging.getLogger(__name__)

ROUTED = Requester(OPEN_GRANT, None, {"source": "cluster"}, checked=True)
"A request routed here by another node, which checked access and counted the client."


@web.middleware
async def signed_only(request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Refuse any request not signed with the cluster secret."""
    check = request.app[NODE].hop_signatures
    if check is None or not check.valid(request.method, request.raw_path, request.headers.get(SIGNATURE_HEADER)):
        logger.warning("cluster request from %s refused: bad signature", request.remote)
        return json_error(401, "not a signed request of this cluster")
    try:
        return await handler(request)
    except BadHop as exc:
        return json_error(400, f"bad hop: {exc}")


async def picture(request: web.Request) -> web.Response:
    """GET /cluster/streams/{name}/picture?lease=&format=&width=&height=&quality=&fit=&max_age_ms=."""
    node = request.app[NODE]
    name = request.match_info["name"]
    asked = read_picture_query(request.query, query_limits(node))
    taken = await node.snapshots.take(name, ROUTED, asked.spec, max_age_ms=asked.max_age_ms, lease=asked.lease)
    snapshot = taken.snapshot
    return web.Response(body=snapshot.data, content_type=snapshot.format.content_type,
                        headers=picture_headers(snapshot.width, snapshot.height, taken.age_ms))


async def terminate(request: web.Request) -> web.Response:
    """POST /cluster/streams/{name}/terminate?lease=&reason=: end a stream of this node."""
    node = request.app[NODE]
    lease, reason = read_terminate_query(request.query)
    record = await node.registry.lookup(request.match_info["name"])
    if record is None or record.lease != lease or record.node != node.name:
        return json_error(404, "not a stream of this node")
    ended = await node.publishing.terminate(record, reason)
    return web.json_response({"terminated": ended}, status=200 if ended else 404)


def create_cluster_app(node: Node) -> web.Application:
    """The cluster listener's application, serving `node`."""
    app = web.Application(middlewares=[signed_only, error_answers])
    app[NODE] = node
    app.router.add_get(PICTURE_PATH, picture)
    app.router.add_post(TERMINATE_PATH, terminate)
    return app
