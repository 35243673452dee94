/**
 * streamsnap browser client.
 *
 * A small ES module (no build step, no dependencies) that publishes a camera over
 * WebRTC to a streamsnap server and asks it for snapshots of live streams. It speaks
 * the WebSocket protocol of Flashphoner Web Call Server (WCS) and mirrors the part of
 * the WCS Web SDK API that publishing and snapshots need, so pages written for that
 * SDK port with a changed import:
 *
 *   import Streamsnap, { SESSION_STATUS, STREAM_STATUS, STREAM_EVENT } from "/client/streamsnap.js";
 *   Streamsnap.init();
 *   Streamsnap.createSession({ urlServer: "ws://host:8080/abc" })
 *     .on(SESSION_STATUS.ESTABLISHED, (session) => {
 *       session.createStream({ name: "cam", display: videoElement })
 *         .on(STREAM_STATUS.PUBLISHING, (stream) => stream.snapshot())
 *         .on(STREAM_EVENT, (event) => console.log(event.type, event.payload))
 *         .publish();
 *     });
 *
 * As in the WCS SDK, `.on(event, fn)` keeps ONE callback per event: a later call for
 * the same event replaces the earlier callback.
 */

// ---------------------------------------------------------------------------
// Constants (the string values are the ones on the wire)
// ---------------------------------------------------------------------------

/** Session states and session-level events. */
export const SESSION_STATUS = Object.freeze({
  PENDING: "PENDING",
  CONNECTED: "CONNECTED",
  ESTABLISHED: "ESTABLISHED",
  DISCONNECTED: "DISCONNECTED",
  WARN: "WARN",
  FAILED: "FAILED",
});

/** Stream states (plus three deprecated status-events WCS still sends as statuses). */
export const STREAM_STATUS = Object.freeze({
  NEW: "NEW",
  PENDING: "PENDING",
  PUBLISHING: "PUBLISHING",
  PLAYING: "PLAYING",
  PAUSED: "PAUSED",
  UNPUBLISHED: "UNPUBLISHED",
  STOPPED: "STOPPED",
  FAILED: "FAILED",
  PLAYBACK_PROBLEM: "PLAYBACK_PROBLEM",
  RESIZE: "RESIZE",
  SNAPSHOT_COMPLETE: "SNAPSHOT_COMPLETE",
  NOT_ENOUGH_BANDWIDTH: "NOT_ENOUGH_BANDWIDTH",
});

/** Texts the server puts in a stream's `info` (and the client-side ones). */
export const STREAM_STATUS_INFO = Object.freeze({
  FAILED_BY_ICE_ERROR: "Failed by ICE error",
  FAILED_BY_ICE_TIMEOUT: "Failed by ICE timeout",
  FAILED_BY_DTLS_ERROR: "Failed by DTLS error",
  FAILED_BY_RTP_ACTIVITY: "Failed by RTP activity",
  FAILED_BY_ERROR: "Failed by error",
  STOPPED_BY_SESSION_DISCONNECT: "Stopped by session disconnect",
  STOPPED_BY_REST_TERMINATE: "Stopped by rest /terminate",
  STOPPED_BY_PUBLISHER_STOP: "Stopped by publisher stop",
  STOPPED_BY_USER: "Stopped by user",
  PUBLISH_STREAM_IS_NOT_READY: "Publish stream is not ready",
  STREAM_NOT_FOUND: "Stream not found",
  STREAM_NAME_ALREADY_IN_USE: "Stream name is already in use",
  MEDIASESSION_ID_ALREADY_IN_USE: "MediaSessionId is already in use",
  RESTRICTED_ACCESS: "Restricted access",
  NO_COMMON_CODECS: "No common codecs",
  TERMINATED_BY_KEEP_ALIVE: "Terminated by keep-alive",
  /** Set by this client when something failed in the browser (camera, WebRTC). */
  LOCAL_ERROR: "Local error",
});

/** Name of the event that carries stream events (snapshots among them). */
export const STREAM_EVENT = "STREAM_EVENT";

/** `type` values of a stream event. */
export const STREAM_EVENT_TYPE = Object.freeze({
  AUDIO_MUTED: "audioMuted",
  AUDIO_UNMUTED: "audioUnmuted",
  VIDEO_MUTED: "videoMuted",
  VIDEO_UNMUTED: "videoUnmuted",
  DATA: "data",
  SNAPSHOT_COMPLETED: "snapshotCompleted",
  SNAPSHOT_FAILED: "snapshotFailed",
  RESIZE: "resize",
  NOT_ENOUGH_BANDWIDTH: "notEnoughBandwidth",
});

/** Constraints used by `publish()` when the stream was created without any. */
export const DEFAULT_CONSTRAINTS = Object.freeze({
  video: Object.freeze({ width: 320, height: 240 }),
  audio: true,
});

/**
 * Most a publisher sends (kbit/s) unless told otherwise: the bandwidth a streamsnap server
 * tells publishers by default (its `webrtc.max_publish_bitrate`, 2.5 Mbit/s), which is also
 * what Chromium allows a 1280x720 picture. Pass `constraints.video.maxBitrate` (as in the
 * WCS SDK) when the server is set to another figure.
 */
export const DEFAULT_MAX_BITRATE_KBPS = 2500;

/**
 * What the browser gives up first when the link or the CPU cannot keep up. A snapshot
 * server exists for the picture: by default frames are dropped and the size is kept.
 */
export const DEFAULT_DEGRADATION_PREFERENCE = "maintain-resolution";

/** Version of the WCS client protocol we claim in `connection`. */
const CLIENT_VERSION = "2.0";

// Statuses after which a stream is finished and its resources are released.
const FINAL_STATUSES = new Set([STREAM_STATUS.FAILED, STREAM_STATUS.STOPPED, STREAM_STATUS.UNPUBLISHED]);
// Statuses WCS sends through notifyStreamStatusEvent that are events, not states.
const EVENT_STATUSES = new Set([
  STREAM_STATUS.RESIZE,
  STREAM_STATUS.SNAPSHOT_COMPLETE,
  STREAM_STATUS.NOT_ENOUGH_BANDWIDTH,
]);

// ---------------------------------------------------------------------------
// Module state and helpers
// ---------------------------------------------------------------------------

let initialized = false;
/** Live sessions by id; a session leaves on DISCONNECTED or FAILED. */
const sessions = new Map();
/**
 * Camera kept alive by `cacheLocalResources`, per display element:
 * display -> {mediaStream, key} where key is the JSON of the constraints used.
 */
const cachedMedia = new WeakMap();

/**
 * Random UUID (v4). `crypto.randomUUID` exists only on secure pages, and the client must
 * also work on plain http (snapshots need no camera), so build it from getRandomValues.
 */
function uuid() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function checkCallback(event, callback) {
  if (!event) throw new TypeError("Event can't be null");
  if (typeof callback !== "function") throw new TypeError("Callback needs to be a valid function");
}

/** Run a user callback; an exception in page code must not break the protocol handling. */
function safeCall(fn, ...args) {
  if (!fn) return;
  try {
    fn(...args);
  } catch (err) {
    console.error("streamsnap: error in callback", err);
  }
}

function stopTracks(mediaStream) {
  if (mediaStream) mediaStream.getTracks().forEach((t) => t.stop());
}

function allTracksLive(mediaStream) {
  const tracks = mediaStream ? mediaStream.getTracks() : [];
  return tracks.length > 0 && tracks.every((t) => t.readyState === "live");
}

/** The <video> that shows the camera: `display` itself, or one we create inside it. */
function videoElementFor(display) {
  if (!display) return null;
  if (display.tagName === "VIDEO") return display;
  let video = display.querySelector("video[data-streamsnap]");
  if (!video) {
    video = document.createElement("video");
    video.dataset.streamsnap = "local";
    video.style.width = "100%";
    video.style.height = "100%";
    display.appendChild(video);
  }
  return video;
}

function showLocal(display, mediaStream) {
  const video = videoElementFor(display);
  if (!video) return;
  // Muted + playsInline: autoplay policies (and iOS) allow a muted inline video to start.
  video.muted = true;
  video.autoplay = true;
  video.playsInline = true;
  video.setAttribute("playsinline", "");
  if (video.srcObject !== mediaStream) video.srcObject = mediaStream;
  const playing = video.play();
  if (playing && playing.catch) playing.catch(() => {});
}

function clearLocal(display) {
  const video = display && (display.tagName === "VIDEO" ? display : display.querySelector("video[data-streamsnap]"));
  if (video) {
    video.pause();
    video.srcObject = null;
  }
}

/**
 * `constraints` without the WCS SDK's bitrate fields (`video.minBitrate`, `video.maxBitrate`,
 * in kbit/s), which are for the encoder, not for getUserMedia.
 */
function mediaConstraints(constraints) {
  const video = constraints.video;
  if (!video || typeof video !== "object") return constraints;
  const { minBitrate, maxBitrate, ...rest } = video;
  return { ...constraints, video: rest };
}

/** The WCS SDK's `constraints.video.{min,max}Bitrate` (kbit/s), 0 when not given. */
function bitrateOf(constraints, key) {
  const video = constraints.video;
  const value = video && typeof video === "object" ? Number(video[key]) : 0;
  return Number.isFinite(value) && value > 0 ? value : 0;
}

/**
 * Ask the browser to keep the picture's size: `degradation` ("maintain-resolution" unless the
 * page chose otherwise) on the sender, every encoding unscaled and capped at `maxBitrateBps`.
 * A browser that refuses the preference gets the encodings alone, and a track hinted "detail"
 * (which Chromium keeps at full size too); failures are only logged (publishing goes on with
 * the browser's own choices).
 */
async function keepPictureSize(sender, degradation, maxBitrateBps) {
  if (!sender || typeof sender.getParameters !== "function") return;
  const withEncodings = () => {
    const parameters = sender.getParameters();
    const encodings = parameters.encodings && parameters.encodings.length ? parameters.encodings : [{}];
    parameters.encodings = encodings.map((e) => ({ ...e, scaleResolutionDownBy: 1, maxBitrate: maxBitrateBps }));
    return parameters;
  };
  if (degradation) {
    try {
      await sender.setParameters({ ...withEncodings(), degradationPreference: degradation });
      return;
    } catch (err) {
      console.debug("streamsnap: the sender refused degradationPreference:", err);
    }
    const track = sender.track;
    if (degradation === "maintain-resolution" && track && "contentHint" in track && !track.contentHint) {
      track.contentHint = "detail";
    }
  }
  try {
    await sender.setParameters(withEncodings());
  } catch (err) {
    console.warn("streamsnap: could not set the sender's encodings:", err);
  }
}

/** Camera (and microphone) for `constraints`; retries without audio if audio is what failed. */
async function getLocalMedia(requested) {
  const constraints = mediaConstraints(requested);
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error("Camera access is not available: the page must be served over https or from localhost");
  }
  try {
    return await navigator.mediaDevices.getUserMedia(constraints);
  } catch (err) {
    if (!constraints.audio || !constraints.video) throw err;
    console.warn("streamsnap: no microphone, publishing video only:", err);
    return navigator.mediaDevices.getUserMedia({ ...constraints, audio: false });
  }
}

/**
 * Reorder the video codecs of `transceiver` so that `codec` ("VP8", "H264", ...) comes
 * first. The answerer keeps the offer's order and the browser sends with the first codec
 * of the answer, so this decides what is sent. Other codecs stay (a preference, not a
 * restriction). Failures are only logged: publishing goes on with the default order.
 */
function preferVideoCodec(transceiver, codec) {
  if (!codec || typeof transceiver.setCodecPreferences !== "function") return;
  const capsOf = (cls) => (cls && cls.getCapabilities && (cls.getCapabilities("video") || {}).codecs) || [];
  const sendCaps = capsOf(window.RTCRtpSender);
  const recvCaps = capsOf(window.RTCRtpReceiver);
  const wanted = "video/" + codec.toLowerCase();
  if (!sendCaps.some((c) => c.mimeType.toLowerCase() === wanted)) {
    console.warn(`streamsnap: this browser cannot send ${codec}; using its default codecs`);
    return;
  }
  const score = (c) => {
    if (c.mimeType.toLowerCase() !== wanted) return 0;
    const fmtp = c.sdpFmtpLine || "";
    // Among H.264 variants prefer constrained baseline with packetization-mode=1, the
    // variant every decoder (aiortc's among them) handles.
    let s = 10;
    if (fmtp.includes("packetization-mode=1")) s += 2;
    if (/profile-level-id=42e0/i.test(fmtp)) s += 1;
    return s;
  };
  const ordered = (codecs) => [
    ...codecs.filter((c) => score(c) > 0).sort((a, b) => score(b) - score(a)),
    ...codecs.filter((c) => score(c) === 0),
  ];
  // Browsers have validated the list against receive capabilities (older Chromium) or
  // send capabilities (newer spec, for a sendonly transceiver): try one, then the other.
  for (const caps of [recvCaps, sendCaps]) {
    if (!caps.some((c) => score(c) > 0)) continue;
    try {
      transceiver.setCodecPreferences(ordered(caps));
      return;
    } catch (err) {
      console.debug("streamsnap: setCodecPreferences refused a list:", err);
    }
  }
  console.warn(`streamsnap: could not prefer ${codec}; using the default codecs`);
}

// ---------------------------------------------------------------------------
// Module API
// ---------------------------------------------------------------------------

/**
 * Initialise the client. Call once before `createSession` (as in the WCS SDK).
 * @throws {Error} if the browser has no WebSocket or no WebRTC.
 */
export function init() {
  if (typeof WebSocket === "undefined" || typeof RTCPeerConnection === "undefined") {
    throw new Error("This browser does not support WebRTC");
  }
  initialized = true;
}

/** Sessions that are connecting or connected, oldest first. */
export function getSessions() {
  return Array.from(sessions.values());
}

/**
 * Stop a camera that `cacheLocalResources` kept alive for `display`, and blank the video.
 * @returns {boolean} true if there was one
 */
export function releaseLocalMedia(display) {
  const cached = display ? cachedMedia.get(display) : null;
  if (!cached) return false;
  stopTracks(cached.mediaStream);
  cachedMedia.delete(display);
  clearLocal(display);
  return true;
}

/** A session by id, or undefined. */
export function getSession(id) {
  return sessions.get(id);
}

/**
 * Open a WebSocket session to a streamsnap (or WCS) server.
 * @param {object} options
 * @param {string} options.urlServer full ws:// or wss:// url; the path is sent as given
 * @param {string} [options.authToken] token of an earlier session
 * @param {boolean} [options.keepAlive=false] sent in `connection` (the server echoes it)
 * @param {string} [options.appKey="defaultApp"]
 * @param {object} [options.custom] application fields sent in `connection`
 * @param {number} [options.timeout] ms to wait for the socket to open before giving up
 * @param {RTCConfiguration} [options.mediaOptions] extra RTCPeerConnection settings (e.g. iceServers)
 * @throws {SyntaxError} if the browser refuses the url (not ws:// or wss://, malformed), as the SDK does
 */
export function createSession(options) {
  if (!initialized) throw new Error("streamsnap is not initialized: call init() first");
  if (!options || !options.urlServer) throw new TypeError("options.urlServer must be provided");
  const session = new Session(options);
  sessions.set(session.id(), session);
  return session;
}

// ---------------------------------------------------------------------------
// Session
// ---------------------------------------------------------------------------

class Session {
  #id = uuid();
  #status = SESSION_STATUS.PENDING;
  #options;
  #urlServer;
  #authToken;
  #callbacks = {};
  /** Streams of this session by mediaSessionId (each holds its own handlers). */
  #streams = new Map();
  #ws;
  #opened = false;
  #openTimer = null;

  constructor(options) {
    this.#options = options;
    this.#urlServer = options.urlServer;
    this.#authToken = options.authToken;
    this.#connect();
  }

  /** Session id (client-made, as in the SDK). */
  id() { return this.#id; }
  /** Current SESSION_STATUS. */
  status() { return this.#status; }
  /** The url the socket was opened to. */
  getServerUrl() { return this.#urlServer; }
  /** Auth token the server gave in `getUserData` (or the one passed in). */
  getAuthToken() { return this.#authToken; }
  /** Streams not yet released. */
  getStreams() { return Array.from(this.#streams.values()); }
  /** A stream by id. */
  getStream(id) { return this.#streams.get(id); }

  /** Set the callback of a SESSION_STATUS event; chainable. */
  on(event, callback) {
    checkCallback(event, callback);
    this.#callbacks[event] = callback;
    return this;
  }

  /** Close the session: the socket closes and DISCONNECTED follows. */
  disconnect() {
    if (this.#ws) this.#ws.close();
  }

  /**
   * Create a stream in state NEW. Publish it with `publish()`, or call `snapshot()` on it
   * to ask for a picture of the live stream with this name.
   */
  createStream(options) {
    if (this.#status !== SESSION_STATUS.ESTABLISHED) throw new Error("Invalid session state " + this.#status);
    if (!options) throw new TypeError("options must be provided");
    if (!options.name) throw new TypeError("options.name must be provided");
    const stream = new Stream(options, {
      send: (message, data) => this.#send(message, data),
      forget: (id) => this.#streams.delete(id),
      mediaOptions: this.#options.mediaOptions,
    });
    this.#streams.set(stream.id(), stream);
    return stream;
  }

  #connect() {
    const ws = new WebSocket(this.#urlServer);
    this.#ws = ws;
    if (this.#options.timeout > 0) {
      this.#openTimer = setTimeout(() => {
        if (ws.readyState === WebSocket.CONNECTING) {
          console.warn("streamsnap: WebSocket connection timeout");
          this.#setStatus(SESSION_STATUS.FAILED);
          ws.close();
        }
      }, this.#options.timeout);
    }
    ws.onopen = () => {
      clearTimeout(this.#openTimer);
      this.#opened = true;
      this.#setStatus(SESSION_STATUS.CONNECTED);
      this.#send("connection", {
        appKey: this.#options.appKey || "defaultApp",
        mediaProviders: ["WebRTC"],
        keepAlive: Boolean(this.#options.keepAlive),
        authToken: this.#authToken,
        clientVersion: CLIENT_VERSION,
        clientOSVersion: navigator.appVersion,
        clientBrowserVersion: navigator.userAgent,
        msePacketizationVersion: 2,
        custom: this.#options.custom || {},
      });
    };
    ws.onerror = () => {
      // Before open an error means the connection failed; after open the close event
      // that always follows an error reports DISCONNECTED.
      if (!this.#opened) this.#setStatus(SESSION_STATUS.FAILED);
    };
    ws.onclose = (event) => {
      clearTimeout(this.#openTimer);
      if (this.#status !== SESSION_STATUS.FAILED && this.#status !== SESSION_STATUS.DISCONNECTED) {
        // The close code and reason go to the DISCONNECTED callback as a second argument (an
        // addition to the SDK's signature): a server's refusal says why there too.
        this.#setStatus(SESSION_STATUS.DISCONNECTED, { code: event.code, reason: event.reason });
      }
    };
    ws.onmessage = (event) => this.#receive(event.data);
  }

  #send(message, data) {
    if (this.#ws && this.#ws.readyState === WebSocket.OPEN) {
      this.#ws.send(JSON.stringify({ message, data: [data] }));
    }
  }

  #receive(text) {
    if (typeof text !== "string") return; // binary frames are not part of this protocol subset
    let frame;
    try {
      frame = JSON.parse(text);
    } catch (err) {
      console.warn("streamsnap: unreadable frame from server", err);
      return;
    }
    const data = Array.isArray(frame.data) ? frame.data : [];
    const obj = data[0] || {};
    switch (frame.message) {
      case "ping":
        this.#send("pong", null);
        break;
      case "getUserData":
        if (obj.authToken) this.#authToken = obj.authToken;
        this.#setStatus(SESSION_STATUS.ESTABLISHED, obj);
        break;
      case "setRemoteSDP": {
        // Two list items, not an object: [mediaSessionId, sdp].
        const stream = this.#streams.get(data[0]);
        if (stream) stream._applyAnswer(data[1]);
        break;
      }
      case "notifyStreamStatusEvent": {
        const stream = this.#streams.get(obj.mediaSessionId);
        if (stream) stream._onStatus(obj);
        break;
      }
      case "notifyStreamEvent": {
        const stream = this.#streams.get(obj.mediaSessionId);
        if (stream) stream._onEvent(obj);
        break;
      }
      case "fail":
        if (obj.apiMethod === "StreamStatusEvent") {
          const stream = this.#streams.get(obj.id);
          if (stream) stream._onStatus(obj);
        }
        safeCall(this.#callbacks[SESSION_STATUS.WARN], obj, this);
        break;
      case "pong":
        break;
      default:
        console.debug("streamsnap: unhandled server message", frame.message);
    }
  }

  #setStatus(status, obj) {
    this.#status = status;
    if (status === SESSION_STATUS.DISCONNECTED || status === SESSION_STATUS.FAILED) {
      // No stream survives its session: fail them first so that the page sees the
      // session status last.
      for (const stream of Array.from(this.#streams.values())) {
        stream._onStatus({ status: STREAM_STATUS.FAILED });
      }
      this.#streams.clear();
      sessions.delete(this.#id);
    }
    safeCall(this.#callbacks[status], this, obj);
  }
}

// ---------------------------------------------------------------------------
// Stream
// ---------------------------------------------------------------------------

class Stream {
  #id = uuid();
  #name;
  #options;
  #session; // {send, forget, mediaOptions}
  #status = STREAM_STATUS.NEW;
  #info = undefined;
  #errorInfo = undefined;
  #published = false;
  #callbacks = {};
  #pc = null;
  #mediaStream = null;
  #offerSent = false;
  #stopRequested = false;
  #released = false;
  #audioState;
  #videoState;

  constructor(options, session) {
    this.#options = options;
    this.#name = options.name;
    this.#session = session;
  }

  /** mediaSessionId of this stream. */
  id() { return this.#id; }
  /** Stream name. */
  name() { return this.#name; }
  /** Current STREAM_STATUS. */
  status() { return this.#status; }
  /** Info string of the last status (e.g. "Stream not found"). */
  getInfo() { return this.#info; }
  /** Browser-side error text when info is "Local error". */
  getErrorInfo() { return this.#errorInfo; }
  /** True once publish() was called. */
  published() { return this.#published; }
  /** Last audioState / videoState reported by the server. */
  getAudioState() { return this.#audioState; }
  getVideoState() { return this.#videoState; }
  /** The RTCPeerConnection of a publishing stream (null otherwise), for stats. */
  getRTCPeerConnection() { return this.#pc; }

  /** Set the callback of a STREAM_STATUS value or of STREAM_EVENT; chainable. */
  on(event, callback) {
    checkCallback(event, callback);
    this.#callbacks[event] = callback;
    return this;
  }

  /**
   * Publish the camera under this stream's name. Status becomes PENDING, then PUBLISHING
   * when the server receives media (or FAILED).
   * @throws {Error} unless the stream is NEW
   */
  publish() {
    if (this.#status !== STREAM_STATUS.NEW) throw new Error("Invalid stream state " + this.#status);
    this.#status = STREAM_STATUS.PENDING;
    this.#published = true;
    this.#startPublishing().catch((err) => {
      if (this.#released) {
        this.#closeMedia();
        return;
      }
      console.warn("streamsnap: publishing failed in the browser:", err);
      this.#errorInfo = err && err.message ? err.message : String(err);
      // The server may already know the stream: let it clean up.
      if (this.#offerSent) this.#sendUnpublish();
      this._onStatus({ status: STREAM_STATUS.FAILED, info: STREAM_STATUS_INFO.LOCAL_ERROR });
    });
  }

  async #startPublishing() {
    const o = this.#options;
    const constraints = o.constraints && Object.keys(o.constraints).length ? o.constraints : DEFAULT_CONSTRAINTS;
    const mediaStream = await this.#acquireMedia(constraints);
    if (this.#stopRequested || this.#released) {
      this.#abandonBeforeOffer();
      return;
    }

    const pc = new RTCPeerConnection({
      iceServers: [],
      // As the WCS SDK: one transport per m-line unless the answer accepts BUNDLE.
      bundlePolicy: "max-compat",
      ...(this.#session.mediaOptions || {}),
    });
    this.#pc = pc;
    const videoTrack = mediaStream.getVideoTracks()[0];
    const audioTrack = mediaStream.getAudioTracks()[0];
    if (videoTrack && o.videoContentHint && "contentHint" in videoTrack) videoTrack.contentHint = o.videoContentHint;
    const minBitrate = bitrateOf(constraints, "minBitrate");
    const maxBitrate = bitrateOf(constraints, "maxBitrate") || DEFAULT_MAX_BITRATE_KBPS;
    if (videoTrack) {
      const t = pc.addTransceiver(videoTrack, {
        direction: "sendonly",
        streams: [mediaStream],
        sendEncodings: [{ scaleResolutionDownBy: 1, maxBitrate: maxBitrate * 1000 }],
      });
      preferVideoCodec(t, o.codec);
      const degradation = o.degradationPreference === undefined
        ? DEFAULT_DEGRADATION_PREFERENCE : o.degradationPreference;
      await keepPictureSize(t.sender, degradation, maxBitrate * 1000);
    }
    if (audioTrack) pc.addTransceiver(audioTrack, { direction: "sendonly", streams: [mediaStream] });

    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    if (this.#stopRequested || this.#released) {
      this.#abandonBeforeOffer();
      return;
    }
    // The offer goes out at once, without waiting for ICE gathering: the server answers
    // with its own candidates and learns ours from our connectivity checks.
    this.#session.send("publishStream", {
      mediaSessionId: this.#id,
      name: this.#name,
      published: true,
      hasVideo: Boolean(videoTrack),
      hasAudio: Boolean(audioTrack),
      status: STREAM_STATUS.PENDING,
      record: false,
      mediaProvider: "WebRTC",
      sdp: pc.localDescription.sdp,
      custom: o.custom || {},
      bitrate: 0,
      minBitrate,
      maxBitrate,
      constraints: jsonConstraints(constraints),
      transport: "UDP",
      cvoExtension: false,
    });
    this.#offerSent = true;
  }

  /** Camera for `constraints`, reusing one kept by cacheLocalResources when it matches. */
  async #acquireMedia(constraints) {
    const display = this.#options.display;
    const key = JSON.stringify(jsonConstraints(constraints));
    const cached = display ? cachedMedia.get(display) : null;
    let mediaStream;
    if (cached && cached.key === key && allTracksLive(cached.mediaStream)) {
      mediaStream = cached.mediaStream;
    } else {
      if (cached) {
        stopTracks(cached.mediaStream);
        cachedMedia.delete(display);
      }
      mediaStream = await getLocalMedia(constraints);
      if (display) cachedMedia.set(display, { mediaStream, key });
    }
    this.#mediaStream = mediaStream;
    if (display) showLocal(display, mediaStream);
    return mediaStream;
  }

  /** stop() (or a session loss) came while the camera or the offer was being prepared. */
  #abandonBeforeOffer() {
    if (this.#released) {
      this.#closeMedia(); // the camera may have opened after the release
      return;
    }
    this._onStatus({ status: STREAM_STATUS.UNPUBLISHED, info: STREAM_STATUS_INFO.STOPPED_BY_USER });
  }

  /**
   * Stop the stream. A publishing (or pending) stream is unpublished on the server and its
   * peer connection closed; UNPUBLISHED follows from the server. A NEW stream is released
   * locally only (status FAILED, as in the WCS SDK).
   */
  stop() {
    switch (this.#status) {
      case STREAM_STATUS.NEW:
        this._onStatus({ status: STREAM_STATUS.FAILED });
        return;
      case STREAM_STATUS.PENDING:
        if (!this.#offerSent) {
          // Still waiting for the camera or creating the offer: finish there.
          this.#stopRequested = true;
          return;
        }
        break;
      case STREAM_STATUS.PUBLISHING:
      case STREAM_STATUS.PLAYING:
      case STREAM_STATUS.PAUSED:
        break;
      default:
        return; // already released
    }
    this.#sendUnpublish();
    // Like the SDK: free the media at once; the server's UNPUBLISHED then fires the callback.
    this.#closeMedia();
  }

  /**
   * Ask the server for a snapshot of the live stream with this stream's name. The answer
   * arrives as a STREAM_EVENT of type snapshotCompleted (payload.snapshot: base64 PNG)
   * or snapshotFailed (payload.info).
   * @throws {Error} unless the stream is NEW, PLAYING or PUBLISHING
   */
  snapshot() {
    const s = this.#status;
    if (s !== STREAM_STATUS.NEW && s !== STREAM_STATUS.PLAYING && s !== STREAM_STATUS.PUBLISHING) {
      throw new Error("Invalid stream state " + s);
    }
    this.#session.send("snapshot", { name: this.#name, mediaSessionId: this.#id });
  }

  #sendUnpublish() {
    this.#session.send("unPublishStream", { mediaSessionId: this.#id, name: this.#name, published: true });
  }

  // -- called by the session ------------------------------------------------

  /** @internal Apply the server's SDP answer. */
  _applyAnswer(sdp) {
    const pc = this.#pc;
    if (!pc || !sdp || pc.signalingState !== "have-local-offer") return;
    pc.setRemoteDescription({ type: "answer", sdp }).catch((err) => {
      console.warn("streamsnap: the server's answer was refused:", err);
      this.#errorInfo = err && err.message ? err.message : String(err);
      this.#sendUnpublish();
      this._onStatus({ status: STREAM_STATUS.FAILED, info: STREAM_STATUS_INFO.LOCAL_ERROR });
    });
  }

  /** @internal A status update: notifyStreamStatusEvent, fail(StreamStatusEvent), or local. */
  _onStatus(obj) {
    if (this.#released) return;
    const status = obj.status;
    if (status === STREAM_EVENT) {
      this._onEvent(obj);
      return;
    }
    if (typeof status === "string" && !EVENT_STATUSES.has(status)) this.#status = status;
    if (obj.info) this.#info = obj.info;
    if (obj.audioState) this.#audioState = obj.audioState;
    if (obj.videoState) this.#videoState = obj.videoState;
    if (FINAL_STATUSES.has(status)) this.#release();
    if (status) safeCall(this.#callbacks[status], this);
  }

  /** @internal A stream event (snapshot results among them). */
  _onEvent(obj) {
    const event = {
      ...obj,
      type: obj.type,
      payload: obj.payload || {},
      mediaSessionId: obj.mediaSessionId || this.#id,
    };
    safeCall(this.#callbacks[STREAM_EVENT], event);
  }

  #release() {
    this.#released = true;
    this.#session.forget(this.#id);
    this.#closeMedia();
  }

  /** Close the peer connection; stop the camera unless cacheLocalResources. */
  #closeMedia() {
    if (this.#pc) {
      this.#pc.close();
      this.#pc = null;
    }
    if (this.#mediaStream && !this.#options.cacheLocalResources) {
      stopTracks(this.#mediaStream);
      const display = this.#options.display;
      if (display) {
        const cached = cachedMedia.get(display);
        if (cached && cached.mediaStream === this.#mediaStream) cachedMedia.delete(display);
        clearLocal(display);
      }
    }
    this.#mediaStream = null;
  }
}

/** Constraints as they can travel in JSON (a MediaStream or function cannot). */
function jsonConstraints(constraints) {
  try {
    return JSON.parse(JSON.stringify(constraints));
  } catch {
    return {};
  }
}

// ---------------------------------------------------------------------------
// Namespace export (shaped like the SDK's `Flashphoner` object)
// ---------------------------------------------------------------------------

export const constants = Object.freeze({
  SESSION_STATUS,
  STREAM_STATUS,
  STREAM_STATUS_INFO,
  STREAM_EVENT,
  STREAM_EVENT_TYPE,
});

const Streamsnap = Object.freeze({ init, createSession, getSessions, getSession, releaseLocalMedia, constants });

export { Streamsnap };
export default Streamsnap;
