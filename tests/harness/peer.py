"""Our own aiortc peer as a hostile client, for the attack tests and the attacks benchmark: a bare
offer to grow or bend, and a publisher's raw RTP to send packets no encoder would.

rtp_injector wraps aiortc's private `RTCDtlsTransport._send_rtp` of our own client, not of the
server: fine for a test and a benchmark's attacker, and test_attacks.py fails at once if a new
aiortc renames it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiortc import RTCPeerConnection

from streamsnap.wcsclient import Publication

RawSend = Callable[[bytes], Awaitable[None]]


async def real_offer(video: int = 1) -> str:
    """An aiortc offer with `video` sendonly video sections (the peer is closed: it never connects)."""
    pc = RTCPeerConnection()
    for _ in range(video):
        pc.addTransceiver("video", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = str(pc.localDescription.sdp)
    await pc.close()
    return sdp


def rtp_injector(publication: Publication) -> tuple[RawSend, int, Callable[[], int]]:
    """The publisher's raw RTP send (SRTP-protected, to the server), its VP8 payload type, and the RTP
    timestamp of the last real packet it sent."""
    assert publication.pc is not None
    transport = publication.pc.getSenders()[0].transport
    local_sdp = publication.pc.localDescription.sdp
    payload_type = int(next(line.split(":")[1].split()[0] for line in local_sdp.splitlines()
                            if line.startswith("a=rtpmap:") and "VP8/90000" in line))
    original: RawSend = transport._send_rtp
    last = [0]

    async def watching(data: bytes) -> None:
        if len(data) >= 12 and data[1] & 0x7F == payload_type:
            last[0] = int.from_bytes(data[4:8], "big")
        await original(data)

    transport._send_rtp = watching  # type: ignore[method-assign]  # wrapped on purpose, see above
    return original, payload_type, lambda: last[0]
