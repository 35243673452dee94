"""Periodic thumbnails: every N seconds, the latest picture of each live stream as `<dir>/<name>.jpg`.

Each picture comes from the snapshot service, so a stream costs one decode per interval at
most (none while its cached group is fresh enough to share), never continuous decoding.
Files are replaced atomically (write a temporary file, then `os.replace`), so a reader never
sees half a picture; they are created with mode 0666 less the process umask (0644 under the
usual 022), so another process (nginx) can serve them. Optionally older pictures are kept in
`<dir>/<name>/` (the newest `history` of them), a webhook gets `{name, path, taken_at}` for
each new one, and the files of a stream are removed once a round finds it ended. The newest
picture of each live stream is also kept in memory, for `/streams/{name}/thumbnail.jpg`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import aiohttp

from streamsnap.access import OPEN_GRANT, signed_json_request
from streamsnap.config import ThumbnailSettings
from streamsnap.picture import ImageFormat, ImageSpec
from streamsnap.reasons import SnapshotError
from streamsnap.service.snapshots import Requester, SnapshotService
from streamsnap.streams import StreamRecord

logger = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_SECONDS = 5.0
THUMBNAILER = Requester(OPEN_GRANT, None, {"source": "thumbnails"}, background=True)
"The server's own requests: every right, no per-client limit."


@dataclass(frozen=True)
class Thumbnail:
    """The newest thumbnail of a stream, as served over HTTP."""

    data: bytes
    "The JPEG file."
    width: int
    height: int
    frame_time: float
    "Wall-clock time (Unix seconds) of the depicted frame."
    lease: str
    "The stream it shows (a stream published again under the same name has another lease)."


def file_stem(name: str) -> str:
    """A file name for stream `name`: percent-encoded, so any name is safe and distinct ('.' too)."""
    return quote(name, safe="").replace(".", "%2E") or "%00"


def _write_atomically(path: Path, data: bytes) -> None:
    # os.open with 0o666 lets the kernel apply the umask (mkstemp would force 0600, which
    # nginx or another user cannot read); O_EXCL and a random name keep it as safe.
    temporary = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def store(directory: Path, name: str, data: bytes, taken_at: datetime, history: int) -> Path:
    """Write one thumbnail (and its history copy, pruning the oldest); return the current file's path."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = file_stem(name)
    current = directory / f"{stem}.jpg"
    _write_atomically(current, data)
    if history > 0:
        folder = directory / stem
        folder.mkdir(exist_ok=True)
        _write_atomically(folder / f"{taken_at.strftime('%Y%m%dT%H%M%S.%fZ')}.jpg", data)
        kept = sorted(path for path in folder.glob("*.jpg"))  # names sort as times do
        for old in kept[:-history]:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
    return current


def remove(directory: Path, name: str) -> None:
    """Remove the thumbnail files of stream `name` (the current one and its history folder)."""
    stem = file_stem(name)
    with contextlib.suppress(FileNotFoundError):
        (directory / f"{stem}.jpg").unlink()
    shutil.rmtree(directory / stem, ignore_errors=True)


class Thumbnailer:
    """Runs the rounds until cancelled."""

    def __init__(self, settings: ThumbnailSettings, webhook_secret: str, snapshots: SnapshotService,
                 wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.settings = settings
        self.directory = Path(settings.dir)
        self.webhook_secret = webhook_secret
        "HMAC-SHA256 key the webhook bodies are signed with (X-Streamsnap-Signature), as the backend hooks are."
        self.snapshots = snapshots
        self.wall_clock = wall_clock
        self.written = 0
        "Thumbnails written so far."
        self._http: aiohttp.ClientSession | None = None
        self._latest: dict[str, Thumbnail] = {}

    def latest(self, name: str) -> Thumbnail | None:
        """The newest thumbnail of live stream `name`, or None (none made yet, or the stream ended)."""
        return self._latest.get(name)

    async def run(self) -> None:
        """Take a round every `interval` seconds (rounds never overlap)."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                started = loop.time()
                await self.round()
                await asyncio.sleep(max(0.0, self.settings.interval - (loop.time() - started)))
        finally:
            if self._http is not None:
                await self._http.close()

    async def round(self) -> None:
        """One thumbnail of every live stream this node holds."""
        node = self.snapshots.node.name
        streams = [record for record in await self.snapshots.registry.local() if record.node == node]
        live = {record.name: record.lease for record in streams}
        ended = [name for name, thumbnail in self._latest.items() if live.get(name) != thumbnail.lease]
        for name in ended:  # ended, or published again: the old picture is not this stream's
            del self._latest[name]
            if self.settings.remove_ended and name not in live:
                await asyncio.to_thread(remove, self.directory, name)
                logger.info("thumbnail of %s removed: the stream ended", name, extra={"stream": name})
        await asyncio.gather(*(self._one(record) for record in streams))

    async def _one(self, stream: StreamRecord) -> None:
        spec = ImageSpec(format=ImageFormat.JPEG, width=self.settings.width or None, quality=self.settings.quality)
        try:
            # A picture up to one interval old is as good as a new one for a thumbnail.
            taken = await self.snapshots.take(stream.name, THUMBNAILER, spec,
                                              max_age_ms=self.settings.interval * 1000)
        except SnapshotError as exc:
            logger.debug("no thumbnail of %s: %s", stream.name, exc, extra={"stream": stream.name})
            return
        picture = taken.snapshot
        # Served over HTTP even when the file cannot be written (a full disk is no reason to go blind).
        self._latest[stream.name] = Thumbnail(picture.data, picture.width, picture.height, taken.frame_time,
                                              stream.lease)
        taken_at = self.wall_clock()
        try:
            path = await asyncio.to_thread(store, self.directory, stream.name, picture.data, taken_at,
                                           self.settings.history)
        except OSError as exc:
            logger.warning("thumbnail of %s not written: %s", stream.name, exc, extra={"stream": stream.name})
            return
        self.written += 1
        if self.settings.webhook:
            await self._notify(stream.name, path, taken_at)

    async def _notify(self, name: str, path: Path, taken_at: datetime) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_SECONDS))
        body = {"name": name, "path": str(path),
                "taken_at": taken_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")}
        data, headers = signed_json_request(self.webhook_secret, body)
        try:
            async with self._http.post(self.settings.webhook, data=data, headers=headers,
                                       allow_redirects=False) as response:
                if response.status >= 400:
                    logger.warning("thumbnail webhook answered %d", response.status, extra={"stream": name})
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("thumbnail webhook failed: %s", exc or type(exc).__name__, extra={"stream": name})
