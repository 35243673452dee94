"""Graceful shutdown of a real `streamsnap serve` process on SIGTERM and SIGINT."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Iterator

import pytest
from av import VideoFrame

from streamsnap.media.pattern import PatternTrack, read_counter
from streamsnap.wcsclient import PublishFailed, WcsClient
from tests import harness
from tests.conftest import TEST_LISTEN_TIMEOUT, RunningServer, png_image

pytestmark = pytest.mark.integration

GRACE = 4.0


class LateTrack(PatternTrack):
    """A camera whose first frame comes late, so that a snapshot asked for at once is still in flight."""

    def __init__(self, width: int, height: int, delay: float) -> None:
        super().__init__(width, height)
        self.delay = delay

    async def recv(self) -> VideoFrame:
        if self.delay:
            await asyncio.sleep(self.delay)
            self.delay = 0.0
        frame: VideoFrame = await super().recv()
        return frame


@pytest.fixture
def serve() -> Iterator[tuple[subprocess.Popen[str], RunningServer]]:
    node = harness.start_node(env={"STREAMSNAP_SHUTDOWN_GRACE": str(GRACE), "STREAMSNAP_KEYFRAME_TIMEOUT": "8"},
                              timeout=TEST_LISTEN_TIMEOUT)
    yield node.proc, RunningServer(node.port)
    if node.proc.poll() is None:
        node.proc.kill()
        node.proc.wait()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_signal_drains_then_exits_zero(serve: tuple[subprocess.Popen[str], RunningServer],
                                             sig: signal.Signals) -> None:
    proc, server = serve
    live = await WcsClient.connect(server.ws_url)
    late = await WcsClient.connect(server.ws_url)
    viewer = await WcsClient.connect(server.ws_url)
    try:
        track = PatternTrack(160, 120)
        live_publication = await live.publish("live", [track])
        late_publication = await late.publish("late", [LateTrack(160, 120, delay=1.5)], wait=False)
        in_flight = asyncio.ensure_future(viewer.snapshot("late", timeout=15))
        await asyncio.sleep(0.4)
        assert not in_flight.done()

        loop = asyncio.get_running_loop()
        signalled = loop.time()
        proc.send_signal(sig)
        # listening stops at once
        await asyncio.sleep(0.3)
        with pytest.raises(OSError):
            await asyncio.wait_for(asyncio.open_connection("127.0.0.1", server.port), 2)

        picture = await in_flight  # the snapshot asked for before the signal is still answered
        assert png_image(picture.png).size == (160, 120)
        assert read_counter(png_image(picture.png)) >= 0

        for client, publication in ((live, live_publication), (late, late_publication)):
            with pytest.raises(PublishFailed) as ended:  # a status nobody sends: wait for the stream's end
                await client.wait_status(publication, "NO-SUCH-STATUS", timeout=GRACE + 3)
            assert (ended.value.status, ended.value.info) == ("UNPUBLISHED", "Stopped by server shutdown")
            await asyncio.wait_for(client.closed, 5)
            assert client.ws.close_code == 1001
        code = await asyncio.to_thread(proc.wait, GRACE + 5)
        assert code == 0
        assert loop.time() - signalled < GRACE + 3
    finally:
        await live.close()
        await late.close()
        await viewer.close()
    output = proc.stdout.read() if proc.stdout else ""
    assert "Traceback" not in output, output
    assert "shutdown: waiting up to" in output
