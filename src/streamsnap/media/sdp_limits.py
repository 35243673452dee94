"""Bounds on an SDP offer, checked before aiortc parses it.

aiortc parses an offer, and builds a transceiver, codec lists and an ICE agent per media
section, on the event loop: a 0.9 MB offer of 3000 m-lines held the loop for seconds and
3000 candidates became thousands of STUN checks to addresses the offerer chose. These
checks only count (bytes, lines, m-lines, candidates), in one pass over at most
`max_bytes`, so that what reaches the parser is small enough to parse at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamsnap.reasons import PublishError, StreamEnd


@dataclass(frozen=True)
class SdpLimits:
    """The largest offer accepted."""

    max_bytes: int = 65536
    "Bytes of the offer (UTF-8)."
    max_lines: int = 1000
    "Lines, attributes included."
    max_media: int = 8
    "Media sections (m= lines)."
    max_candidates: int = 32
    "ICE candidates (a=candidate lines), over every section."


def check_offer(sdp: str, limits: SdpLimits) -> None:
    """Raise `PublishError(INVALID_SDP)` naming the first bound `sdp` exceeds."""
    # Characters first: a str of N characters is at least N UTF-8 bytes, so this refuses
    # a huge offer without encoding it.
    if len(sdp) > limits.max_bytes or len(sdp.encode("utf-8", "surrogatepass")) > limits.max_bytes:
        raise PublishError(StreamEnd.INVALID_SDP, f"offer larger than {limits.max_bytes} bytes")
    # splitlines: the line breaks aiortc's parser splits on (\r, \v, \x1c, U+2028, … as well as \n).
    lines = sdp.splitlines()
    if len(lines) > limits.max_lines:
        raise PublishError(StreamEnd.INVALID_SDP, f"offer has {len(lines)} lines, more than {limits.max_lines}")
    media = candidates = 0
    for line in lines:
        if line.startswith("m="):
            media += 1
        elif line.startswith("a=candidate"):
            candidates += 1
    if media > limits.max_media:
        raise PublishError(StreamEnd.INVALID_SDP, f"offer has {media} media sections, more than {limits.max_media}")
    if candidates > limits.max_candidates:
        raise PublishError(StreamEnd.INVALID_SDP,
                           f"offer has {candidates} ICE candidates, more than {limits.max_candidates}")
