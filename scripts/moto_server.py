"""Start moto's server on 127.0.0.1 on a free port, print "host:port", and stop when stdin closes.

Tying the server's life to stdin means that whoever started it (a test binary, the demo) cannot leave it
running behind: when that process exits, even by SIGKILL, the pipe closes and the server stops.
"""
import sys
import threading

from moto.s3.responses import S3Response
from moto.server import ThreadedMotoServer


def make_conditional_puts_atomic() -> None:
    """S3 evaluates If-None-Match / If-Match atomically with the write; moto checks, then writes, and its
    server is threaded, so two concurrent conditional PUTs can both succeed. The failover lock depends on
    S3's documented behaviour, so PUTs are serialized here to give moto the same guarantee."""
    original = S3Response.put_object
    lock = threading.Lock()

    def put_object(self):  # type: ignore[no-untyped-def]
        with lock:
            return original(self)

    S3Response.put_object = put_object  # type: ignore[method-assign]


def main() -> None:
    make_conditional_puts_atomic()
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
