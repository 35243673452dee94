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

const $ = (id) => document.getElementById(id);
const el = {
    notice: $("notice"),
    localVideo: $("localVideo"),
    url: $("url"),
    streamName: $("streamName"),
    codec: $("codec"),
    publishForm: $("publishForm"),
    publishBtn: $("publishBtn"),
    status: $("status"),
    info: $("info"),
    snapshotBtn: $("snapshotBtn"),
    snapshotImg: $("snapshotImg"),
    snapshotSize: $("snapshotSize"),
    snapshotStatus: $("snapshotStatus"),
    snapshotInfo: $("snapshotInfo"),
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

    el.publishForm.addEventListener("submit", (e) => e.preventDefault());
    el.otherForm.addEventListener("submit", (e) => {
        e.preventDefault();
        snapshotOfOther();
    });
    el.snapshotImg.addEventListener("load", () => {
        el.snapshotSize.textContent = `${el.snapshotImg.naturalWidth}×${el.snapshotImg.naturalHeight}`;
    });

    try {
        Streamsnap.init();
    } catch (e) {
        showNotice("Your browser does not support WebRTC, which this example needs.");
        el.publishBtn.disabled = true;
        el.otherSnapshotBtn.disabled = true;
        return;
    }
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
        // Browsers give camera access only to secure pages (https, or http on localhost).
        showNotice("The camera is available only on https pages or on localhost. "
            + "Snapshots of streams published elsewhere still work below.");
    }
    onUnpublished();
}

function showNotice(text) {
    el.notice.textContent = text;
    el.notice.hidden = false;
}

// ---------------------------------------------------------------------------
// Session
// ---------------------------------------------------------------------------

/** The established session, connecting first if there is none. */
function connect() {
    if (sessionReady) return sessionReady;
    const url = el.url.value.trim();
    el.url.disabled = true;
    sessionReady = new Promise((resolve, reject) => {
        let session;
        try {
            session = Streamsnap.createSession({ urlServer: url });
        } catch (e) {
            reject(e);
            return;
        }
        state.session = session;
        session
            .on(SESSION_STATUS.ESTABLISHED, (s) => resolve(s))
            .on(SESSION_STATUS.DISCONNECTED, () => {
                sessionGone(SESSION_STATUS.DISCONNECTED);
                reject(new Error("Disconnected from " + url));
            })
            .on(SESSION_STATUS.FAILED, () => {
                sessionGone(SESSION_STATUS.FAILED, "Cannot connect to " + url);
                reject(new Error("Cannot connect to " + url));
            })
            .on(SESSION_STATUS.WARN, (fail) => console.warn("server refused a request:", fail));
    });
    // Once settled badly, the next action starts a new session.
    sessionReady.catch(() => {});
    return sessionReady;
}

function sessionGone(status, info) {
    sessionReady = null;
    state.session = null;
    state.stream = null;
    el.url.disabled = false;
    setStatus(status, info);
    onUnpublished();
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

/** Show a connection or stream status and its info text. */
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
    const finish = (status, info, png) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        // The request is a NEW stream: stop() releases it locally and sends nothing.
        if (request && request.status() === STREAM_STATUS.NEW) request.stop();
        restoreButton(button);
        if (seq !== snapshotSeq) return; // a newer request owns the page now
        if (png) {
            el.snapshotImg.src = "data:image/png;base64," + png;
            el.snapshotImg.alt = "Snapshot of " + name;
        }
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
                finish(STREAM_STATUS.SNAPSHOT_COMPLETE, "", event.payload.snapshot);
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
