"""The handshake parser against real handshakes on loopback, and against garbage."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tetrapipe.transforms.tls_ciphers import cipher_name, weak_reasons
from tetrapipe.transforms.tls_handshake import parse_hello

HERE = Path(__file__).parent

CASES = [
    ("TLSv1_3", "TLS_AES_128_GCM_SHA256"),
    ("TLSv1_3", "TLS_AES_256_GCM_SHA384"),
    ("TLSv1_3", "TLS_CHACHA20_POLY1305_SHA256"),
    ("TLSv1_2", "ECDHE-RSA-AES128-GCM-SHA256"),
    ("TLSv1_2", "ECDHE-RSA-AES256-GCM-SHA384"),
    ("TLSv1_2", "ECDHE-RSA-CHACHA20-POLY1305"),
    ("TLSv1_2", "AES128-SHA"),
    ("TLSv1_2", "AES256-GCM-SHA384"),
]


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    d = tmp_path_factory.mktemp("cert")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(d / "k.pem"),
            "-out",
            str(d / "c.pem"),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ],
        check=True,
        capture_output=True,
    )
    return str(d / "c.pem"), str(d / "k.pem")


def _loopback(cert: tuple[str, str], version: str, cipher: str, sni: str, tmp_path: Path) -> dict:
    env = dict(os.environ)
    if version == "TLSv1_3":
        conf = tmp_path / "openssl.cnf"
        conf.write_text(
            "openssl_conf = init\n[init]\nssl_conf = ssl\n[ssl]\nsystem_default = sys\n"
            f"[sys]\nCiphersuites = {cipher}\n"
        )
        env["OPENSSL_CONF"] = str(conf)
    out = subprocess.run(
        [sys.executable, str(HERE / "tls_loopback.py"), *cert, version, cipher, sni],
        env=env,
        capture_output=True,
        timeout=60,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("version, cipher", CASES)
def test_parser_reports_what_ssl_negotiated(cert: tuple[str, str], version: str, cipher: str, tmp_path: Path) -> None:
    sni = f"{cipher.lower().replace('_', '-')}.example.com"
    got = _loopback(cert, version, cipher, sni, tmp_path)
    assert got["cipher"] == cipher  # the handshake really negotiated the suite under test
    client = parse_hello(base64.b64decode(got["client"]))
    server = parse_hello(base64.b64decode(got["server"]))
    assert client is not None and client.kind == "client_hello"
    assert server is not None and server.kind == "server_hello"
    assert client.sni == sni
    expected_version = {"TLSv1.3": "TLS 1.3", "TLSv1.2": "TLS 1.2"}[got["version"]]
    assert server.version_name == expected_version
    assert server.cipher == got["cipher_code"]
    assert server.cipher_name == cipher_name(got["cipher_code"])
    assert server.cipher in client.offered_ciphers
    if version == "TLSv1_3":
        assert server.selected_version == 0x0304 and server.legacy_version == 0x0303  # 1.3 hides its version
        assert server.cipher_name == cipher  # TLS 1.3 suites have the same name in OpenSSL and IANA


def test_weak_classification() -> None:
    assert weak_reasons("TLS 1.2", "TLS_RSA_WITH_AES_128_CBC_SHA") == ["CBC with SHA-1", "no forward secrecy"]
    assert weak_reasons("TLS 1.0", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256") == ["TLS 1.0 (older than TLS 1.2)"]
    assert weak_reasons("TLS 1.3", "TLS_AES_256_GCM_SHA384") == []
    assert "3DES/DES" in weak_reasons("TLS 1.2", "TLS_RSA_WITH_3DES_EDE_CBC_SHA")
    assert "RC4" in weak_reasons("TLS 1.2", "TLS_ECDHE_RSA_WITH_RC4_128_SHA")


@pytest.fixture(scope="module")
def real_hellos(cert: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    tmp = tmp_path_factory.mktemp("h")
    got = _loopback(cert, "TLSv1_3", "TLS_AES_128_GCM_SHA256", "fuzz.example.com", tmp)
    return [base64.b64decode(got["client"]), base64.b64decode(got["server"])]


def test_truncated_hellos_degrade_gracefully(real_hellos: list[bytes]) -> None:
    client = real_hellos[0]
    for cut in range(len(client)):
        hello = parse_hello(client[:cut])
        assert hello is None or hello.kind == "client_hello"
    # enough for the cipher list but not for the extensions: ciphers yes, SNI no, marked truncated
    hello = parse_hello(client[:120])
    assert hello is not None and hello.truncated and hello.offered_ciphers and hello.sni is None


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise(data: bytes) -> None:
    hello = parse_hello(data)
    assert hello is None or hello.kind in ("client_hello", "server_hello")


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_mutated_real_hellos_never_raise(real_hellos: list[bytes], data: st.DataObject) -> None:
    original = bytearray(data.draw(st.sampled_from(real_hellos)))
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(original) - 1))
        original[i] = data.draw(st.integers(0, 255))
    hello = parse_hello(bytes(original[: data.draw(st.integers(0, len(original)))]))
    assert hello is None or hello.kind in ("client_hello", "server_hello")
