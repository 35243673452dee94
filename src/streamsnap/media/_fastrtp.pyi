"""The short way of the lean receive path, in C (media/_fastrtp.c); see media/receiver.py."""

from collections.abc import Callable
from typing import Any

import pylibsrtp

class Receiver:
    armed: int
    ssrc: int
    packets: int
    from_socket: int
    rejected: int
    pending_bytes: int
    def __init__(self, session: pylibsrtp.Session, srtp: int, unprotect: int, slow_rtp: Callable[[bytes], None],
                 on_run: Callable[[int, list[bytes]], None]) -> None: ...
    def handler(self, slow: Callable[[bytes, Any], None]) -> Callable[[bytes, Any], None]: ...
    def arm(self, *, ssrc: int, payload_type: int, clockrate: float, received: int, max_seq: int, cycles: int,
            last_timestamp: int, last_transit: int | None, jitter_q4: int, expire_at: int, refused: dict[int, None],
            run: list[bytes] | None, run_timestamp: int, run_first: int, pending_bytes: int,
            max_pending_bytes: int, run_limit: int, next_first: int, last_emitted: int) -> None: ...
    def disarm(self) -> dict[str, Any]: ...
    def statistics(self) -> dict[str, Any]: ...
