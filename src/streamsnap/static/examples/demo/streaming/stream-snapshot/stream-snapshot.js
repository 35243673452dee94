// Stream Snapshot example for streamsnap: publish the camera, then ask the server for a
// PNG of the frame it receives. Also takes snapshots of any other live stream, chosen from
// the server's list or by name.
//
// Statuses are shown in words a person reads; the protocol's own word (PUBLISHING, FAILED,
// SNAPSHOT_COMPLETE, ...) and the server's info text follow in small print for developers.

import Streamsnap, {
    SESSION_STATUS,
    STREAM_STATUS,
    STREAM_EVENT,
    STREAM_EVENT_TYPE,
} from "../../../../streamsnap.js";

/** How long to wait for the server's answer to a snapshot request. */
const SNAPSHOT_TIMEOUT_MS = 20000;
/** How long to wait for the socket to open. */
const CONNECT_TIMEOUT_MS = 10000;
/** How often the list of live streams is fetched again. */
const LIST_EVERY_MS = 3000;
/** The largest picture "Camera's own" asks for. */
const MAX_WIDTH = 1280;
const MAX_HEIGHT = 720;

/** What a person reads for each session status (the WCS word goes in small print). */
const SESSION_TEXT = {
    [SESSION_STATUS.PENDING]: "Connecting…",
    [SESSION_STATUS.CONNECTED]: "Connecting…",
    [SESSION_STATUS.ESTABLISHED]: "Connected",
    [SESSION_STATUS.DISCONNECTED]: "Disconnected",
    [SESSION_STATUS.FAILED]: "Not connected",
};
/** ... for each status of the published stream. */
const STREAM_TEXT = {
    [STREAM_STATUS.PENDING]: "Starting…",
    [STREAM_STATUS.PUBLISHING]: "Live",
    [STREAM_STATUS.UNPUBLISHED]: "Stopped",
    [STREAM_STATUS.FAILED]: "Not published",
};
/** ... for each state of a snapshot request. */
const SNAPSHOT_TEXT = {
    [STREAM_STATUS.PENDING]: "Taking a snapshot…",
    [STREAM_STATUS.SNAPSHOT_COMPLETE]: "Snapshot taken",
    [STREAM_STATUS.FAILED]: "No snapshot",
};
/**
 * The server's info texts explained. An info may carry a detail after ": " (e.g. "Failed by
 * error: too many snapshots in flight from this address"); the detail is kept.
 */
const INFO_TEXT = {
    "Stream name is already in use": "This name is already live on the server (published here or elsewhere): "
        + "choose another name.",
    "Stream not found": "No live stream has this name.",
    "Restricted access": "The server refused: it needs an access token that allows this (enter one above).",
    "No common codecs": "The server decodes none of the video codecs this browser offered: try another codec.",
    "Stopped by publisher stop": "You stopped publishing.",
    "Stopped by user": "You stopped publishing.",
    "Stopped by session disconnect": "The connection to the server closed.",
    "Stopped by rest /terminate": "The server's operator ended this stream.",
    "Stopped by server shutdown": "The server is shutting down.",
    "Failed by ICE error": "No media connection to the server could be made (ICE): a firewall may block UDP, "
        + "or the server announces an address this browser cannot reach.",
    "Failed by ICE timeout": "The media connection to the server did not start in time (ICE): a firewall may "
        + "block UDP, or the server announces an address this browser cannot reach.",
    "Failed by DTLS error": "The encrypted media connection to the server failed (DTLS).",
    "Failed by RTP activity": "The server stopped receiving video from this camera.",
    "Failed by error": "The server could not do it.",
    "Publish stream is not ready": "The stream has not sent a picture yet: try again in a moment.",
    "Stream has no video": "This stream carries no video.",
    "No decodable frame within timeout": "The server received no picture it could decode in time.",
    "Terminated by keep-alive": "The server stopped hearing from this page.",
    "Local error": "The browser could not publish.",
};
/** How each kind of source the server lists is named. */
const KIND_TEXT = { webrtc: "WebRTC", rtsp: "RTSP camera", rtmp: "RTMP encoder", whip: "WHIP" };

const $ = (id) => document.getElementById(id);
const el = {
    notice: $("notice"),
    localVideo: $("localVideo"),
    connectForm: $("connectForm"),
    url: $("url"),
    token: $("token"),
    connectBtn: $("connectBtn"),
    sessionStatus: $("sessionStatus"),
    sessionInfo: $("sessionInfo"),
    sessionWcs: $("sessionWcs"),
    cameraSize: $("cameraSize"),
    receivedSize: $("receivedSize"),
    streamName: $("streamName"),
    resolution: $("resolution"),
    codec: $("codec"),
    publishForm: $("publishForm"),
    publishBtn: $("publishBtn"),
    status: $("status"),
    statusWcs: $("statusWcs"),
    info: $("info"),
    snapshotBtn: $("snapshotBtn"),
    snapshotPanel: $("snapshotPanel"),
    snapshotImg: $("snapshotImg"),
    snapshotPlaceholder: $("snapshotPlaceholder"),
    snapshotLabel: $("snapshotLabel"),
    snapshotStatus: $("snapshotStatus"),
    snapshotWcs: $("snapshotWcs"),
    snapshotInfo: $("snapshotInfo"),
    pictureTools: $("pictureTools"),
    downloadBtn: $("downloadBtn"),
    copyUrlBtn: $("copyUrlBtn"),
    copyStatus: $("copyStatus"),
    imageUrl: $("imageUrl"),
    otherForm: $("otherForm"),
    otherStream: $("otherStream"),
    otherName: $("otherName"),
    otherListInfo: $("otherListInfo"),
    otherSnapshotBtn: $("otherSnapshotBtn"),
};

/** Current objects, for debugging from the console (and for tests). */
const state = { session: null, stream: null, liveStreams: null };
window.streamsnapPage = state;

/** Resolves with the established session; shared by everyone waiting for it. */
let sessionReady = null;
/** Only the latest snapshot request may update the page. */
let snapshotSeq = 0;
/** Only the latest listing may update the page. */
let listSeq = 0;

// ---------------------------------------------------------------------------
// Start-up
// ---------------------------------------------------------------------------

function randomChars(n) {
    const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
    const bytes = new Uint8Array(n);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => alphabet[b % alphabet.length]).join("");
}

/** ws(s)://<this page's host>:<port>/<8 random chars>: streamsnap serves ws on its http port. */
function defaultServerUrl() {
    const secure = location.protocol === "https:";
    if (!secure && location.protocol !== "http:") {
        return "ws://localhost:8080/" + randomChars(8); // opened from a file: guess a local server
    }
    const port = location.port || (secure ? "443" : "80");
    return `${secure ? "wss" : "ws"}://${location.hostname}:${port}/${randomChars(8)}`;
}

function initPage() {
    el.url.value = defaultServerUrl();
    el.streamName.value = "stream-" + randomChars(5);

    el.connectForm.addEventListener("submit", (e) => {
        e.preventDefault();
        connectClick();
    });
    el.publishForm.addEventListener("submit", (e) => e.preventDefault());
    el.otherForm.addEventListener("submit", (e) => {
        e.preventDefault();
        snapshotOfOther();
    });
    el.otherStream.addEventListener("change", () => {
        el.otherStream.dataset.chosen = "yes"; // the person chose: later listings keep the choice
        showOtherNameField();
    });
    el.localVideo.addEventListener("resize", showCameraSize);
    el.localVideo.addEventListener("emptied", showCameraSize);
    el.copyUrlBtn.addEventListener("click", copyImageUrl);
    el.imageUrl.addEventListener("focus", () => el.imageUrl.select());

    try {
        Streamsnap.init();
    } catch (e) {
        showNotice("Your browser does not support WebRTC, which this example needs.");
        el.publishBtn.disabled = true;
        el.connectBtn.disabled = true;
        el.otherSnapshotBtn.disabled = true;
        return;
    }
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
        // Browsers give camera access only to secure pages (https, or http on localhost).
        showNotice("The camera is available only on https pages or on localhost. "
            + "Snapshots of streams published elsewhere still work below.");
    }
    setSessionStatus("", "Connect, Publish or a snapshot opens the session.");
    onUnpublished();
    showLiveStreams([], "");
    refreshLiveStreams();
    setInterval(() => { if (!document.hidden) refreshLiveStreams(); }, LIST_EVERY_MS);
}

function showNotice(text) {
    el.notice.textContent = text;
    el.notice.hidden = false;
}

// ---------------------------------------------------------------------------
// Session
// ---------------------------------------------------------------------------

/** Why `url` cannot be a signaling url, or "" when it can. */
function urlProblem(url) {
    if (!url) return "Enter the server url, e.g. ws://host:8080/";
    let parsed;
    try {
        parsed = new URL(url);
    } catch (e) {
        return `"${url}" is not a url: the server url looks like ws://host:8080/ (wss:// with TLS)`;
    }
    if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
        return `The server url must start with ws:// or wss://, not ${parsed.protocol}//`;
    }
    return "";
}

function connectClick() {
    if (state.session) {
        state.session.disconnect(); // DISCONNECTED follows and resets the page
        return;
    }
    connect().catch(() => {}); // the session handlers show what went wrong
}

/** The established session, connecting first if there is none. */
function connect() {
    if (sessionReady) return sessionReady;
    const url = el.url.value.trim();
    const problem = urlProblem(url);
    if (problem) {
        setSessionStatus(SESSION_STATUS.FAILED, problem);
        el.url.focus();
        return Promise.reject(new Error(problem));
    }
    const token = el.token.value.trim();
    let refusal = "";
    let session = null;
    const ready = new Promise((resolve, reject) => {
        try {
            session = Streamsnap.createSession({
                urlServer: url,
                authToken: token || undefined,
                timeout: CONNECT_TIMEOUT_MS,
            });
        } catch (e) {
            reject(new Error(`Cannot use "${url}": ${e.message}`));
            return;
        }
        session
            .on(SESSION_STATUS.ESTABLISHED, () => {
                setSessionStatus(SESSION_STATUS.ESTABLISHED, url);
                resolve(session);
            })
            .on(SESSION_STATUS.WARN, (fail) => {
                // A refused `connection` comes as a fail, then the close: keep its reason.
                if (fail && fail.apiMethod === "connection" && fail.info) refusal = fail.info;
                else console.warn("server refused a request:", fail);
            })
            .on(SESSION_STATUS.DISCONNECTED, (s, close) => {
                const why = refusal || (close && close.reason) || "";
                reject(new Error(why || "Disconnected from " + url));
                sessionGone(session, SESSION_STATUS.DISCONNECTED, why);
            })
            .on(SESSION_STATUS.FAILED, () => {
                const why = refusal || "Cannot connect to " + url;
                reject(new Error(why));
                sessionGone(session, SESSION_STATUS.FAILED, why);
            });
    });
    sessionReady = ready;
    if (session) {
        state.session = session;
        lockConnection(true);
        setSessionStatus(SESSION_STATUS.PENDING, "Connecting to " + url);
    } else {
        // The browser refused the url outright: nothing to reuse, the fields stay editable.
        ready.catch((e) => {
            sessionReady = null;
            setSessionStatus(SESSION_STATUS.FAILED, e.message);
        });
    }
    return ready;
}

/** `session` ended: forget it (the next action opens a new one) and unlock the fields. */
function sessionGone(session, status, info) {
    if (state.session !== session) return; // an older session, already replaced
    sessionReady = null;
    state.session = null;
    state.stream = null;
    lockConnection(false);
    setSessionStatus(status, info);
    onUnpublished();
}

function lockConnection(locked) {
    el.url.disabled = locked;
    el.token.disabled = locked;
    el.connectBtn.textContent = locked ? "Disconnect" : "Connect";
    el.connectBtn.classList.toggle("stop", locked);
}

function setSessionStatus(status, info = "") {
    const tone = status === SESSION_STATUS.ESTABLISHED ? "ok"
        : status === SESSION_STATUS.FAILED || (status === SESSION_STATUS.DISCONNECTED && info) ? "bad" : "muted";
    // The session's info is a url or the page's own advice, except a refusal's reason from the server.
    const fromServer = status !== SESSION_STATUS.ESTABLISHED && status !== SESSION_STATUS.PENDING;
    showState(el.sessionStatus, el.sessionWcs, el.sessionInfo, {
        wcs: status, text: SESSION_TEXT[status] || "Not connected", info, explain: fromServer, tone,
    });
}

/**
 * Show a state: `text` (what a person reads) in `statusEl`, `info` explained in `infoEl`,
 * and the protocol's word with the raw info in small print (`wcsEl`) and in the tooltip.
 */
function showState(statusEl, wcsEl, infoEl, { wcs = "", text = "", info = "", explain = true, tone = "muted" }) {
    statusEl.textContent = text;
    statusEl.className = tone;
    statusEl.dataset.wcs = wcs;
    const raw = [wcs, explain ? info : ""].filter(Boolean).join(" · ");
    statusEl.title = raw ? "WCS: " + raw : "";
    wcsEl.textContent = raw;
    wcsEl.title = raw ? "What the WCS protocol says (for developers)" : "";
    infoEl.textContent = explain ? explainInfo(info) : info || "";
}

/** A server's info text in words a person reads; unknown texts are shown as they are. */
function explainInfo(info) {
    if (!info) return "";
    const cut = info.indexOf(": ");
    const head = cut >= 0 ? info.slice(0, cut) : info;
    const detail = cut >= 0 ? info.slice(cut + 2) : "";
    const text = INFO_TEXT[head];
    if (!text) return info;
    return detail ? `${text.replace(/\.$/, "")}: ${detail}.` : text;
}

// ---------------------------------------------------------------------------
// Publishing
// ---------------------------------------------------------------------------

async function publishClick() {
    const name = el.streamName.value.trim();
    if (!name) {
        el.streamName.focus();
        setStatus("", "Enter a stream name");
        return;
    }
    setButton(el.publishBtn, "Publish", null, true);
    el.streamName.disabled = true;
    el.codec.disabled = true;
    el.resolution.disabled = true;
    setStatus(STREAM_STATUS.PENDING, "Opening the camera and connecting to the server.");

    let session;
    try {
        session = await connect();
    } catch (e) {
        setStatus(STREAM_STATUS.FAILED, e.message);
        onUnpublished();
        return;
    }

    const stream = session.createStream({
        name,
        display: el.localVideo,
        cacheLocalResources: true, // keep the camera on after Stop, as the WCS example does
        receiveVideo: false,
        receiveAudio: false,
        codec: el.codec.value || undefined,
        constraints: { video: videoConstraints(el.resolution.value), audio: true },
        // The client's default, said here for readers of this example: a snapshot server is
        // there for the picture, so the browser drops frames rather than pixels.
        degradationPreference: "maintain-resolution",
    })
        .on(STREAM_STATUS.PUBLISHING, (s) => {
            setStatus(STREAM_STATUS.PUBLISHING, "The server receives your camera.");
            onPublishing(s);
        })
        .on(STREAM_STATUS.UNPUBLISHED, (s) => {
            setStatus(STREAM_STATUS.UNPUBLISHED, s.getInfo());
            onUnpublished();
        })
        .on(STREAM_STATUS.FAILED, (s) => {
            const detail = s.getErrorInfo && s.getErrorInfo();
            const info = [s.getInfo(), detail].filter(Boolean).join(": ");
            setStatus(STREAM_STATUS.FAILED, info);
            // Refused (name in use, access) or broken: nothing will be sent, so the camera goes off.
            Streamsnap.releaseLocalMedia(el.localVideo);
            onUnpublished();
        });
    state.stream = stream;
    stream.publish();
    // Stop is allowed while pending too (the camera prompt or the server may take a while).
    setButton(el.publishBtn, "Stop", () => stopClick(stream), false, true);
}

function stopClick(stream) {
    el.publishBtn.disabled = true;
    stream.stop();
}

function onPublishing(stream) {
    setButton(el.publishBtn, "Stop", () => stopClick(stream), false, true);
    el.snapshotBtn.onclick = () => snapshot(stream.name(), el.snapshotBtn);
    el.snapshotBtn.disabled = false;
    refreshLiveStreams(); // the new stream joins the list, and its received size shows
}

function onUnpublished() {
    setButton(el.publishBtn, "Publish", publishClick, false);
    el.streamName.disabled = false;
    el.codec.disabled = false;
    el.resolution.disabled = false;
    el.snapshotBtn.disabled = true;
    el.snapshotBtn.onclick = null;
    el.receivedSize.textContent = "";
}

/**
 * getUserMedia video constraints for a choice of the Resolution list: "" is the camera's own
 * picture up to 1280x720; "WxH" asks for that size (a camera that cannot gives its nearest).
 */
function videoConstraints(choice) {
    const [width, height] = choice ? choice.split("x").map(Number) : [MAX_WIDTH, MAX_HEIGHT];
    return { width: { ideal: width, max: width }, height: { ideal: height, max: height } };
}

/** The camera's picture size under the local video, as the browser delivers it. */
function showCameraSize() {
    const { videoWidth: width, videoHeight: height } = el.localVideo;
    el.cameraSize.textContent = el.localVideo.srcObject && width && height ? `· camera ${width}×${height}` : "";
}

function setButton(button, text, onclick, disabled, danger = false) {
    button.textContent = text;
    if (onclick) button.onclick = onclick;
    button.disabled = disabled;
    button.classList.toggle("stop", danger);
}

/** Show a stream status and its info text. */
function setStatus(status, info = "") {
    const tone = status === STREAM_STATUS.PUBLISHING ? "ok" : status === STREAM_STATUS.FAILED ? "bad" : "muted";
    // PENDING and PUBLISHING carry the page's own words; the others, the server's (or the page's) reason.
    const fromServer = status !== STREAM_STATUS.PENDING && status !== STREAM_STATUS.PUBLISHING;
    showState(el.status, el.statusWcs, el.info, {
        wcs: status, text: STREAM_TEXT[status] || status, info, explain: fromServer, tone,
    });
}

// ---------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------

function snapshotOfOther() {
    const name = el.otherStream.value || el.otherName.value.trim();
    if (!name) {
        showOtherNameField();
        el.otherName.focus();
        return;
    }
    snapshot(name, el.otherSnapshotBtn);
}

// ---------------------------------------------------------------------------
// Live streams (GET /streams), for "Snapshot of another stream"
// ---------------------------------------------------------------------------

/** The http(s) origin of the server the url field names (the page's own when it names none). */
function serverOrigin() {
    try {
        const server = new URL(el.url.value.trim());
        if (server.protocol === "ws:" || server.protocol === "wss:") {
            return `${server.protocol === "wss:" ? "https:" : "http:"}//${server.host}`;
        }
    } catch (e) { /* not a url yet: fall back to the page's origin */ }
    return location.protocol === "http:" || location.protocol === "https:" ? location.origin : "";
}

/** Fetch the live streams and offer them; on failure keep the typed name as the way in. */
async function refreshLiveStreams() {
    const seq = ++listSeq;
    const origin = serverOrigin();
    if (!origin) {
        showLiveStreams(null, "Type the name of a live stream.");
        return;
    }
    const token = el.token.value.trim();
    let problem = "";
    let streams = null;
    try {
        const response = await fetch(origin + "/streams", {
            headers: { Accept: "application/json", ...(token ? { Authorization: "Bearer " + token } : {}) },
            cache: "no-store",
        });
        if (response.status === 401 || response.status === 403) {
            problem = token ? "The server refused this token for its list of streams: type a name."
                : "The server lists its streams only with an access token (enter one above): type a name meanwhile.";
        } else if (!response.ok) {
            problem = `The server did not list its streams (HTTP ${response.status}): type a name.`;
        } else {
            streams = await response.json();
        }
    } catch (e) {
        problem = `Cannot list the live streams of ${origin}: type a name.`;
    }
    if (seq !== listSeq) return; // a newer listing was asked for meanwhile
    showLiveStreams(streams, problem);
}

/** One line of the list: name, kind, size. */
function describeStream(stream, own) {
    const parts = [stream.name];
    if (stream.kind) parts.push(KIND_TEXT[stream.kind] || stream.kind);
    if (stream.width && stream.height) parts.push(`${stream.width}×${stream.height}`);
    if (own) parts.push("yours");
    return parts.join(" · ");
}

/**
 * Offer `streams` (null: the list could not be had) in the select, with "Another name…" last
 * for free text. The choice survives each refresh while its stream is live.
 */
function showLiveStreams(streams, problem) {
    state.liveStreams = streams;
    const own = state.stream && state.stream.status() === STREAM_STATUS.PUBLISHING ? state.stream.name() : "";
    const live = (streams || []).slice().sort((a, b) => a.name.localeCompare(b.name));
    const options = live.map((s) => [s.name, describeStream(s, s.name === own)]);
    options.push(["", live.length ? "Another name…" : "No live stream listed: type a name"]);

    const select = el.otherStream;
    const signature = JSON.stringify(options);
    if (select.dataset.signature !== signature) {
        const previous = select.value;
        const chosen = select.dataset.chosen === "yes";
        select.replaceChildren(...options.map(([value, text]) => new Option(text, value)));
        select.dataset.signature = signature;
        const names = live.map((s) => s.name);
        if (chosen && (previous === "" || names.includes(previous))) {
            select.value = previous;
        } else {
            // Nothing chosen yet (or the choice ended): someone else's stream first, then any.
            select.value = names.find((n) => n !== own) || names[0] || "";
        }
        showOtherNameField();
    }
    el.otherListInfo.textContent = problem
        || (streams ? `${live.length} live stream${live.length === 1 ? "" : "s"} on the server.` : "");
    el.otherListInfo.className = problem ? "bad small" : "muted small";
    showReceivedSize(live.find((s) => s.name === own));
}

/** The free-text field is there when "Another name…" is chosen. */
function showOtherNameField() {
    el.otherName.hidden = el.otherStream.value !== "";
}

/** What the server receives of the published stream, under the local video. */
function showReceivedSize(stream) {
    if (!stream || !stream.width || !stream.height) {
        el.receivedSize.textContent = "";
        return;
    }
    // The average is noisy over the first frames (two arriving together read as hundreds a second).
    const settled = typeof stream.fps === "number" && stream.frames_received >= 30;
    const fps = settled ? ` at ${Math.round(stream.fps)} fps` : "";
    el.receivedSize.textContent = `· server receives ${stream.width}×${stream.height}${fps}`;
}

/**
 * Ask the server for a snapshot of stream `name`, as the WCS example does: through a new
 * stream object that is never published. `button` is disabled while the request runs.
 */
async function snapshot(name, button) {
    const seq = ++snapshotSeq;
    button.disabled = true;
    setSnapshotStatus(STREAM_STATUS.PENDING);

    let request = null;
    let timer = null;
    let done = false;
    const finish = (status, info, payload) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        // The request is a NEW stream: stop() releases it locally and sends nothing.
        if (request && request.status() === STREAM_STATUS.NEW) request.stop();
        restoreButton(button);
        if (seq !== snapshotSeq) return; // a newer request owns the page now
        if (payload) showPicture(name, payload);
        else clearPicture(name, info);
        setSnapshotStatus(status, info);
    };

    let session;
    try {
        session = await connect();
    } catch (e) {
        finish(STREAM_STATUS.FAILED, e.message);
        return;
    }
    try {
        request = session.createStream({ name }).on(STREAM_EVENT, (event) => {
            if (event.type === STREAM_EVENT_TYPE.SNAPSHOT_COMPLETED) {
                finish(STREAM_STATUS.SNAPSHOT_COMPLETE, "", event.payload);
            } else if (event.type === STREAM_EVENT_TYPE.SNAPSHOT_FAILED) {
                finish(STREAM_STATUS.FAILED, event.payload.info);
            }
        });
        // If the session drops, the request stream fails with it.
        request.on(STREAM_STATUS.FAILED, () => finish(STREAM_STATUS.FAILED, "Session closed before the snapshot arrived"));
        timer = setTimeout(() => finish(STREAM_STATUS.FAILED, "No answer from the server"), SNAPSHOT_TIMEOUT_MS);
        request.snapshot();
    } catch (e) {
        finish(STREAM_STATUS.FAILED, e.message);
    }
}

/** Show a snapshot and label it: stream, size, age of the frame, when it arrived. */
function showPicture(name, payload) {
    const src = "data:image/png;base64," + payload.snapshot;
    const taken = new Date();
    el.snapshotImg.src = src;
    el.snapshotImg.alt = "Snapshot of " + name;
    el.snapshotPanel.classList.remove("failed");
    el.snapshotPlaceholder.textContent = "";

    const parts = [name];
    const sizeKnown = payload.width && payload.height;
    parts.push(sizeKnown ? `${payload.width}×${payload.height}` : "…");
    if (typeof payload.frameAgeMs === "number") parts.push(`frame age ${Math.round(payload.frameAgeMs)} ms`);
    parts.push(taken.toLocaleTimeString());
    el.snapshotLabel.textContent = parts.join(" · ");
    if (!sizeKnown) {
        // A WCS server sends no size: read it off the picture once it is decoded.
        el.snapshotImg.addEventListener("load", () => {
            parts[1] = `${el.snapshotImg.naturalWidth}×${el.snapshotImg.naturalHeight}`;
            el.snapshotLabel.textContent = parts.join(" · ");
        }, { once: true });
    }

    el.downloadBtn.href = src;
    el.downloadBtn.download = `${name.replace(/[^\w.-]+/g, "_")}-${fileTime(taken)}.png`;
    el.imageUrl.value = imageUrlOf(name);
    el.copyStatus.textContent = "";
    el.pictureTools.hidden = false;
}

/** A failed snapshot: take the previous picture down so it cannot pass for this stream's. */
function clearPicture(name, info) {
    el.snapshotImg.removeAttribute("src");
    el.snapshotImg.alt = "";
    el.snapshotPanel.classList.add("failed");
    el.snapshotPlaceholder.textContent = `No picture of ${name}: ${explainInfo(info) || "the snapshot failed."}`;
    el.snapshotLabel.textContent = `${name} · snapshot failed · ${new Date().toLocaleTimeString()}`;
    el.pictureTools.hidden = true;
}

function fileTime(date) {
    const pad = (n) => String(n).padStart(2, "0");
    return `${date.getFullYear()}${pad(date.getMonth() + 1)}${pad(date.getDate())}-`
        + `${pad(date.getHours())}${pad(date.getMinutes())}${pad(date.getSeconds())}`;
}

/**
 * The server's image url of stream `name` (any HTTP client can fetch it), on the host of the
 * signaling url; with the page's token as `access_token`, since an <img> cannot send a header.
 */
function imageUrlOf(name) {
    const server = new URL(el.url.value.trim());
    const origin = `${server.protocol === "wss:" ? "https:" : "http:"}//${server.host}`;
    const token = el.token.value.trim();
    const query = token ? "?access_token=" + encodeURIComponent(token) : "";
    return `${origin}/streams/${encodeURIComponent(name)}/snapshot.png${query}`;
}

async function copyImageUrl() {
    const url = el.imageUrl.value;
    try {
        await navigator.clipboard.writeText(url);
        el.copyStatus.textContent = "Copied";
    } catch (e) {
        // No clipboard access (an http page on another host, or permission refused): select it instead.
        el.imageUrl.focus();
        el.imageUrl.select();
        el.copyStatus.textContent = "Press Ctrl+C to copy";
    }
}

/** Re-enable a snapshot button if it still has something to do. */
function restoreButton(button) {
    if (button === el.snapshotBtn) {
        const s = state.stream;
        button.disabled = !(s && s.status() === STREAM_STATUS.PUBLISHING);
    } else {
        button.disabled = false;
    }
}

function setSnapshotStatus(status, info = "") {
    const tone = status === STREAM_STATUS.FAILED ? "bad" : status === STREAM_STATUS.SNAPSHOT_COMPLETE ? "ok" : "muted";
    // While waiting there is no protocol word: the request is a NEW stream that is never published.
    showState(el.snapshotStatus, el.snapshotWcs, el.snapshotInfo, {
        wcs: status === STREAM_STATUS.PENDING ? "" : status, text: SNAPSHOT_TEXT[status] || status, info, tone,
    });
}

initPage();
