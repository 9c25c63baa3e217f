"""E-mail over verified TLS (issue #14.7): STARTTLS refuses a certificate it cannot verify
unless ZXS_SMTP_VERIFY=false, and accepts one signed by a CA it trusts (SSL_CERT_FILE)."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sandbox.server import free_port
from workers.alerts import send_email
from workers.settings import Settings


def self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Controller, list[str], Path]]:
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    received: list[str] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope.content.decode())
            return "250 OK"

    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=context,
        require_starttls=True,
    )
    controller.start()
    yield controller, received, cert
    controller.stop()


def settings(port: int, **values: Any) -> Settings:
    return Settings(
        _env_file=None,
        zxs_smtp_host="127.0.0.1",
        zxs_smtp_port=port,
        zxs_alert_email_to="ops@example.test",
        **values,
    )


def test_an_unverifiable_certificate_is_refused_by_default(server: Any) -> None:
    controller, received, _ = server
    with pytest.raises(ssl.SSLCertVerificationError):
        send_email(settings(controller.port), "subject", "body")
    assert received == []


def test_verification_can_be_turned_off_for_a_lab(server: Any) -> None:
    controller, received, _ = server
    send_email(settings(controller.port, zxs_smtp_verify=False), "subject", "body")
    assert len(received) == 1


def test_a_certificate_from_a_trusted_ca_is_accepted(
    server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    controller, received, cert = server
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    send_email(settings(controller.port), "subject", "body")
    assert len(received) == 1
