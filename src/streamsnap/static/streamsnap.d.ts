/**
 * Types of the streamsnap browser client (streamsnap.js).
 *
 * `.on(event, callback)` keeps one callback per event: a later call for the same event
 * replaces the earlier one (as in the WCS Web SDK).
 */

export declare const SESSION_STATUS: Readonly<{
    PENDING: "PENDING";
    CONNECTED: "CONNECTED";
    ESTABLISHED: "ESTABLISHED";
    DISCONNECTED: "DISCONNECTED";
    WARN: "WARN";
    FAILED: "FAILED";
}>;
export type SessionStatus = (typeof SESSION_STATUS)[keyof typeof SESSION_STATUS];

export declare const STREAM_STATUS: Readonly<{
    NEW: "NEW";
    PENDING: "PENDING";
    PUBLISHING: "PUBLISHING";
    PLAYING: "PLAYING";
    PAUSED: "PAUSED";
    UNPUBLISHED: "UNPUBLISHED";
    STOPPED: "STOPPED";
    FAILED: "FAILED";
    PLAYBACK_PROBLEM: "PLAYBACK_PROBLEM";
    RESIZE: "RESIZE";
    SNAPSHOT_COMPLETE: "SNAPSHOT_COMPLETE";
    NOT_ENOUGH_BANDWIDTH: "NOT_ENOUGH_BANDWIDTH";
}>;
export type StreamStatus = (typeof STREAM_STATUS)[keyof typeof STREAM_STATUS];

export declare const STREAM_STATUS_INFO: Readonly<{
    FAILED_BY_ICE_ERROR: "Failed by ICE error";
    FAILED_BY_ICE_TIMEOUT: "Failed by ICE timeout";
    FAILED_BY_DTLS_ERROR: "Failed by DTLS error";
    FAILED_BY_RTP_ACTIVITY: "Failed by RTP activity";
    FAILED_BY_ERROR: "Failed by error";
    STOPPED_BY_SESSION_DISCONNECT: "Stopped by session disconnect";
    STOPPED_BY_REST_TERMINATE: "Stopped by rest /terminate";
    STOPPED_BY_PUBLISHER_STOP: "Stopped by publisher stop";
    STOPPED_BY_USER: "Stopped by user";
    PUBLISH_STREAM_IS_NOT_READY: "Publish stream is not ready";
    STREAM_NOT_FOUND: "Stream not found";
    STREAM_NAME_ALREADY_IN_USE: "Stream name is already in use";
    MEDIASESSION_ID_ALREADY_IN_USE: "MediaSessionId is already in use";
    RESTRICTED_ACCESS: "Restricted access";
    NO_COMMON_CODECS: "No common codecs";
    TERMINATED_BY_KEEP_ALIVE: "Terminated by keep-alive";
    /** Set by the client when the browser failed (camera, WebRTC); see Stream.getErrorInfo(). */
    LOCAL_ERROR: "Local error";
}>;

export declare const STREAM_EVENT: "STREAM_EVENT";
export type StreamEventName = typeof STREAM_EVENT;

export declare const STREAM_EVENT_TYPE: Readonly<{
    AUDIO_MUTED: "audioMuted";
    AUDIO_UNMUTED: "audioUnmuted";
    VIDEO_MUTED: "videoMuted";
    VIDEO_UNMUTED: "videoUnmuted";
    DATA: "data";
    SNAPSHOT_COMPLETED: "snapshotCompleted";
    SNAPSHOT_FAILED: "snapshotFailed";
    RESIZE: "resize";
    NOT_ENOUGH_BANDWIDTH: "notEnoughBandwidth";
}>;
export type StreamEventType = (typeof STREAM_EVENT_TYPE)[keyof typeof STREAM_EVENT_TYPE];

/** Constraints `publish()` uses when the stream has none: 320x240 video and audio. */
export declare const DEFAULT_CONSTRAINTS: Readonly<MediaStreamConstraints>;

/**
 * Most a publisher sends (kbit/s) unless `constraints.video.maxBitrate` says otherwise: the
 * bandwidth a streamsnap server tells publishers by default (`webrtc.max_publish_bitrate`).
 */
export declare const DEFAULT_MAX_BITRATE_KBPS: 2500;

/** What the browser gives up first when it cannot keep up: frames, not pixels. */
export declare const DEFAULT_DEGRADATION_PREFERENCE: "maintain-resolution";

/** The values of RTCRtpSendParameters.degradationPreference. */
export type DegradationPreference = "maintain-framerate" | "maintain-resolution" | "balanced";

/**
 * getUserMedia constraints, with the WCS SDK's bitrate fields on `video` (kbit/s; taken out
 * before getUserMedia): `maxBitrate` caps the video encoder (default DEFAULT_MAX_BITRATE_KBPS),
 * and both are sent to the server in `publishStream`.
 */
export interface PublishConstraints extends MediaStreamConstraints {
    video?: boolean | (MediaTrackConstraints & { minBitrate?: number; maxBitrate?: number });
}

export declare const constants: Readonly<{
    SESSION_STATUS: typeof SESSION_STATUS;
    STREAM_STATUS: typeof STREAM_STATUS;
    STREAM_STATUS_INFO: typeof STREAM_STATUS_INFO;
    STREAM_EVENT: typeof STREAM_EVENT;
    STREAM_EVENT_TYPE: typeof STREAM_EVENT_TYPE;
}>;

export interface SessionOptions {
    /** Full ws:// or wss:// url; the path is sent as given. */
    urlServer: string;
    /** Token of an earlier session (sent in `connection`). */
    authToken?: string;
    /** Sent in `connection`; default false. */
    keepAlive?: boolean;
    /** Application key; default "defaultApp". */
    appKey?: string;
    /** Application fields sent in `connection`. */
    custom?: Record<string, unknown>;
    /** Milliseconds to wait for the socket to open; FAILED after that. */
    timeout?: number;
    /** Extra RTCPeerConnection settings for publishing (e.g. iceServers). */
    mediaOptions?: RTCConfiguration;
}

export interface StreamOptions {
    /** Stream name: the name to publish under, or the stream to snapshot. */
    name: string;
    /** Where the camera is shown: a <video> (used as is) or a container (a <video> is added). */
    display?: HTMLElement;
    /** Keep the camera running (and shown) after the stream ends, for a later publish. */
    cacheLocalResources?: boolean;
    /** Accepted for SDK compatibility; a published stream receives nothing. */
    receiveVideo?: boolean;
    /** Accepted for SDK compatibility; a published stream receives nothing. */
    receiveAudio?: boolean;
    /**
     * getUserMedia constraints; default DEFAULT_CONSTRAINTS (320x240, as the WCS SDK). Ask for the
     * camera's size, e.g. `{video: {width: {ideal: 1280}, height: {ideal: 720}}}`, to publish it.
     * Audio is dropped if the microphone fails.
     */
    constraints?: PublishConstraints;
    /**
     * What the browser gives up first when the link or the CPU cannot keep up; default
     * DEFAULT_DEGRADATION_PREFERENCE ("maintain-resolution": the picture keeps its size, every
     * encoding is sent unscaled). null leaves the browser's own choice (Chromium 156 over
     * loopback started a 1280x720 camera at 640x360 and reached 1280x720 after about 25 s).
     */
    degradationPreference?: DegradationPreference | null;
    /** Video codec to prefer ("VP8" or "H264"); default: the browser's order. */
    codec?: "VP8" | "H264" | string;
    /** contentHint for the video track ("motion", "detail", "text"). */
    videoContentHint?: string;
    /** Application fields sent in `publishStream`. */
    custom?: Record<string, unknown>;
}

/** A `notifyStreamEvent` from the server, as passed to the STREAM_EVENT callback. */
export interface StreamEvent {
    type: StreamEventType | string;
    mediaSessionId: string;
    name?: string;
    payload: {
        /** snapshotCompleted: base64 PNG, without a `data:` prefix. */
        snapshot?: string;
        /** snapshotFailed: why, e.g. "Stream not found". */
        info?: string;
        /** streamsnap extras on snapshotCompleted. */
        width?: number;
        height?: number;
        frameAgeMs?: number;
        [key: string]: unknown;
    };
    [key: string]: unknown;
}

/** The body of a `fail` message, passed to the SESSION_STATUS.WARN callback. */
export interface ServerFail {
    apiMethod?: string;
    id?: string;
    info?: string;
    status?: string;
    [key: string]: unknown;
}

/** How the socket closed, passed to the DISCONNECTED callback (a refusal's reason, e.g. "Restricted access"). */
export interface SessionClose {
    code: number;
    reason: string;
}

/** `getUserData` from the server, passed to the ESTABLISHED callback. */
export interface UserData {
    authToken?: string;
    sessionId?: string;
    serverVersion?: string;
    [key: string]: unknown;
}

export interface Session {
    /** Client-made session id. */
    id(): string;
    status(): SessionStatus;
    getServerUrl(): string;
    /** Auth token from `getUserData` (or the one given). */
    getAuthToken(): string | undefined;
    /** Streams of this session that are not released. */
    getStreams(): Stream[];
    getStream(id: string): Stream | undefined;
    on(event: typeof SESSION_STATUS.WARN, callback: (fail: ServerFail, session: Session) => void): Session;
    on(event: typeof SESSION_STATUS.ESTABLISHED, callback: (session: Session, userData: UserData) => void): Session;
    /** `close`: the socket's close code and reason (streamsnap's addition; the SDK passes the session only). */
    on(event: typeof SESSION_STATUS.DISCONNECTED, callback: (session: Session, close: SessionClose) => void): Session;
    on(event: SessionStatus, callback: (session: Session) => void): Session;
    /**
     * A NEW stream: `publish()` it, or `snapshot()` it to get a picture of the live stream
     * with that name.
     * @throws Error unless the session is ESTABLISHED
     */
    createStream(options: StreamOptions): Stream;
    /** Close the socket; DISCONNECTED follows and every stream becomes FAILED. */
    disconnect(): void;
}

export interface Stream {
    /** mediaSessionId. */
    id(): string;
    name(): string;
    status(): StreamStatus;
    /** Info of the last status, e.g. "Stream name is already in use". */
    getInfo(): string | undefined;
    /** Browser-side error text when getInfo() is "Local error". */
    getErrorInfo(): string | undefined;
    /** True once publish() was called. */
    published(): boolean;
    getAudioState(): unknown;
    getVideoState(): unknown;
    /** The peer connection while publishing, else null. */
    getRTCPeerConnection(): RTCPeerConnection | null;
    on(event: StreamEventName, callback: (event: StreamEvent) => void): Stream;
    on(event: StreamStatus, callback: (stream: Stream) => void): Stream;
    /**
     * Publish the camera: PENDING, then PUBLISHING (or FAILED).
     * @throws Error unless NEW
     */
    publish(): void;
    /**
     * Ask for a snapshot of the live stream named name(); the answer comes as STREAM_EVENT.
     * @throws Error unless NEW, PLAYING or PUBLISHING
     */
    snapshot(): void;
    /** Unpublish (publishing/pending) or release locally (NEW, which becomes FAILED). */
    stop(): void;
}

/**
 * Initialise the client; call before createSession.
 * @throws Error if the browser lacks WebSocket or WebRTC
 */
export declare function init(): void;
/**
 * Open a session (state PENDING, then CONNECTED and ESTABLISHED).
 * @throws SyntaxError if the browser refuses the url (not ws:// or wss://, malformed)
 */
export declare function createSession(options: SessionOptions): Session;
/** Sessions not yet DISCONNECTED or FAILED. */
export declare function getSessions(): Session[];
export declare function getSession(id: string): Session | undefined;
/** Stop a camera kept by cacheLocalResources for `display`; true if there was one. */
export declare function releaseLocalMedia(display: HTMLElement): boolean;

export interface StreamsnapApi {
    init: typeof init;
    createSession: typeof createSession;
    getSessions: typeof getSessions;
    getSession: typeof getSession;
    releaseLocalMedia: typeof releaseLocalMedia;
    constants: typeof constants;
}

export declare const Streamsnap: Readonly<StreamsnapApi>;
export default Streamsnap;
