#!/usr/bin/env python3
"""The demo webhook receiver: prints every delivery and whether its signature verifies.

Listens on plain HTTP (default 127.0.0.1:9000) and, given a certificate, on TLS (default
127.0.0.1:9443). Answers 200 to every delivery. Standard library only.

    python3 demo/receiver.py --secret hunter2 --cert envoy/certs/receiver.pem --key envoy/certs/receiver-key.pem
"""

import argparse
import hashlib
import hmac
import json
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
COUNT = 0


def kong_signature_ok(secret: bytes, body: bytes, header: str | None) -> bool | None:
    """Kong's scheme: X-Kong-Signature: sha1=<hex HMAC-SHA1(secret, body)>. None if unsigned."""
    if header is None:
        return None
    expected = "sha1=" + hmac.new(secret, body, hashlib.sha1).hexdigest()
    return hmac.compare_digest(expected, header)


def make_handler(secret: bytes, scheme: str):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else each answer waits for a delayed ACK

        def do_POST(self):  # noqa: N802 (http.server naming)
            global COUNT
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            verified = kong_signature_ok(secret, body, self.headers.get("x-kong-signature"))
            verdict = {True: "signature verified", False: "SIGNATURE MISMATCH", None: "unsigned"}[verified]
            try:
                shown = json.dumps(json.loads(body), indent=2, sort_keys=True)
            except ValueError:
                shown = body.decode("utf-8", "replace")
            with LOCK:
                COUNT += 1
                print(
                    f"--- delivery {COUNT}: {self.command} {scheme}://{self.headers.get('host')}{self.path}\n"
                    f"    webhook-id {self.headers.get('webhook-id')}, "
                    f"timestamp {self.headers.get('webhook-timestamp')}, {verdict}\n{shown}",
                    flush=True,
                )
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    return Handler


def serve(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--tls-port", type=int, default=9443)
    parser.add_argument("--cert", help="certificate for the TLS listener (PEM)")
    parser.add_argument("--key", help="private key for the TLS listener (PEM)")
    parser.add_argument("--secret", default="hunter2", help="the hooks' secret, to verify signatures")
    args = parser.parse_args()
    secret = args.secret.encode()

    plain = ThreadingHTTPServer((args.host, args.port), make_handler(secret, "http"))
    threads = [serve(plain)]
    listening = [f"http://{args.host}:{args.port}"]
    if args.cert and args.key:
        tls = ThreadingHTTPServer((args.host, args.tls_port), make_handler(secret, "https"))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        tls.socket = context.wrap_socket(tls.socket, server_side=True)
        threads.append(serve(tls))
        listening.append(f"https://{args.host}:{args.tls_port}")
    print(f"receiver: listening on {', '.join(listening)}", flush=True)
    try:
        for thread in threads:
            thread.join()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
