#!/usr/bin/python3
"""Tiny HTTP echo server for the dwprov lab.

Usage: echo_server.py PORT [BIND_ADDRESS]

Every GET is answered with one line:

    peer=<client ip> local=<server ip the client hit>

so a test can tell which (SNAT) address a connection came from and which of
the server's addresses it reached (e.g. which WAN address of the gateway).
Standard library only; one thread per connection.
"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class EchoHandler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, the client sees EOF after the body.
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        peer = self.client_address[0]
        # The address the client actually reached (after any DNAT), not 0.0.0.0.
        local = self.connection.getsockname()[0]
        body = f"peer={peer} local={local}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        sys.stderr.write("%s %s\n" % (self.client_address[0], format % args))
        sys.stderr.flush()


class Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: echo_server.py PORT [BIND_ADDRESS]")
    port = int(sys.argv[1])
    bind = sys.argv[2] if len(sys.argv) == 3 else "0.0.0.0"
    server = Server((bind, port), EchoHandler)
    sys.stderr.write(f"echo_server listening on {bind}:{port}\n")
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
