"""TLS for https + wss (a context from the operator's files, or a throwaway self-signed certificate), and the
client context of rtsps:// camera pulls."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import tempfile
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SELF_SIGNED_DAYS = 30


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


def server_context_from_files(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server TLS context from PEM files (raises OSError/ssl.SSLError when they are unusable)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


def server_context(certificate: Certificate) -> ssl.SSLContext:
    """A server TLS context from an in-memory certificate (ssl only loads files: a private temp dir)."""
    with tempfile.TemporaryDirectory(prefix="streamsnap-tls-") as folder:
        cert_file, key_file = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
        with open(cert_file, "wb") as out:
            out.write(certificate.cert_pem)
        with open(os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as out:
            out.write(certificate.key_pem)
        return server_context_from_files(cert_file, key_file)
