"""Start moto's server on 127.0.0.1 on a free port, print "host:port", and stop when stdin closes.

Tying the server's life to stdin means that whoever started it (a test binary, the demo) cannot leave it
running behind: when that process exits, even by SIGKILL, the pipe closes and the server stops.

With --tls, the same moto (the same backends, so what is seeded on one port is read on the other) also serves
HTTPS on a second free port, with a certificate for 127.0.0.1 and localhost signed by a self-signed CA, both
generated at start (EC P-256, with the `cryptography` package moto depends on) into a temporary directory that is
removed when the server stops. A second line is printed: "tls host:port <ca.pem> <empty dir>"; a client trusts
the server with SSL_CERT_FILE=<ca.pem> SSL_CERT_DIR=<empty dir> (rustls-native-certs reads only those then).
The HTTPS server records every connection (accepted, TLS handshake) and every request (service, operation,
arrival, end, connection); GET /_dr/tls on the plain port answers that record as JSON (test instrumentation: the
first call over TLS is measured with it), and GET /_dr/tls/latency?ms=N adds a simulated network round trip to
every answer and two to every new connection.
"""
import datetime
import io
import ipaddress
import json
import socket
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.s3.responses import S3Response
from moto.server import ThreadedMotoServer
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler


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


def answer_versioning_as_s3_documents() -> None:
    """S3 answers GetBucketVersioning with a <VersioningConfiguration> root element (the S3 API reference's
    response syntax); moto's serializer answers <GetBucketVersioningResponse>, which the Rust SDK rejects as an
    invalid root. This harness answers the documented shape (the SDK's parser is not weakened): only the
    replication coverage of `check` reads it (tests/tests/coverage.rs)."""

    def get_bucket_versioning(self):  # type: ignore[no-untyped-def]
        status = self.backend.get_bucket_versioning(self.bucket_name)
        inner = f"<Status>{status}</Status>" if status else ""
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f'<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{inner}</VersioningConfiguration>'
        )
        return 200, {}, body

    S3Response.get_bucket_versioning = get_bucket_versioning  # type: ignore[method-assign]


def write_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A self-signed CA and a server certificate for 127.0.0.1 and localhost signed by it (one day)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dr-tests local CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem, cert_pem, key_pem = directory / "ca.pem", directory / "server.pem", directory / "server-key.pem"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_pem, cert_pem, key_pem


class TlsRecord:
    """What the HTTPS server saw: connections (accept and handshake times) and requests, in arrival order.
    Times are seconds of time.monotonic()."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # A simulated network round trip (seconds): each answer waits this long, each new connection twice (the
        # TCP and the TLS 1.3 handshakes), so that round trips show in the times as they would across a network.
        self.latency = 0.0
        self.connections: list[dict] = []
        self.requests: list[dict] = []
        self.by_peer: dict[tuple[str, int], int] = {}

    def snapshot(self) -> bytes:
        with self.lock:
            return json.dumps({"connections": self.connections, "requests": self.requests}).encode()


def operation(environ: dict) -> tuple[str, str]:
    """(service, operation) of a signed AWS request: the service from the SigV4 credential scope, the operation
    from X-Amz-Target (JSON protocols), Action= (query protocols) or the S3 method, path and x-id."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/") if "Credential=" in auth else []
    service = scope[3] if len(scope) > 3 else "?"
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return service, target.rsplit(".", 1)[-1]
    if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        action = parse_qs(body.decode("utf-8", "replace")).get("Action", [""])[0]
        if action:
            return service, action
    x_id = parse_qs(environ.get("QUERY_STRING", "")).get("x-id", [""])[0]
    return service, f"{environ.get('REQUEST_METHOD', '')} {environ.get('PATH_INFO', '')} {x_id}".strip()


def recorded(app, record: TlsRecord):  # type: ignore[no-untyped-def]
    """The WSGI app of the HTTPS server: moto, each request recorded with its connection."""

    def wrapped(environ, start_response):  # type: ignore[no-untyped-def]
        start = environ.get("dr.arrived", time.monotonic())
        service, op = operation(environ)
        status = []

        def keep_status(s, headers, exc_info=None):  # type: ignore[no-untyped-def]
            status.append(s)
            return start_response(s, headers, exc_info)

        body = b"".join(app(environ, keep_status))
        if record.latency:
            time.sleep(record.latency)
        peer = (environ.get("REMOTE_ADDR", ""), int(environ.get("REMOTE_PORT") or 0))
        with record.lock:
            record.requests.append({
                "connection": record.by_peer.get(peer),
                "service": service,
                "operation": op,
                "status": (status[0].split(" ", 1)[0] if status else ""),
                "start": start,
                "end": time.monotonic(),
            })
        return [body]

    return wrapped


def with_record_endpoint(app, record: TlsRecord):  # type: ignore[no-untyped-def]
    """The WSGI app of the plain server: moto, plus GET /_dr/tls (the HTTPS server's record) and
    GET /_dr/tls/latency?ms=N (sets the simulated round trip)."""

    def wrapped(environ, start_response):  # type: ignore[no-untyped-def]
        if environ.get("PATH_INFO") == "/_dr/tls/latency":
            record.latency = float(parse_qs(environ.get("QUERY_STRING", "")).get("ms", ["0"])[0]) / 1000.0
            start_response("204 No Content", [])
            return []
        if environ.get("PATH_INFO") == "/_dr/tls":
            body = record.snapshot()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        return app(environ, start_response)

    return wrapped


class KeepAliveHandler(WSGIRequestHandler):
    """werkzeug's request handler with HTTP/1.1 keep-alive, as AWS endpoints have (and the SDK pools connections
    for): werkzeug's own answers every request with "Connection: close", then drains the socket for 10 ms, which
    on a kept connection would swallow the next request. Here the request body is read whole by its framing
    (Content-Length or chunked) before the app runs, and the answer carries its Content-Length."""

    protocol_version = "HTTP/1.1"
    # Each answer goes out in one write with TCP_NODELAY: on a kept connection, a body written after its headers
    # would otherwise wait for the client's delayed ACK (40 ms on Linux).
    disable_nagle_algorithm = True

    def parse_request(self) -> bool:
        # The request line has just been read: the request's arrival, before any other thread takes the GIL.
        self.arrived = time.monotonic()
        return super().parse_request()

    def run_wsgi(self) -> None:
        if self.headers.get("Expect", "").lower().strip(" \t") == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        environ = self.make_environ()
        if environ.pop("wsgi.input_terminated", False):
            body = environ["wsgi.input"].read()
            environ.pop("HTTP_TRANSFER_ENCODING", None)
        else:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = self.rfile.read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ["dr.arrived"] = self.arrived
        answer: list = []
        chunks: list[bytes] = []

        def start_response(status, headers, exc_info=None):  # type: ignore[no-untyped-def]
            answer[:] = [status, headers]
            return chunks.append

        try:
            iterable = self.server.app(environ, start_response)
            try:
                chunks.extend(iterable)
            finally:
                if hasattr(iterable, "close"):
                    iterable.close()
            status, headers = answer
        except Exception as e:  # the app failed: answer 500 and close, as werkzeug does
            self.log_error("error on request: %r", e)
            status, headers, chunks = "500 Internal Server Error", [("Content-Type", "text/plain")], [b"internal error"]
            self.close_connection = True
        payload = b"".join(chunks)
        code_text, _, reason = status.partition(" ")
        code = int(code_text)
        self.send_response(code, reason)
        keys = set()
        for key, value in headers:
            if key.lower() == "connection":
                continue
            self.send_header(key, value)
            keys.add(key.lower())
        no_body = self.command == "HEAD" or 100 <= code < 200 or code in (204, 304)
        if "content-length" not in keys and not no_body:
            self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        # end_headers() without its flush: the body joins the headers' buffer, and both go out in one write.
        self._headers_buffer.append(b"\r\n")
        if payload and not no_body:
            self._headers_buffer.append(payload)
        self.flush_headers()


class TlsServer(ThreadedWSGIServer):
    """HTTPS with keep-alive ([KeepAliveHandler]) and the handshake in the connection's own thread (werkzeug's
    ssl_context does it in accept, on the serving thread, where one slow client would hold every other), each
    connection recorded."""

    def __init__(self, app, context: ssl.SSLContext, record: TlsRecord) -> None:  # type: ignore[no-untyped-def]
        super().__init__("127.0.0.1", 0, app, handler=KeepAliveHandler)
        self.tls_context = context
        self.record = record
        # werkzeug's request handler reads this to tell the app the scheme, and to quiet TLS errors of a closed
        # connection.
        self.ssl_context = context

    def finish_request(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        accepted = time.monotonic()
        if self.record.latency:
            time.sleep(2 * self.record.latency)
        try:
            tls = self.tls_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            with self.record.lock:
                self.record.connections.append({"peer": list(client_address), "accepted": accepted, "error": str(e)})
            return
        with self.record.lock:
            self.record.by_peer[(client_address[0], client_address[1])] = len(self.record.connections)
            self.record.connections.append({
                "peer": list(client_address),
                "accepted": accepted,
                "handshake_end": time.monotonic(),
                "version": tls.version(),
            })
        try:
            super().finish_request(tls, client_address)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def shutdown_request(self, request) -> None:  # type: ignore[no-untyped-def]
        try:
            request.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.close_request(request)


def main() -> None:
    make_conditional_puts_atomic()
    answer_versioning_as_s3_documents()
    tls = "--tls" in sys.argv[1:]
    record = TlsRecord()
    if not tls:
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        print(f"{host}:{port}", flush=True)
        try:
            sys.stdin.read()
        finally:
            server.stop()
        return
    # moto serializes on the GIL: a thread whose request has arrived waits for it up to the switch interval
    # (5 ms by default, longer than most moto answers), which would show two calls sent side by side as one after
    # the other in the record. 0.5 ms keeps the record's start times within about a millisecond of arrival.
    sys.setswitchinterval(0.0005)
    with tempfile.TemporaryDirectory(prefix="dr-moto-tls-") as tmp:
        ca_pem, cert_pem, key_pem = write_certificates(Path(tmp))
        empty = Path(tmp) / "empty-cert-dir"
        empty.mkdir()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_pem, key_pem)
        moto_app = DomainDispatcherApplication(create_backend_app)
        plain = ThreadedWSGIServer("127.0.0.1", 0, with_record_endpoint(moto_app, record))
        secure = TlsServer(recorded(moto_app, record), context, record)
        for s in (plain, secure):
            threading.Thread(target=s.serve_forever, daemon=True).start()
        print(f"127.0.0.1:{plain.server_address[1]}", flush=True)
        print(f"tls 127.0.0.1:{secure.server_address[1]} {ca_pem} {empty}", flush=True)
        try:
            sys.stdin.read()
        finally:
            plain.shutdown()
            secure.shutdown()


if __name__ == "__main__":
    main()
