"""Start moto's server on 127.0.0.1 on a free port, print "host:port", and stop when stdin closes.

Tying the server's life to stdin means that whoever started it (a test binary, the demo) cannot leave it
running behind: when that process exits, even by SIGKILL, the pipe closes and the server stops.
"""
import sys

from moto.server import ThreadedMotoServer


def main() -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    print(f"{host}:{port}", flush=True)
    try:
        sys.stdin.read()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
