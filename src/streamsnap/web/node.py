"""Where an aiohttp application of streamsnap keeps the node it serves."""

from __future__ import annotations

from aiohttp import web

from streamsnap.service.node import Node

NODE = web.AppKey("node", Node)
"The node every handler of the application serves (built by `server/node.py`, never here)."
