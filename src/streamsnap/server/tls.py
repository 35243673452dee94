"""TLS for https + wss (a context from the operator's files, or a throwaway self-signed certificate), and the
client context of rtsps:// camera pulls.

The operator's files are checked here before the ssl module reads them, so that a mistake is one line
naming the file (the ssl module says "[SSL] PEM lib" whichever file it is). A self-signed
certificate is written to a file for clients to trust (`--cacert`); its key never is.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import socket
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SELF_SIGNED_DAYS = 30
MAX_PEM_BYTES = 1 << 20
"The most of a certificate (chain) or key file read to check it (a chain of a few certificates is ~10 KiB)."


@dataclass(frozen=True)
class Certificate:
    """A certificate and its private key, PEM-encoded."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def fingerprint(self) -> str:
        """SHA-256 fingerprint, as browsers show it (AA:BB:…)."""
        digest = x509.load_pem_x509_certificate(self.cert_pem).fingerprint(hashes.SHA256())
        return ":".join(f"{byte:02X}" for byte in digest)


def self_signed_certificate(names: list[str], addresses: list[str]) -> Certificate:
    """A new P-256 key and a certificate for `names` (DNS) and `addresses` (IP), valid for a few days."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else "streamsnap")])
    alternatives: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
    alternatives += [x509.IPAddress(ipaddress.ip_address(address)) for address in addresses]
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        # A leaf: it cannot sign other certificates, so trusting it (--cacert) trusts only this server.
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return Certificate(certificate.public_bytes(serialization.Encoding.PEM), key_pem)


def local_certificate() -> Certificate:
    """A self-signed certificate for this machine: localhost, its host name and every IPv4 address."""
    from streamsnap.media.webrtc import local_ipv4_addresses

    names = list(dict.fromkeys(["localhost", socket.gethostname()]))
    return self_signed_certificate(names, list(dict.fromkeys(["127.0.0.1", *local_ipv4_addresses()])))


def camera_context(ca_file: str, verify: bool) -> ssl.SSLContext:
    """The client context of rtsps:// camera pulls: certificates verified against `ca_file` (a PEM bundle) or,
    when empty, the system's authorities; with `verify` false, any certificate is taken (the camera's own
    opt-out). Raises OSError/ssl.SSLError when `ca_file` is unusable."""
    if not verify:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file or None)


def self_signed_path(configured: str, port: int) -> Path:
    """Where the self-signed certificate is written: `configured`, else one file per port in the temp folder."""
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / f"streamsnap-self-signed-{port}.pem"


def write_certificate(certificate: Certificate, path: Path) -> None:
    """Write the certificate (never the key) to `path` for clients to trust; raises OSError.

    Written beside it and renamed over it, so that a reader never sees half a file and a link planted
    at `path` (in a shared temp folder) is replaced, not followed.
    """
    folder = path.parent if str(path.parent) else Path(".")
    handle, scratch = tempfile.mkstemp(prefix=".streamsnap-", suffix=".pem", dir=folder)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(certificate.cert_pem)
        os.chmod(scratch, 0o644)  # a certificate is public: any client on the machine may read it
        os.replace(scratch, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(scratch)
        raise


def forget_certificate(certificate: Certificate, path: Path) -> None:
    """Remove the file `write_certificate` wrote, unless it holds another certificate by now (another server's)."""
    with contextlib.suppress(OSError):
        if path.read_bytes() == certificate.cert_pem:
            path.unlink()


class TlsFilesError(ValueError):
    """The certificate or key file cannot be used; the message names the file and says why, in one line."""


def server_context_from_files(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server TLS context from PEM files; raises `TlsFilesError` naming the file that is wrong."""
    certificate = _read(cert_file, "tls.cert")
    key = _read(key_file, "tls.key")
    try:
        certificates = x509.load_pem_x509_certificates(certificate)
    except ValueError:
        certificates = []
    if not certificates:
        hint = " (it holds a private key: are tls.cert and tls.key swapped?)" if b"PRIVATE KEY-----" in certificate \
            else ""
        raise TlsFilesError(f"tls.cert {cert_file}: no PEM certificate in it{hint}")
    try:
        private_key = serialization.load_pem_private_key(key, password=None)
    except TypeError:
        raise TlsFilesError(f"tls.key {key_file}: the private key is encrypted (a key without a "
                            "passphrase is needed)") from None
    except (ValueError, UnsupportedAlgorithm):
        hint = " (it holds a certificate: are tls.cert and tls.key swapped?)" if b"CERTIFICATE-----" in key else ""
        raise TlsFilesError(f"tls.key {key_file}: no PEM private key in it{hint}") from None
    if _public_bytes(private_key.public_key()) != _public_bytes(certificates[0].public_key()):
        raise TlsFilesError(f"tls.key {key_file} is not the key of the certificate in tls.cert {cert_file}")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert_file, key_file)
    except ssl.SSLError as exc:  # checked above; what is left is the ssl module's to say
        raise TlsFilesError(f"tls.cert {cert_file} / tls.key {key_file}: {exc.reason or exc}") from None
    return context


def _read(path: str, setting: str) -> bytes:
    try:
        with open(path, "rb") as source:
            return source.read(MAX_PEM_BYTES + 1)[:MAX_PEM_BYTES]
    except OSError as exc:
        raise TlsFilesError(f"{setting} {path}: {exc.strerror or exc}") from None


def _public_bytes(key: Any) -> bytes:
    data: bytes = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return data


def server_context(certificate: Certificate) -> ssl.SSLContext:
    """A server TLS context from an in-memory certificate (ssl only loads files: a private temp dir)."""
    with tempfile.TemporaryDirectory(prefix="streamsnap-tls-") as folder:
        cert_file, key_file = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
        with open(cert_file, "wb") as out:
            out.write(certificate.cert_pem)
        with open(os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as out:
            out.write(certificate.key_pem)
        return server_context_from_files(cert_file, key_file)
