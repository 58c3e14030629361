"""A real TLS handshake over loopback sockets, with the bytes on the wire recorded.

Run as a script (so OPENSSL_CONF can pin TLS 1.3 cipher suites, which Python
3.11's ssl module cannot set): a server thread, a recording TCP proxy and a
client, all on 127.0.0.1. Prints JSON: the first bytes each side sent, and what
the ssl module says was negotiated.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import sys
import threading


def _serve(listener: socket.socket, ctx: ssl.SSLContext, done: threading.Event) -> None:
    conn, _ = listener.accept()
    with ctx.wrap_socket(conn, server_side=True) as tls:
        tls.recv(16)
        tls.sendall(b"pong")
    done.set()


def _proxy(front: socket.socket, backend_port: int, captured: dict[str, bytes]) -> None:
    client, _ = front.accept()
    backend = socket.create_connection(("127.0.0.1", backend_port))

    def pump(src: socket.socket, dst: socket.socket, key: str) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if key not in captured:
                    captured[key] = data  # the first flight in this direction
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    t = threading.Thread(target=pump, args=(backend, client, "server"), daemon=True)
    t.start()
    pump(client, backend, "client")
    t.join(5)


def handshake(cert: str, key: str, version: str, cipher: str | None, sni: str) -> dict:
    v = getattr(ssl.TLSVersion, version)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.check_hostname = False
    cctx.verify_mode = ssl.CERT_NONE
    for ctx in (sctx, cctx):
        ctx.minimum_version = ctx.maximum_version = v
        if cipher and version != "TLSv1_3":
            ctx.set_ciphers(cipher + ":@SECLEVEL=0")
        elif version != "TLSv1_3":
            ctx.set_ciphers("ALL:@SECLEVEL=0")
    listener = socket.create_server(("127.0.0.1", 0))
    front = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()
    captured: dict[str, bytes] = {}
    threading.Thread(target=_serve, args=(listener, sctx, done), daemon=True).start()
    proxy = threading.Thread(target=_proxy, args=(front, listener.getsockname()[1], captured), daemon=True)
    proxy.start()
    with socket.create_connection(front.getsockname()) as raw, cctx.wrap_socket(raw, server_hostname=sni) as tls:
        tls.sendall(b"ping")
        tls.recv(16)
        negotiated = {"version": tls.version(), "cipher": tls.cipher()[0]}
    done.wait(5)
    proxy.join(5)
    ids = {c["name"]: c["id"] & 0xFFFF for c in cctx.get_ciphers()}
    return {
        **negotiated,
        "cipher_code": ids.get(negotiated["cipher"]),
        "sni": sni,
        "client": base64.b64encode(captured["client"]).decode(),
        "server": base64.b64encode(captured["server"]).decode(),
    }


if __name__ == "__main__":
    cert, key, version, cipher, sni = sys.argv[1:6]
    print(json.dumps(handshake(cert, key, version, cipher or None, sni)))
