"""module_utils/certbot_hook against a real nginx (Debian's, which tests/lab/up installs) serving TLS from a temp
folder: a new pair is served after the hook, a connection opened before it is not cut, and a pair nginx refuses is
taken back out with the old certificate still served."""
import os
import shutil
import socket
import ssl
import subprocess
import time

import pytest

from ansible_collections.llmstack.deploy.plugins.module_utils import certbot_hook

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
pytestmark = pytest.mark.skipif(not os.path.exists(NGINX) or os.geteuid() != 0,
                                reason="needs Debian's nginx and root (tests/lab/up installs it; ./tests/run is root)")


def self_signed(folder, name):
    os.makedirs(folder, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=" + name,
                    "-keyout", os.path.join(folder, "privkey.pem"), "-out", os.path.join(folder, "fullchain.pem")],
                   check=True, capture_output=True)
    with open(os.path.join(folder, "fullchain.pem"), encoding="utf-8") as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def served(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ssl._create_unverified_context().wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.getpeercert(binary_form=True)


@pytest.fixture
def gateway(tmp_path):
    """nginx on a free port with tls/server.crt and server.key from the folder 'first'; yields (tmp_path, port, conf,
    the first certificate's DER)."""
    os.chmod(tmp_path, 0o755)
    first = self_signed(str(tmp_path / "first"), "first")
    (tmp_path / "tls").mkdir()
    for src, dest in (("fullchain.pem", "server.crt"), ("privkey.pem", "server.key")):
        shutil.copy(str(tmp_path / "first" / src), str(tmp_path / "tls" / dest))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp_path / "nginx.conf"
    conf.write_text("""
pid {t}/nginx.pid;
error_log {t}/error.log;
events {{ }}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {t}/tls/server.crt;
        ssl_certificate_key {t}/tls/server.key;
        location / {{ return 200 "ok"; }}
    }}
}}
""".format(t=tmp_path, port=port))
    subprocess.run([NGINX, "-c", str(conf)], check=True, capture_output=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                served(port)
                break
            except OSError:
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.1)
        yield tmp_path, port, str(conf), first
    finally:
        subprocess.run([NGINX, "-c", str(conf), "-s", "quit"], capture_output=True, check=False)


def test_a_new_certificate_is_served_and_an_open_connection_is_not_cut(gateway):
    tmp, port, conf, first = gateway
    second = self_signed(str(tmp / "second"), "second")
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    before = ssl._create_unverified_context().wrap_socket(raw, server_hostname="localhost")
    assert before.getpeercert(binary_form=True) == first
    certbot_hook.deploy(str(tmp / "second"), str(tmp / "tls"), [NGINX], conf)
    deadline = time.monotonic() + 10
    while served(port) != second:
        assert time.monotonic() < deadline, "nginx still serves the first certificate after the reload"
        time.sleep(0.1)
    # The connection from before the reload still gets answers (the old worker finishes it).
    before.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert before.recv(4096).startswith(b"HTTP/1.1 200")
    before.close()
    assert os.stat(str(tmp / "tls" / "server.key")).st_mode & 0o777 == 0o600
    assert os.stat(str(tmp / "tls" / "server.crt")).st_mode & 0o777 == 0o644


def test_a_pair_nginx_refuses_is_taken_back_and_the_old_certificate_stays(gateway):
    tmp, port, conf, first = gateway
    self_signed(str(tmp / "second"), "second")
    self_signed(str(tmp / "third"), "third")
    # The second's certificate with the third's key: they do not match.
    shutil.copy(str(tmp / "third" / "privkey.pem"), str(tmp / "second" / "privkey.pem"))
    before = dict((name, (tmp / "tls" / name).read_bytes()) for name in ("server.crt", "server.key"))
    with pytest.raises(certbot_hook.HookError, match="nginx -t refused the new certificate of .*second"):
        certbot_hook.deploy(str(tmp / "second"), str(tmp / "tls"), [NGINX], conf)
    assert dict((name, (tmp / "tls" / name).read_bytes()) for name in before) == before
    assert served(port) == first


def test_a_lineage_without_its_key_changes_nothing(gateway):
    tmp, _port, conf, _first = gateway
    self_signed(str(tmp / "second"), "second")
    os.unlink(str(tmp / "second" / "privkey.pem"))
    before = (tmp / "tls" / "server.crt").read_bytes()
    with pytest.raises(certbot_hook.HookError, match="has no privkey.pem"):
        certbot_hook.deploy(str(tmp / "second"), str(tmp / "tls"), [NGINX], conf)
    assert (tmp / "tls" / "server.crt").read_bytes() == before
