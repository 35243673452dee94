"""A real RTSP camera for tests and benchmarks: GStreamer's RTSP server serving H.264 of a known picture.

Run with the system python3 (Debian's python3-gst-1.0 and gir1.2-gst-rtsp-server-1.0), not the
project's venv, so never imported (tests and benchmarks start it with tests/harness/rtsp.py):

    /usr/bin/python3 tests/harness/rtsp_camera.py --port 8554 --path /cam --colour 0xff0000 [--user u --password p]

It prints "ready <port>" on stdout once it listens, and serves until killed. `--colour`
paints a solid picture (0xRRGGBB); `--pattern` serves another videotestsrc pattern instead;
`--codec h265` encodes H.265 (x265) instead of H.264; `--cert FILE --key FILE` serve rtsps://
(RTSP over TLS, media interleaved in it).
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
gi.require_version("GstRtsp", "1.0")
from gi.repository import Gio, GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402


def pipeline(args: argparse.Namespace) -> str:
    if args.pattern:
        source = f"videotestsrc is-live=true pattern={args.pattern}"
    else:
        source = f"videotestsrc is-live=true pattern=solid-color foreground-color=0xff{args.colour:06x}"
    gop = max(1, round(args.gop * args.fps))
    if args.codec == "h265":
        encode = (f"x265enc tune=zerolatency speed-preset=ultrafast bitrate={args.kbps} key-int-max={gop} "
                  f"! video/x-h265,profile=main ! rtph265pay name=pay0 pt=96 config-interval=-1")
    else:
        encode = (f"x264enc tune=zerolatency speed-preset=ultrafast bitrate={args.kbps} key-int-max={gop} "
                  f"! video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=-1")
    return (
        f"( {source} ! video/x-raw,width={args.width},height={args.height},framerate={args.fps}/1 "
        f"! videoconvert ! video/x-raw,format=I420 ! {encode} )"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument("--path", default="/cam")
    parser.add_argument("--colour", type=lambda text: int(text, 0), default=0xFF0000)
    parser.add_argument("--pattern", default="")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--gop", type=float, default=1.0, help="seconds between keyframes")
    parser.add_argument("--kbps", type=int, default=500)
    parser.add_argument("--user", default="")
    parser.add_argument("--password", default="")
    parser.add_argument("--codec", choices=["h264", "h265"], default="h264")
    parser.add_argument("--cert", default="", help="PEM certificate: serve rtsps://")
    parser.add_argument("--key", default="", help="PEM private key of --cert")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(pipeline(args))
    factory.set_shared(True)
    server.get_mount_points().add_factory(args.path, factory)
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_role_from_structure(Gst.Structure.new_from_string(
            "user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"))
        factory.set_permissions(permissions)
    if args.cert:
        tls = server.get_auth() or GstRtspServer.RTSPAuth()
        tls.set_tls_certificate(Gio.TlsCertificate.new_from_files(args.cert, args.key))
        if not args.user:  # TLS only: everyone may play
            token = GstRtspServer.RTSPToken()
            token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "anyone")
            tls.set_default_token(token)
            permissions = GstRtspServer.RTSPPermissions()
            permissions.add_role_from_structure(Gst.Structure.new_from_string(
                "anyone, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"))
            factory.set_permissions(permissions)
        factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
        server.set_auth(tls)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on port {args.port}")
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
    print(f"ready {server.get_bound_port()}", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
