"""One probe of the gateway from the lab's client host (a machine on the network outside the stack): the request
comes as JSON on stdin (keys never on a command line), the answer goes to stdout as JSON. Standard library only:
it runs with the client host's own python3 (tests/lab/surface.py sends it).

  {"probe": "request", "host", "port", "tls", "method", "path", "headers", "body"}  -> {status, headers, body}
  {"probe": "burst", "host", "path", "headers", "count"}                           -> {statuses, last}
  {"probe": "handshake", "host", "port", "version", "ciphers"}                      -> {ok, version, cipher, ticket, error}
  {"probe": "concurrent", "host", "path", "headers", "body", "count", "interval"}   -> {answers: [{status, body}]}
"""
import http.client
import json
import socket
import ssl
import sys
import threading
import time
import warnings


def _context():
    # The lab's certificate is self-signed; these probes test the gateway's rules, not the CA.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _connection(ask):
    if ask.get("tls", True):
        return http.client.HTTPSConnection(ask["host"], ask.get("port", 443), timeout=60, context=_context())
    return http.client.HTTPConnection(ask["host"], ask.get("port", 80), timeout=60)


def _send(conn, ask):
    body = ask.get("body")
    conn.request(ask.get("method", "GET" if body is None else "POST"), ask["path"],
                 body=json.dumps(body) if body is not None else None,
                 headers=dict({"Content-Type": "application/json"}, **ask.get("headers", {})))
    resp = conn.getresponse()
    return {"status": resp.status, "headers": dict((k.lower(), v) for k, v in resp.getheaders()),
            "body": resp.read().decode("utf-8", "replace")}


def request(ask):
    conn = _connection(ask)
    try:
        return _send(conn, ask)
    finally:
        conn.close()


def burst(ask):
    """`count` requests one after the other on one connection, as fast as the gateway answers."""
    conn = _connection(ask)
    answers = [_send(conn, ask) for _n in range(ask["count"])]
    conn.close()
    return {"statuses": [a["status"] for a in answers], "last": answers[-1]}


def handshake(ask):
    """A TLS handshake offering one protocol version and, for TLS 1.2 and older, the given suites only."""
    ctx = _context()
    version = getattr(ssl.TLSVersion, ask["version"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1: offered on purpose
        ctx.minimum_version = ctx.maximum_version = version
    if ask.get("ciphers"):
        # SECLEVEL=0: this client may offer what it's told to; whether the gateway accepts it is the question.
        ctx.set_ciphers(ask["ciphers"] + ":@SECLEVEL=0")
    try:
        with socket.create_connection((ask["host"], ask.get("port", 443)), timeout=10) as raw:
            with ctx.wrap_socket(raw) as tls:
                return {"ok": True, "version": tls.version(), "cipher": tls.cipher()[0],
                        "ticket": bool(tls.session and tls.session.has_ticket), "error": ""}
    except (ssl.SSLError, OSError) as e:
        return {"ok": False, "version": "", "cipher": "", "ticket": False, "error": str(e)}


def concurrent(ask):
    """`count` requests opened `interval` seconds apart, each read to its end; their statuses and error bodies."""
    answers = [None] * ask["count"]

    def one(number):
        try:
            answers[number] = request(ask)
        except (OSError, http.client.HTTPException) as e:
            answers[number] = {"status": 0, "headers": {}, "body": str(e)}
        if answers[number]["status"] == 200:
            answers[number]["body"] = ""  # a whole stream; only errors matter

    threads = []
    for number in range(ask["count"]):
        threads.append(threading.Thread(target=one, args=(number,)))
        threads[-1].start()
        time.sleep(ask["interval"])
    for thread in threads:
        thread.join()
    return {"answers": answers}


if __name__ == "__main__":
    ASK = json.load(sys.stdin)
    json.dump({"request": request, "burst": burst, "handshake": handshake,
               "concurrent": concurrent}[ASK.pop("probe")](ASK), sys.stdout)
