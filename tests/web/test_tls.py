"""HTTPS and WSS served by the node itself: a usable certificate and key, or a refusal
that names the setting and the problem before anything starts."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp
import pytest

from signaling.settings import SettingsError, load_settings
from signaling.tls import TlsError, server_ssl_context
from tests.support.certificates import key_pem, new_key, self_signed_pem, write_self_signed
from tests.support.server import StartServeProcess, StartServer, dragoman, free_port


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    return write_self_signed(tmp_path / "tls")


def tls_problem(tmp_path: Path, cert: Path, key: Path) -> str:
    settings = load_settings(data_dir=tmp_path, tls_cert=cert, tls_key=key)
    with pytest.raises(TlsError) as refused:
        server_ssl_context(settings)
    return str(refused.value)


def test_without_a_certificate_the_node_serves_plain_http() -> None:
    settings = load_settings()
    assert server_ssl_context(settings) is None
    assert settings.public_url == "http://127.0.0.1:8080"


def test_a_matching_pair_gives_a_server_context_and_an_https_public_url(
    pair: tuple[Path, Path],
) -> None:
    cert, key = pair
    settings = load_settings(tls_cert=cert, tls_key=key, port=8443)
    context = server_ssl_context(settings)
    assert isinstance(context, ssl.SSLContext)
    assert settings.public_url == "https://127.0.0.1:8443"
    # A public URL given by the operator is kept as it is.
    given = load_settings(tls_cert=cert, tls_key=key, public_url="https://events.example.org")
    assert given.public_url == "https://events.example.org"


@pytest.mark.parametrize(
    ("given", "missing"), [("tls_cert", "DRAGOMAN_TLS_KEY"), ("tls_key", "DRAGOMAN_TLS_CERT")]
)
def test_half_a_pair_is_refused_naming_the_missing_setting(
    pair: tuple[Path, Path], given: str, missing: str
) -> None:
    path = pair[0] if given == "tls_cert" else pair[1]
    with pytest.raises(SettingsError) as refused:
        load_settings(**{given: path})
    message = str(refused.value)
    assert f"DRAGOMAN_{given.upper()}" in message
    assert f"but {missing}" in message
    assert "give both the certificate and its private key, or neither" in message


def test_a_missing_certificate_file_is_named(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    message = tls_problem(tmp_path, tmp_path / "nowhere.pem", pair[1])
    assert message.startswith("DRAGOMAN_TLS_CERT (--tls-cert): cannot read ")
    assert "nowhere.pem: No such file or directory" in message


def test_an_unreadable_key_file_is_named(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    # A directory cannot be read as a file whoever runs the test (root reads any file).
    message = tls_problem(tmp_path, pair[0], tmp_path)
    assert message.startswith("DRAGOMAN_TLS_KEY (--tls-key): cannot read ")
    assert "Is a directory" in message


def test_garbage_instead_of_a_certificate(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    message = tls_problem(tmp_path, garbage, pair[1])
    assert message == (
        f"DRAGOMAN_TLS_CERT (--tls-cert): {garbage} is not a PEM certificate "
        "(a text file with -----BEGIN CERTIFICATE-----)"
    )


def test_a_key_given_as_the_certificate(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    key = pair[1]
    message = tls_problem(tmp_path, key, key)
    assert message.startswith("DRAGOMAN_TLS_CERT (--tls-cert):")
    assert "is not a PEM certificate" in message


def test_garbage_instead_of_a_key(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    cert, _ = pair
    message = tls_problem(tmp_path, cert, cert)
    assert message == (
        f"DRAGOMAN_TLS_KEY (--tls-key): {cert} is not a PEM private key "
        "(a text file with -----BEGIN PRIVATE KEY-----)"
    )


def test_a_key_with_a_passphrase_is_refused_saying_so(
    tmp_path: Path, pair: tuple[Path, Path]
) -> None:
    from cryptography.hazmat.primitives import serialization

    locked = tmp_path / "locked.pem"
    locked.write_bytes(
        new_key().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    message = tls_problem(tmp_path, pair[0], locked)
    assert message.startswith("DRAGOMAN_TLS_KEY (--tls-key):")
    assert "protected by a passphrase" in message


def test_a_key_that_does_not_match_the_certificate(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_bytes(self_signed_pem(new_key()))
    other = tmp_path / "other-key.pem"
    other.write_bytes(key_pem(new_key()))
    message = tls_problem(tmp_path, cert, other)
    assert message == (
        f"DRAGOMAN_TLS_KEY (--tls-key): the key in {other} does not match the certificate "
        f"in {cert} (DRAGOMAN_TLS_CERT (--tls-cert)); give the key the certificate was "
        "issued for"
    )


async def test_serve_refuses_a_bad_pair_with_status_1_and_starts_nothing(
    tmp_path: Path, pair: tuple[Path, Path]
) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_bytes(self_signed_pem(new_key()))
    port = free_port()
    result = await dragoman(
        "serve", "--port", str(port), "--data-dir", tmp_path / "data",
        "--tls-cert", cert, "--tls-key", pair[1],
    )  # fmt: skip
    assert result.status == 1
    assert result.stderr.startswith("dragoman serve: DRAGOMAN_TLS_KEY (--tls-key): the key in")
    assert "does not match the certificate" in result.stderr
    assert "Dragoman is serving" not in result.stdout
    assert not (tmp_path / "data").exists()


async def test_serve_refuses_half_a_pair_with_status_1(
    tmp_path: Path, pair: tuple[Path, Path]
) -> None:
    result = await dragoman(
        "serve", "--port", str(free_port()), "--data-dir", tmp_path / "data", "--tls-cert", pair[0]
    )
    assert result.status == 1
    assert "DRAGOMAN_TLS_KEY (--tls-key) is not" in result.stderr
    assert result.stdout == ""


async def test_serve_answers_https_with_the_security_headers(
    serve_process: StartServeProcess, tmp_path: Path, pair: tuple[Path, Path]
) -> None:
    cert, key = pair
    node = await serve_process(tmp_path / "data", "--tls-cert", str(cert), "--tls-key", str(key))
    assert node.url.startswith("https://")
    assert f"Open {node.url}/ in a browser.\n" in node.stdout_lines
    trusted = ssl.create_default_context(cafile=str(cert))
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{node.url}/", ssl=trusted) as response:
            assert response.status == 200
            assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
            assert response.headers["Strict-Transport-Security"].startswith("max-age=")
            assert response.headers["Referrer-Policy"] == "no-referrer"
        # Plain HTTP on the TLS port gets nowhere.
        with pytest.raises(aiohttp.ClientError):
            async with http.get(node.url.replace("https:", "http:") + "/healthz") as response:
                await response.read()


async def test_serve_takes_the_pair_from_the_environment(
    serve_process: StartServeProcess, tmp_path: Path, pair: tuple[Path, Path]
) -> None:
    from tests.support.server import dragoman_env

    env = dragoman_env(DRAGOMAN_TLS_CERT=str(pair[0]), DRAGOMAN_TLS_KEY=str(pair[1]))
    node = await serve_process(tmp_path / "data", env=env)
    assert any(line.startswith("Open https://127.0.0.1:") for line in node.stdout_lines)


async def test_the_websocket_upgrades_over_tls(
    start_server: StartServer, pair: tuple[Path, Path]
) -> None:
    cert, key = pair
    server = await start_server(tls_cert=cert, tls_key=key)
    assert server.url.startswith("https://")
    trusted = ssl.create_default_context(cafile=str(cert))
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(server.url.replace("https:", "wss:") + "/ws", ssl=trusted)
        await ws.send_json({"type": "auth", "v": 1, "token": "forged"})
        refusal = await ws.receive_json()
        assert refusal["type"] == "error"
        await ws.close()
