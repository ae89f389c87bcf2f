"""HTTPS and WSS served by the node itself: the certificate and key of the settings,
checked before anything starts.

`server_ssl_context(settings)` is the one door: `None` when TLS is off, an
`ssl.SSLContext` when `DRAGOMAN_TLS_CERT` and `DRAGOMAN_TLS_KEY` name a usable pair, a
`TlsError` naming the setting and the problem otherwise. Each problem is found by
reading the files with `cryptography` first, because OpenSSL's own errors ("PEM lib")
do not tell a person which file is wrong, or why.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from signaling.settings import Settings

CERT_SETTING = "DRAGOMAN_TLS_CERT (--tls-cert)"
KEY_SETTING = "DRAGOMAN_TLS_KEY (--tls-key)"


class TlsError(Exception):
    """A certificate or key the node cannot serve with; the message names the setting."""


def _read(path: Path, setting: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TlsError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from None


def _certificates(path: Path) -> list[x509.Certificate]:
    data = _read(path, CERT_SETTING)
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        certificates = []
    if not certificates:
        raise TlsError(
            f"{CERT_SETTING}: {path} is not a PEM certificate "
            "(a text file with -----BEGIN CERTIFICATE-----)"
        )
    return certificates


def _private_key(path: Path) -> PrivateKeyTypes:
    data = _read(path, KEY_SETTING)
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise TlsError(
            f"{KEY_SETTING}: {path} is protected by a passphrase; "
            "give the node an unencrypted key file readable only by its user"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise TlsError(
            f"{KEY_SETTING}: {path} is not a PEM private key "
            "(a text file with -----BEGIN PRIVATE KEY-----)"
        ) from None


def _public_bytes(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def server_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of the node's listening socket, or `None` when TLS is off."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    cert_path, key_path = settings.tls_cert, settings.tls_key
    leaf = _certificates(cert_path)[0]
    key = _private_key(key_path)
    # The first certificate of the file is the one the server presents: it must be the key's.
    if _public_bytes(leaf.public_key()) != _public_bytes(key.public_key()):
        raise TlsError(
            f"{KEY_SETTING}: the key in {key_path} does not match the certificate in "
            f"{cert_path} ({CERT_SETTING}); give the key the certificate was issued for"
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_path, key_path)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(
            f"{CERT_SETTING}, {KEY_SETTING}: the certificate and key cannot be used: {exc}"
        ) from None
    return context
