"""Read the certificate a TLS listener serves for a name (SNI), without trusting it.

This is how Nebula sees the certificates Caddy manages: what a client is actually served,
whatever issued it and wherever Caddy keeps it.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.x509.oid import NameOID

from nebula.errors import ProviderError


@dataclass(frozen=True)
class ServedCertificate:
    issuer: str  # the issuing CA's common name (or organisation)
    names: tuple[str, ...]  # DNS names it covers
    not_before: datetime
    not_after: datetime


def served_certificate(
    address: str, port: int, host: str, timeout: float = 5.0
) -> ServedCertificate | None:
    """The certificate served at `address:port` for `host`; None when the listener has none
    for that name (the handshake is refused: not issued yet). `ProviderError` when nothing
    listens there."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((address, port), timeout=timeout) as sock,
            context.wrap_socket(sock, server_hostname=host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except ssl.SSLError:
        return None
    except OSError as exc:
        raise ProviderError(
            f"HTTPS listener {address}:{port}", f"cannot connect ({exc.strerror or exc})"
        ) from None
    return None if der is None else _parse(der)


def _parse(der: bytes) -> ServedCertificate:
    cert = x509.load_der_x509_certificate(der)
    issuer = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME) or (
        cert.issuer.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    )
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = tuple(san.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    return ServedCertificate(
        issuer=str(issuer[0].value) if issuer else cert.issuer.rfc4514_string(),
        names=names,
        not_before=cert.not_valid_before_utc.astimezone(UTC),
        not_after=cert.not_valid_after_utc.astimezone(UTC),
    )
