"""Bounds on an SDP offer, checked before aiortc parses it.

aiortc parses an offer, and builds a transceiver, codec lists and an ICE agent per media
section, on the event loop: a 0.9 MB offer of 3000 m-lines held the loop for seconds and
3000 candidates became thousands of STUN checks to addresses the offerer chose. These
checks only count (bytes, lines, m-lines, candidates), in one pass over at most
`max_bytes`, so that what reaches the parser is small enough to parse at once.
"""

from __future__ import annotations

from streamsnap.config import WebRtcSettings
from streamsnap.reasons import PublishError, StreamEnd


def check_offer(sdp: str, limits: WebRtcSettings) -> None:
    """Raise `PublishError(INVALID_SDP)` naming the first bound `sdp` exceeds."""
    # Characters first: a str of N characters is at least N UTF-8 bytes, so this refuses
    # a huge offer without encoding it.
    if len(sdp) > limits.sdp_max_bytes or len(sdp.encode("utf-8", "surrogatepass")) > limits.sdp_max_bytes:
        raise PublishError(StreamEnd.INVALID_SDP, f"offer larger than {limits.sdp_max_bytes} bytes")
    # splitlines: the line breaks aiortc's parser splits on (\r, \v, \x1c, U+2028, … as well as \n).
    lines = sdp.splitlines()
    if len(lines) > limits.sdp_max_lines:
        raise PublishError(StreamEnd.INVALID_SDP, f"offer has {len(lines)} lines, more than {limits.sdp_max_lines}")
    media = candidates = 0
    for line in lines:
        if line.startswith("m="):
            media += 1
        elif line.startswith("a=candidate"):
            candidates += 1
    if media > limits.sdp_max_media:
        raise PublishError(StreamEnd.INVALID_SDP, f"offer has {media} media sections, more than {limits.sdp_max_media}")
    if candidates > limits.sdp_max_candidates:
        raise PublishError(StreamEnd.INVALID_SDP,
                           f"offer has {candidates} ICE candidates, more than {limits.sdp_max_candidates}")
