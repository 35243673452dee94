// Stream Snapshot example for streamsnap: publish the camera, then ask the server for a
// PNG of the frame it receives. Also takes snapshots of any other live stream by name.

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
    streamName: $("streamName"),
    codec: $("codec"),
    publishForm: $("publishForm"),
    publishBtn: $("publishBtn"),
    status: $("status"),
    info: $("info"),
    snapshotBtn: $("snapshotBtn"),
    snapshotPanel: $("snapshotPanel"),
    snapshotImg: $("snapshotImg"),
    snapshotPlaceholder: $("snapshotPlaceholder"),
    snapshotLabel: $("snapshotLabel"),
    snapshotStatus: $("snapshotStatus"),
    snapshotInfo: $("snapshotInfo"),
    pictureTools: $("pictureTools"),
    downloadBtn: $("downloadBtn"),
    copyUrlBtn: $("copyUrlBtn"),
    copyStatus: $("copyStatus"),
    imageUrl: $("imageUrl"),
    otherForm: $("otherForm"),
    otherName: $("otherName"),
    otherSnapshotBtn: $("otherSnapshotBtn"),
};

/** Current objects, for debugging from the console (and for tests). */
const state = { session: null, stream: null };
window.streamsnapPage = state;

/** Resolves with the established session; shared by everyone waiting for it. */
let sessionReady = null;
/** Only the latest snapshot request may update the page. */
let snapshotSeq = 0;

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
    setSessionStatus("", "Not connected: Connect, Publish or a snapshot opens the session.");
    onUnpublished();
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
    el.sessionStatus.textContent = status;
    el.sessionStatus.className = status === SESSION_STATUS.ESTABLISHED ? "ok"
        : status === SESSION_STATUS.FAILED || (status === SESSION_STATUS.DISCONNECTED && info) ? "bad" : "muted";
    el.sessionInfo.textContent = info || "";
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
    setStatus(STREAM_STATUS.PENDING);

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
    })
        .on(STREAM_STATUS.PUBLISHING, (s) => {
            setStatus(STREAM_STATUS.PUBLISHING);
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
}

function onUnpublished() {
    setButton(el.publishBtn, "Publish", publishClick, false);
    el.streamName.disabled = false;
    el.codec.disabled = false;
    el.snapshotBtn.disabled = true;
    el.snapshotBtn.onclick = null;
}

function setButton(button, text, onclick, disabled, danger = false) {
    button.textContent = text;
    if (onclick) button.onclick = onclick;
    button.disabled = disabled;
    button.classList.toggle("stop", danger);
}

/** Show a stream status and its info text. */
function setStatus(status, info = "") {
    el.status.textContent = status;
    el.status.className = status === STREAM_STATUS.PUBLISHING ? "ok"
        : status === STREAM_STATUS.FAILED ? "bad" : "muted";
    el.info.textContent = info || "";
}

// ---------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------

function snapshotOfOther() {
    const name = el.otherName.value.trim();
    if (!name) {
        el.otherName.focus();
        return;
    }
    snapshot(name, el.otherSnapshotBtn);
}

/**
 * Ask the server for a snapshot of stream `name`, as the WCS example does: through a new
 * stream object that is never published. `button` is disabled while the request runs.
 */
async function snapshot(name, button) {
    const seq = ++snapshotSeq;
    button.disabled = true;
    setSnapshotStatus("processing...");

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
    el.snapshotPlaceholder.textContent = `No picture of ${name}: ${info || "the snapshot failed"}`;
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
    el.snapshotStatus.textContent = status;
    el.snapshotStatus.className = status === STREAM_STATUS.FAILED ? "bad"
        : status === STREAM_STATUS.SNAPSHOT_COMPLETE ? "ok" : "muted";
    el.snapshotInfo.textContent = info || "";
}

initPage();
