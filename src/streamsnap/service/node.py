"""What the services know of the node they run on."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class NodeState:
    """This server, as the services see it."""

    name: str
    "The node's name in stream records and listings."
    draining: bool = False
    "Set when the server stops: new publishes and pictures are refused."
