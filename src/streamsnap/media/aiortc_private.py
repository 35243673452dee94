"""Every private name of aiortc, aioice and pylibsrtp that streamsnap relies on, in one place.

Why streamsnap reaches past their public API: aiortc's `RTCRtpReceiver` decodes every
received frame in a thread and queues the pictures without bound, and runs a bandwidth
estimator and a jitter buffer per packet; a snapshot server needs none of that for a stream
nobody looks at. Below it, each datagram makes a hop through aioice's queue and a task of
aiortc's DTLS transport and becomes an `RtpPacket` object before anything is done with it.
So `media/receiver.py` takes the SRTP datagrams of video straight from the ICE socket's
protocol once DTLS is up (unprotecting them with the DTLS transport's own SRTP session),
takes over the receiver's per-packet handler for what still goes aiortc's way, and uses the
receiver's private state and RTCP senders; the WebRTC source puts a tap where the decoder's
input queue is, and aioice's module-level host address lookup is replaced so that loopback
can be offered. The native short way of the receive path (media/_fastrtp.c) calls libsrtp's
`srtp_unprotect` as pylibsrtp carries it, on the session's own libsrtp context. None of
these is API: an upgrade may rename or reshape any of them, and most would then fail
*silently* (a `setattr` of a renamed attribute just makes a new one, and aiortc's decoder
and unbounded queue are back).

Hence three guards, all keyed on `PRIVATE_NAMES` below:
- `tests/unit/test_aiortc_contract.py` checks each entry against the installed aiortc,
  aioice and pylibsrtp (presence, signature, type, behaviour) and names the entry and
  version on failure;
- pyproject.toml pins aiortc, aioice and pylibsrtp to the minor versions that test passed on;
- the `replace_*` helpers check that the name they replace exists before replacing it.

Code elsewhere uses the constants and helpers here instead of spelling a private name.
"""

from __future__ import annotations

import enum
import importlib
import importlib.metadata
import queue
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aioice.ice
import pylibsrtp
from aiortc.codecs import is_rtx
from aiortc.exceptions import OperationError
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, RtpPacket, pack_remb_fci

__all__ = [
    "CODECS",
    "DATAGRAM_RECEIVED",
    "DECODER_QUEUE",
    "HANDLE_RTP_PACKET",
    "HOST_ADDRESSES_FUNCTION",
    "ICE_CONNECTION",
    "ICE_PROTOCOLS",
    "PRIVATE_NAMES",
    "REMOTE_STREAMS",
    "RTCP_PSFB_APP",
    "RTCP_SSRC",
    "RTX_SSRC",
    "RX_SRTP",
    "SEND_RTCP",
    "SEND_RTCP_NACK",
    "SEND_RTCP_PLI",
    "SRTP_BINDING",
    "SRTP_CONTEXT",
    "SRTP_UNPROTECT",
    "STATISTICS_READ",
    "Kind",
    "OperationError",
    "PrivateName",
    "PrivateNameMissing",
    "RtcpPsfbPacket",
    "RtpPacket",
    "installed_version",
    "intercept_datagrams",
    "is_rtx",
    "pack_remb_fci",
    "receiver_codecs",
    "receiver_remote_streams",
    "receiver_rtcp_ssrc",
    "receiver_rtx_ssrc",
    "replace_decoder_queue",
    "replace_host_addresses",
    "replace_rtp_handler",
    "send_rtcp",
    "send_rtcp_nack",
    "send_rtcp_pli",
    "srtp_receive_session",
    "srtp_unprotect_pointers",
]

# Attributes an RTCRtpReceiver sets in __init__ (name-mangled: `self.__codecs` and so on).
DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
"The queue its decoder thread reads `(codec, encoded_frame)` from; the WebRTC source puts a tap there."
CODECS = "_RTCRtpReceiver__codecs"
"dict payload type -> RTCRtpCodecParameters, filled by `receive()`."
RTX_SSRC = "_RTCRtpReceiver__rtx_ssrc"
"dict RTX SSRC -> media SSRC, filled by `receive()`."
REMOTE_STREAMS = "_RTCRtpReceiver__remote_streams"
"""dict SSRC -> statistics, read by its receiver-report loop and getStats(); streamsnap puts its own objects there,
which have the attributes those read (`STATISTICS_READ`)."""
STATISTICS_READ = ("packets_received", "packets_lost", "fraction_lost", "max_seq", "jitter")
"What aiortc reads from the values of REMOTE_STREAMS (its StreamStatistics' names)."
RTCP_SSRC = "_RTCRtpReceiver__rtcp_ssrc"
"The SSRC its RTCP goes out with; None until the peer connection sets it."

# RTCRtpReceiver methods.
HANDLE_RTP_PACKET = "_handle_rtp_packet"
"Called by the DTLS transport per RTP packet as `(packet, arrival_time_ms=...)`, looked up on the instance."
SEND_RTCP = "_send_rtcp"
SEND_RTCP_NACK = "_send_rtcp_nack"
SEND_RTCP_PLI = "_send_rtcp_pli"

# Below the receiver: where datagrams come in, and the keys to read them.
ICE_CONNECTION = "_connection"
"RTCIceTransport: the aioice `Connection` it runs."
ICE_PROTOCOLS = "_protocols"
"aioice Connection: its `StunProtocol`s, one per local candidate (each a DatagramProtocol on its own socket)."
DATAGRAM_RECEIVED = "datagram_received"
"""StunProtocol (a DatagramProtocol): the event loop calls it per datagram, looked up on the protocol each time;
replaced on the instance. Not private as a name, but the class it is replaced on is aioice's own."""
RX_SRTP = "_rx_srtp"
"RTCDtlsTransport: the pylibsrtp `Session` that unprotects what the peer sends; set once DTLS is connected."

# pylibsrtp, for native code: its libsrtp, reached through its cffi binding.
SRTP_BINDING = "pylibsrtp._binding"
"pylibsrtp's cffi module (`ffi`, `lib`), with the libsrtp it was built with."
SRTP_CONTEXT = "_srtp"
"pylibsrtp Session: a cffi `srtp_t *`; [0] is the libsrtp context the session protects and unprotects with."
SRTP_UNPROTECT = "srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)"
"""The C type of `lib.srtp_unprotect` (libsrtp 2: unprotect in place, the length in and out), as media/_fastrtp.c
calls it."""

# aioice.ice module global, looked up at each candidate gathering.
HOST_ADDRESSES_FUNCTION = "get_host_addresses"
"`get_host_addresses(use_ipv4, use_ipv6) -> list[str]`: the addresses host candidates are gathered on."


class Kind(enum.Enum):
    """What sort of thing a private name is, which decides how the contract test checks it."""

    FUNCTION = "module function"
    C_FUNCTION = "C function of a cffi binding"
    CLASS = "class"
    CONSTANT = "module constant"
    EXCEPTION = "exception class"
    METHOD = "method"
    INSTANCE_ATTRIBUTE = "instance attribute"


@dataclass(frozen=True)
class PrivateName:
    """One private aiortc/aioice name streamsnap uses, with the shape it relies on."""

    package: str
    "Distribution that provides it (its version is pinned in pyproject.toml)."
    module: str
    "Module it lives in."
    qualname: str
    "Name in that module: `function`, `Class`, `CONSTANT`, `Class.method` or `Class.attribute`."
    kind: Kind
    use: str
    "What streamsnap does with it (said in the contract test's failure message)."
    parameters: tuple[str, ...] = ()
    "FUNCTION, CLASS (constructor) and METHOD: the parameters streamsnap passes, in order (no self)."
    coroutine: bool = False
    "METHOD: whether it is awaited."
    types: tuple[type, ...] = ()
    "INSTANCE_ATTRIBUTE: the types its value may have on a new instance."
    value: object = None
    "CONSTANT: its value; C_FUNCTION: its C type."

    @property
    def label(self) -> str:
        """`module.qualname`, as a person would look it up."""
        return f"{self.module}.{self.qualname}"


def installed_version(package: str) -> str:
    """The installed version of `package` (for messages)."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


_RECEIVER = "aiortc.rtcrtpreceiver"
_DTLS = "aiortc.rtcdtlstransport"

PRIVATE_NAMES: tuple[PrivateName, ...] = (
    PrivateName("aiortc", _RECEIVER, f"RTCRtpReceiver.{DECODER_QUEUE}", Kind.INSTANCE_ATTRIBUTE,
                "replaced by a tap so that aiortc's decoder thread idles instead of decoding",
                types=(queue.Queue,)),
    PrivateName("aiortc", _RECEIVER, f"RTCRtpReceiver.{CODECS}", Kind.INSTANCE_ATTRIBUTE,
                "read per packet to find the codec of a payload type", types=(dict,)),
    PrivateName("aiortc", _RECEIVER, f"RTCRtpReceiver.{RTX_SSRC}", Kind.INSTANCE_ATTRIBUTE,
                "read to unwrap RTX retransmissions onto their media SSRC", types=(dict,)),
    PrivateName("aiortc", _RECEIVER, f"RTCRtpReceiver.{REMOTE_STREAMS}", Kind.INSTANCE_ATTRIBUTE,
                "holds streamsnap's statistics per SSRC, which aiortc's receiver reports and getStats() read",
                types=(dict,)),
    PrivateName("aiortc", _RECEIVER, f"RTCRtpReceiver.{RTCP_SSRC}", Kind.INSTANCE_ATTRIBUTE,
                "sender SSRC of the REMB packets", types=(int, type(None))),
    PrivateName("aiortc", _RECEIVER, f"RTCRtpReceiver.{HANDLE_RTP_PACKET}", Kind.METHOD,
                "replaced on the instance by streamsnap's lean receive path",
                parameters=("packet", "arrival_time_ms"), coroutine=True),
    PrivateName("aiortc", _RECEIVER, f"RTCRtpReceiver.{SEND_RTCP}", Kind.METHOD,
                "sends the REMB packets", parameters=("packet",), coroutine=True),
    PrivateName("aiortc", _RECEIVER, f"RTCRtpReceiver.{SEND_RTCP_NACK}", Kind.METHOD,
                "asks for lost packets again", parameters=("media_ssrc", "lost"), coroutine=True),
    PrivateName("aiortc", _RECEIVER, f"RTCRtpReceiver.{SEND_RTCP_PLI}", Kind.METHOD,
                "asks for a keyframe when a snapshot needs one", parameters=("media_ssrc",), coroutine=True),
    PrivateName("aiortc", "aiortc.codecs", "is_rtx", Kind.FUNCTION,
                "tells RTX payload types", parameters=("codec",)),
    PrivateName("aiortc", "aiortc.rtp", "RtpPacket", Kind.CLASS,
                "the packets aiortc's DTLS transport still hands to the receive path (their header fields are read)",
                parameters=("payload_type", "marker", "sequence_number", "timestamp", "ssrc", "payload")),
    PrivateName("aiortc", "aiortc.rtp", "RtcpPsfbPacket", Kind.CLASS,
                "the REMB packet", parameters=("fmt", "ssrc", "media_ssrc", "fci")),
    PrivateName("aiortc", "aiortc.rtp", "pack_remb_fci", Kind.FUNCTION,
                "encodes the REMB bitrate and SSRCs", parameters=("bitrate", "ssrcs")),
    PrivateName("aiortc", "aiortc.rtp", "RTCP_PSFB_APP", Kind.CONSTANT,
                "the feedback format of REMB", value=15),
    PrivateName("aiortc", "aiortc.exceptions", "OperationError", Kind.EXCEPTION,
                "raised by setRemoteDescription when no codec is common (not exported by `aiortc`)"),
    PrivateName("aiortc", "aiortc.rtcicetransport", f"RTCIceTransport.{ICE_CONNECTION}", Kind.INSTANCE_ATTRIBUTE,
                "the way from a DTLS transport to the sockets its datagrams come in on",
                types=(aioice.Connection,)),
    PrivateName("aioice", "aioice.ice", f"Connection.{ICE_PROTOCOLS}", Kind.INSTANCE_ATTRIBUTE,
                "the protocols whose datagram handler the lean receive path takes over", types=(list,)),
    PrivateName("aioice", "aioice.ice", f"StunProtocol.{DATAGRAM_RECEIVED}", Kind.METHOD,
                "replaced on the instance: SRTP of video goes to the lean receive path, the rest on to aioice",
                parameters=("data", "addr")),
    PrivateName("aiortc", _DTLS, f"RTCDtlsTransport.{RX_SRTP}", Kind.INSTANCE_ATTRIBUTE,
                "unprotects the SRTP datagrams the lean receive path takes (None until DTLS is connected)",
                types=(pylibsrtp.Session, type(None))),
    PrivateName("pylibsrtp", "pylibsrtp", f"Session.{SRTP_CONTEXT}", Kind.INSTANCE_ATTRIBUTE,
                "the libsrtp context the native receive path unprotects with", types=(object,)),
    PrivateName("pylibsrtp", SRTP_BINDING, "lib.srtp_unprotect", Kind.C_FUNCTION,
                "called by the native receive path to unprotect SRTP in place", value=SRTP_UNPROTECT),
    PrivateName("aioice", "aioice.ice", HOST_ADDRESSES_FUNCTION, Kind.FUNCTION,
                "replaced for the whole process so that host candidates can be on loopback",
                parameters=("use_ipv4", "use_ipv6")),
)


class PrivateNameMissing(AttributeError):
    """A private name streamsnap replaces is not there: the installed aiortc/aioice changed it."""

    def __init__(self, package: str, label: str) -> None:
        super().__init__(
            f"{label} is missing in {package} {installed_version(package)}: streamsnap relies on it "
            "(see streamsnap/media/aiortc_private.py and tests/unit/test_aiortc_contract.py)"
        )


def _require(target: object, name: str, package: str, label: str) -> None:
    if not hasattr(target, name):
        raise PrivateNameMissing(package, label)


def receiver_codecs(receiver: Any) -> dict[int, Any]:
    """The receiver's own payload type -> codec dict (the object aiortc fills, not a copy)."""
    codecs: dict[int, Any] = getattr(receiver, CODECS)
    return codecs


def receiver_rtx_ssrc(receiver: Any) -> dict[int, int]:
    """The receiver's own RTX SSRC -> media SSRC dict."""
    rtx_ssrc: dict[int, int] = getattr(receiver, RTX_SSRC)
    return rtx_ssrc


def receiver_remote_streams(receiver: Any) -> dict[int, Any]:
    """The receiver's own SSRC -> statistics dict, which its receiver-report loop reads (`STATISTICS_READ` of each)."""
    streams: dict[int, Any] = getattr(receiver, REMOTE_STREAMS)
    return streams


def receiver_rtcp_ssrc(receiver: Any) -> int | None:
    """The SSRC the receiver's RTCP goes out with (None until its peer connection sets it)."""
    ssrc: int | None = getattr(receiver, RTCP_SSRC)
    return ssrc


async def send_rtcp(receiver: Any, packet: Any) -> None:
    """Send one RTCP packet through the receiver's transport."""
    await getattr(receiver, SEND_RTCP)(packet)


async def send_rtcp_nack(receiver: Any, media_ssrc: int, lost: list[int]) -> None:
    """Ask the sender of `media_ssrc` to send the `lost` sequence numbers again."""
    await getattr(receiver, SEND_RTCP_NACK)(media_ssrc, lost)


async def send_rtcp_pli(receiver: Any, media_ssrc: int) -> None:
    """Ask the sender of `media_ssrc` for a keyframe (picture loss indication)."""
    await getattr(receiver, SEND_RTCP_PLI)(media_ssrc)


def replace_rtp_handler(receiver: Any, handler: Callable[[RtpPacket, int], Awaitable[None]]) -> None:
    """Make the DTLS transport hand this receiver's RTP packets to `handler` instead of aiortc's."""
    _require(type(receiver), HANDLE_RTP_PACKET, "aiortc", f"{_RECEIVER}.RTCRtpReceiver.{HANDLE_RTP_PACKET}")
    setattr(receiver, HANDLE_RTP_PACKET, handler)


_DatagramHandler = Callable[[bytes, Any], None]


def srtp_receive_session(dtls_transport: Any) -> pylibsrtp.Session | None:
    """The SRTP session that unprotects what the peer of `dtls_transport` sends; None before DTLS is connected."""
    _require(dtls_transport, RX_SRTP, "aiortc", f"{_DTLS}.RTCDtlsTransport.{RX_SRTP}")
    session: pylibsrtp.Session | None = getattr(dtls_transport, RX_SRTP)
    return session


def intercept_datagrams(dtls_transport: Any,
                        make_handler: Callable[[_DatagramHandler], _DatagramHandler]) -> Callable[[], None]:
    """Put `make_handler(original)` in the place of each ICE socket's datagram handler under `dtls_transport`.

    `original` is what handled that socket's datagrams so far (aioice: STUN, else on to the DTLS
    transport's queue); the new handler passes on what it does not take. Returns a function that
    puts the originals back.
    """
    ice_transport = dtls_transport.transport  # public: RTCDtlsTransport.transport
    _require(ice_transport, ICE_CONNECTION, "aiortc", f"aiortc.rtcicetransport.RTCIceTransport.{ICE_CONNECTION}")
    connection = getattr(ice_transport, ICE_CONNECTION)
    _require(connection, ICE_PROTOCOLS, "aioice", f"aioice.ice.Connection.{ICE_PROTOCOLS}")
    replaced: list[tuple[Any, _DatagramHandler | None]] = []
    for protocol in list(getattr(connection, ICE_PROTOCOLS)):
        _require(protocol, DATAGRAM_RECEIVED, "aioice", f"aioice.ice.StunProtocol.{DATAGRAM_RECEIVED}")
        original: _DatagramHandler = getattr(protocol, DATAGRAM_RECEIVED)
        replaced.append((protocol, vars(protocol).get(DATAGRAM_RECEIVED)))
        setattr(protocol, DATAGRAM_RECEIVED, make_handler(original))

    def restore() -> None:
        for protocol, own in replaced:
            if own is None:
                delattr(protocol, DATAGRAM_RECEIVED)  # the class's method again
            else:
                setattr(protocol, DATAGRAM_RECEIVED, own)
        replaced.clear()

    return restore


def srtp_unprotect_pointers(session: pylibsrtp.Session) -> tuple[int, int]:
    """(address of `session`'s libsrtp context, address of libsrtp's `srtp_unprotect`), for native code.

    The context lives as long as `session`: whoever uses the address keeps the session.
    """
    binding = importlib.import_module(SRTP_BINDING)
    _require(session, SRTP_CONTEXT, "pylibsrtp", f"pylibsrtp.Session.{SRTP_CONTEXT}")
    ffi, lib = binding.ffi, binding.lib
    _require(lib, "srtp_unprotect", "pylibsrtp", f"{SRTP_BINDING}.lib.srtp_unprotect")
    function = ffi.addressof(lib, "srtp_unprotect")
    if ffi.typeof(function).cname != SRTP_UNPROTECT:
        raise PrivateNameMissing("pylibsrtp", f"{SRTP_BINDING}.lib.srtp_unprotect as {SRTP_UNPROTECT}")
    context = getattr(session, SRTP_CONTEXT)[0]
    return int(ffi.cast("uintptr_t", context)), int(ffi.cast("uintptr_t", function))


def replace_decoder_queue(receiver: Any, decoder_queue: Any) -> None:
    """Put `decoder_queue` where the receiver's decoder thread reads from (before `receive()` starts it)."""
    _require(receiver, DECODER_QUEUE, "aiortc", f"{_RECEIVER}.RTCRtpReceiver.{DECODER_QUEUE}")
    setattr(receiver, DECODER_QUEUE, decoder_queue)


def replace_host_addresses(host_addresses: Callable[[bool, bool], list[str]]) -> None:
    """Make aioice gather host candidates on the addresses `host_addresses(use_ipv4, use_ipv6)` returns."""
    _require(aioice.ice, HOST_ADDRESSES_FUNCTION, "aioice", f"aioice.ice.{HOST_ADDRESSES_FUNCTION}")
    setattr(aioice.ice, HOST_ADDRESSES_FUNCTION, host_addresses)
