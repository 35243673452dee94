"""`streamsnap serve` with the HTTP-side flags, in a subprocess as a user runs it."""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from streamsnap.access import TokenPolicy
from tests.harness import free_port, serve_command

pytestmark = pytest.mark.integration


def test_serve_with_self_signed_tls_rest_port_and_json_logs() -> None:
    port, tls_port, rest_port = free_port(), free_port(), free_port()
    proc = subprocess.Popen(
        serve_command(port, "--tls-self-signed", "--tls-port", str(tls_port), "--rest-port", str(rest_port),
                      "--log-format", "json"),
        env=os.environ | {"STREAMSNAP_ICE_ADDRESSES": "127.0.0.1"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [json.loads(proc.stdout.readline()) for _ in range(5)]  # the banner too is JSON lines
        assert f"http on http://127.0.0.1:{port}/" in lines[0]["message"], lines
        urls = {line.get("listener"): line.get("url") for line in lines}
        assert urls["https"] == f"https://127.0.0.1:{tls_port}/"
        assert urls["rest"] == f"http://127.0.0.1:{rest_port}/rest-api/openapi.json"
        printed = next(line for line in lines if "SHA-256" in line["message"])["sha256"]

        served = ssl.DER_cert_to_PEM_cert(ssl.PEM_cert_to_DER_cert(
            ssl.get_server_certificate(("127.0.0.1", tls_port), timeout=10)))
        digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(served)).hexdigest().upper()
        assert printed == ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))

        trusting = ssl.create_default_context(cadata=served)
        with urllib.request.urlopen(f"https://127.0.0.1:{tls_port}/healthz", context=trusting, timeout=10) as answer:
            assert json.load(answer) == {"status": "ok"}
        request = urllib.request.Request(f"http://127.0.0.1:{rest_port}/rest-api/stream/find_all", method="POST")
        with pytest.raises(urllib.error.HTTPError) as none_live:
            urllib.request.urlopen(request, timeout=10)
        assert none_live.value.code == 404
        assert json.load(none_live.value)["error"] == "Stream not found"
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 0, stderr
    log_lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert log_lines, stderr
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in log_lines)


def test_bad_settings_stop_serve_with_the_setting_named() -> None:
    result = subprocess.run([sys.executable, "-m", "streamsnap", "serve", "--rest-port", "99999"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "rest_port" in result.stderr
    result = subprocess.run([sys.executable, "-m", "streamsnap", "serve", "--tls-cert", "/nonexistent.pem",
                             "--tls-key", "/nonexistent.key", "--port", str(free_port()),
                             "--tls-port", str(free_port())],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "/nonexistent.pem" in result.stderr


def test_tokens_in_urls_stay_out_of_the_logs() -> None:
    secret = "log-secret-" + "0123456789abcdef" * 3
    token = TokenPolicy(secret).issue(["snapshot"])
    port = free_port()
    proc = subprocess.Popen(
        serve_command(port),
        env=os.environ | {"STREAMSNAP_ICE_ADDRESSES": "127.0.0.1", "STREAMSNAP_AUTH_SECRET": secret},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # listening
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/streams?access_token={token}", timeout=10) as answer:
            assert json.load(answer) == []
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/streams", timeout=10)
        assert refused.value.code == 401
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=15)
    assert "GET /streams?access_token=<hidden>" in stderr, stderr  # the access log has the request
    assert token not in stderr
