"""A minimal WebSocket client (RFC 6455) from the standard library, for tests: plain or TLS, text frames.

    ws = wsclient.connect("127.0.0.1", 8080, "/ws", headers={"X-Key": "..."})
    ws.send_text("hi")
    ws.recv_text(timeout=5)      # -> str; answers pings, skips pongs
    ws.close()                   # -> (code, reason) of the server's close frame, or None

TLS: connect(..., tls_context=ssl.create_default_context(cafile=...), server_hostname="gw.example").
A handshake the server refuses raises HandshakeError (status, headers, body), a close frame from the server
ConnectionClosed (code, reason). headers may set Host (e.g. a gateway's server_name on an IP address).
"""
import base64
import hashlib
import os
import socket
import struct
import time

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_HEAD = 65536


class WebSocketError(Exception):
    pass


class HandshakeError(WebSocketError):
    """The server did not switch protocols (e.g. a gateway's 401), or switched without the right accept key."""

    def __init__(self, message, status=None, headers=None, body=b""):
        super().__init__(message)
        self.status, self.headers, self.body = status, headers or {}, body


class ConnectionClosed(WebSocketError):
    """The server sent a close frame (code None when it carried none) or the connection ended."""

    def __init__(self, code=None, reason=""):
        super().__init__("connection closed (code %s%s)" % (code, ", " + reason if reason else ""))
        self.code, self.reason = code, reason


def accept_key(key):
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def connect(host, port, path="/", headers=None, tls_context=None, server_hostname=None, timeout=10):
    """Open a WebSocket to host:port and path; returns a WebSocket once the server answered 101."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        if tls_context is not None:
            sock = tls_context.wrap_socket(sock, server_hostname=server_hostname or host)
        key = base64.b64encode(os.urandom(16)).decode()
        fields = {"Host": "%s:%d" % (host, port), "Upgrade": "websocket", "Connection": "Upgrade",
                  "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13"}
        for name, value in (headers or {}).items():  # replace a default field whatever its case
            for default in [d for d in fields if d.lower() == name.lower()]:
                del fields[default]
            fields[name] = value
        request = "GET %s HTTP/1.1\r\n%s\r\n" % (path, "".join("%s: %s\r\n" % kv for kv in fields.items()))
        sock.sendall(request.encode("latin-1"))
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                raise HandshakeError("the server closed the connection during the handshake")
            buf += chunk
            if len(buf) > MAX_HEAD:
                raise HandshakeError("the handshake answer has no end of headers")
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        resp_headers = {}
        for line in lines[1:]:
            name, _sep, value = line.partition(":")
            resp_headers[name.strip().lower()] = value.strip()
        if status != 101:
            body = _read_body(sock, rest, resp_headers)
            raise HandshakeError("the server answered %r, not 101" % lines[0], status, resp_headers, body)
        if resp_headers.get("sec-websocket-accept") != accept_key(key):
            raise HandshakeError("wrong Sec-WebSocket-Accept", status, resp_headers)
        return WebSocket(sock, rest, status, resp_headers)
    except BaseException:
        sock.close()
        raise


def _read_body(sock, rest, headers):
    """The body of a refused handshake, as far as Content-Length says (best effort, for messages)."""
    try:
        want = int(headers.get("content-length", "0"))
    except ValueError:
        want = 0
    try:
        while len(rest) < want:
            chunk = sock.recv(want - len(rest))
            if not chunk:
                break
            rest += chunk
    except OSError:
        pass
    return rest[:want]


class WebSocket:
    def __init__(self, sock, buffered, status, headers):
        self.sock = sock
        self.buf = buffered         # bytes the server sent right after its handshake answer
        self.status = status        # 101
        self.headers = headers      # the handshake answer's headers, lower-case names
        self.closed = False         # our close frame is sent
        self.server_close = None    # (code, reason) of the server's close frame, once it came

    # -- frames ---------------------------------------------------------------------------
    def _send_frame(self, opcode, payload):
        # Client frames are always masked (RFC 6455 5.3); one frame per message (FIN set).
        head = bytearray([0x80 | opcode])
        n = len(payload)
        if n < 126:
            head.append(0x80 | n)
        elif n < 65536:
            head.append(0x80 | 126)
            head += struct.pack("!H", n)
        else:
            head.append(0x80 | 127)
            head += struct.pack("!Q", n)
        mask = os.urandom(4)
        self.sock.sendall(bytes(head) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _read_exact(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no complete frame from the server in time")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionClosed(None, "the server closed the connection without a close frame")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _recv_frame(self, deadline):
        b1, b2 = self._read_exact(2, deadline)
        if b2 & 0x80:
            raise WebSocketError("the server sent a masked frame (RFC 6455 5.1 forbids it)")
        n = b2 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read_exact(2, deadline))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read_exact(8, deadline))[0]
        return bool(b1 & 0x80), b1 & 0x0F, self._read_exact(n, deadline)

    # -- messages -------------------------------------------------------------------------
    def send_text(self, text):
        self._send_frame(OP_TEXT, text.encode("utf-8"))

    def send_binary(self, data):
        self._send_frame(OP_BINARY, bytes(data))

    def recv_message(self, timeout=10):
        """The next data message as (opcode, payload): fragments joined, pings answered, pongs skipped.
        A close frame is answered and raises ConnectionClosed."""
        deadline = time.monotonic() + timeout
        opcode, parts = None, []
        while True:
            fin, op, payload = self._recv_frame(deadline)
            if op == OP_PING:
                self._send_frame(OP_PONG, payload)
            elif op == OP_PONG:
                continue
            elif op == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                reason = payload[2:].decode("utf-8", "replace")
                self.server_close = (code, reason)
                if not self.closed:
                    self.closed = True
                    try:
                        self._send_frame(OP_CLOSE, payload[:2])
                    except OSError:
                        pass
                raise ConnectionClosed(code, reason)
            else:
                if op != OP_CONT:
                    opcode = op
                parts.append(payload)
                if fin:
                    return opcode, b"".join(parts)

    def recv_text(self, timeout=10):
        opcode, payload = self.recv_message(timeout)
        if opcode != OP_TEXT:
            raise WebSocketError("expected a text message, got opcode %d" % opcode)
        return payload.decode("utf-8")

    def close(self, code=1000, reason="", timeout=5):
        """Send a close frame, wait for the server's and close the socket. Returns the server's
        (code, reason), or None when it sent none in time."""
        try:
            if not self.closed:
                self.closed = True
                self._send_frame(OP_CLOSE, struct.pack("!H", code) + reason.encode("utf-8"))
            if self.server_close is None:
                try:
                    while True:  # data still in flight is dropped
                        self.recv_message(timeout)
                except (OSError, WebSocketError):
                    pass
        except OSError:
            pass  # the connection is already gone
        finally:
            self.sock.close()
        return self.server_close

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
