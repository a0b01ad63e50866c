"""The instance side of a Cloud SQL connection: TLS on port 3307 with client certificates.

The connector always dials ``<instance IP>:3307`` and speaks TLS from the first byte, showing
the ephemeral certificate the Admin API signed. This front requires a client certificate from
the instance's CA (OpenSSL checks the chain and the validity period), then relays the Postgres
protocol to a real local Postgres. As on Cloud SQL, the mTLS tunnel is the only TLS layer: a
Postgres ``SSLRequest`` inside it is answered ``N``.

For IAM database login the client sends no password; the front reads the login token from the
client certificate and answers the server's password or SCRAM challenge with it, so Postgres
itself decides whether that token is the role's password.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
import tempfile
import threading
from pathlib import Path

from cryptography import x509
from scramp import ScramClient

from standins.certs import CertificateAuthority
from standins.cloudsql_admin import iam_token

PORT = 3307  # fixed by the connector (SERVER_PROXY_PORT)
_SSL_REQUEST, _GSSENC_REQUEST = 80877103, 80877104
_AUTH_OK, _AUTH_CLEARTEXT, _AUTH_SASL, _AUTH_SASL_CONTINUE, _AUTH_SASL_FINAL = 0, 3, 10, 11, 12


class TlsFront:
    """Accepts mTLS on ``host``:3307 and relays to the Postgres at ``backend``.

    The connector cannot be told another port, so when 127.0.0.1:3307 is taken (another test
    run on this machine) the front binds 3307 on another loopback address, 127.0.0.2 and up,
    and the Admin API stand-in reports that address as the instance's IP.
    """

    def __init__(self, ca: CertificateAuthority, backend: tuple[str, int], common_name: str) -> None:
        self._ca = ca
        self._backend = backend
        self._common_name = common_name
        self.host = ""
        self.accepted: list[x509.Certificate] = []  # client certificates that passed the handshake
        self.iam_logins: list[tuple[str, str]] = []  # (user, token) presented to Postgres for a client
        self.errors: list[BaseException] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tls-front", daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> TlsFront:
        context = self._ssl_context()
        self._thread.start()
        last: OSError | None = None
        for last_octet in range(1, 21):
            host = f"127.0.0.{last_octet}"
            opening = asyncio.start_server(self._serve, host, PORT, ssl=context, ssl_handshake_timeout=10)
            try:
                self._server = asyncio.run_coroutine_threadsafe(opening, self._loop).result(10)
            except OSError as err:
                last = err
                continue
            self.host = host
            return self
        msg = f"port {PORT} is taken on 127.0.0.1-20: {last}"
        raise RuntimeError(msg)

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _ssl_context(self) -> ssl.SSLContext:
        cert_pem, key_pem = self._ca.server_pair(self._common_name)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=self._ca.cert_pem)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "cert.pem").write_text(cert_pem)
            (Path(tmp) / "key.pem").write_bytes(key_pem)
            context.load_cert_chain(Path(tmp) / "cert.pem", Path(tmp) / "key.pem")
        return context

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        cert = x509.load_der_x509_certificate(ssl_object.getpeercert(binary_form=True))
        self.accepted.append(cert)
        upstream: asyncio.StreamWriter | None = None
        try:
            up_reader, upstream = await asyncio.open_connection(*self._backend)
            startup = await _startup_message(reader, writer)
            upstream.write(startup)
            token = iam_token(cert)
            if token is not None:
                user = _startup_parameters(startup).get("user", "")
                self.iam_logins.append((user, token))
                if not await _log_in(writer, up_reader, upstream, user, token):
                    return
            await asyncio.gather(_pipe(reader, upstream), _pipe(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError):
            return
        except Exception as err:  # noqa: BLE001 - recorded for the test to see; the client sees a closed connection
            self.errors.append(err)
        finally:
            for stream in (writer, upstream):
                if stream is not None:
                    with contextlib.suppress(Exception):
                        stream.close()


async def _startup_message(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """The client's StartupMessage; TLS/GSS requests inside the tunnel are declined."""
    while True:
        head = await reader.readexactly(8)
        length, code = struct.unpack("!ii", head)
        rest = await reader.readexactly(length - 8)
        if code in {_SSL_REQUEST, _GSSENC_REQUEST}:
            writer.write(b"N")
            await writer.drain()
            continue
        return head + rest


def _startup_parameters(message: bytes) -> dict[str, str]:
    # length, protocol version, then name\0value\0 ... \0
    fields = message[8:].split(b"\0")
    return {fields[i].decode(): fields[i + 1].decode() for i in range(0, len(fields) - 1, 2) if fields[i]}


async def _log_in(
    client: asyncio.StreamWriter, up_reader: asyncio.StreamReader, upstream: asyncio.StreamWriter, user: str, token: str
) -> bool:
    """Answer the server's authentication with ``token``; relay its verdict to the client."""
    scram: ScramClient | None = None
    while True:
        kind = await up_reader.readexactly(1)
        length = struct.unpack("!i", await up_reader.readexactly(4))[0]
        payload = await up_reader.readexactly(length - 4)
        code = struct.unpack("!i", payload[:4])[0] if kind == b"R" else None
        if kind != b"R" or code == _AUTH_OK:
            # AuthenticationOk, or an ErrorResponse such as 28P01: the client sees what Postgres said.
            client.write(kind + struct.pack("!i", length) + payload)
            await client.drain()
            return kind == b"R"
        if code == _AUTH_CLEARTEXT:
            upstream.write(_message(b"p", token.encode() + b"\0"))
        elif code == _AUTH_SASL:
            scram = ScramClient(["SCRAM-SHA-256"], user, token)
            first = scram.get_client_first().encode()
            upstream.write(_message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first))
        elif code == _AUTH_SASL_CONTINUE and scram is not None:
            scram.set_server_first(payload[4:].decode())
            upstream.write(_message(b"p", scram.get_client_final().encode()))
        elif code == _AUTH_SASL_FINAL and scram is not None:
            scram.set_server_final(payload[4:].decode())  # proves the server knew the password
        else:
            msg = f"authentication request {code} is not supported by the stand-in"
            raise ConnectionError(msg)
        await upstream.drain()


def _message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        return
    finally:
        with contextlib.suppress(Exception):
            writer.close()
