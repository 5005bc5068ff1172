"""The nginx_gateway role's own configuration, run on loopback in the lab's nginx image, and upstreams to put
behind it, for tests.

RoleGateway.apply() renders roles/nginx_gateway/templates/nginx.conf.j2 and the secret files through the role's own
"Apply the configuration" task (taken from tasks/apply.yml as it is: llmstack.deploy.nginx_config writes a release,
renders the secret files from the test's env files, runs nginx -t in the running gateway or a throwaway container of
the image, points `current` at it and reloads), in a play on localhost with the role's defaults and vars and the
test's values as extra vars. start() runs the gateway container on that config, on the host's network as the role
runs it. EchoUpstream answers with its name and the headers it got, streams SSE on .../events, and echoes WebSocket
text frames (RFC 6455, server side).
"""
import base64
import hashlib
import http.client
import http.server
import json
import os
import shutil
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import uuid

import yaml

import labenv

ROLE = os.path.join(labenv.ROOT, "roles", "nginx_gateway")
MOUNT = "/etc/nginx/llmstack"  # the role's nginx_gateway_mount
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def local_image(lab):
    """LAB_IMAGE_NGINX as this machine reaches the lab registry (pulled once if it is not here)."""
    image = lab["LAB_IMAGE_NGINX"].replace(lab["LAB_REGISTRY_FROM_HOSTS"], lab["LAB_REGISTRY"], 1)
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False).returncode != 0:
        config = tempfile.mkdtemp()  # the login stays out of ~/.docker
        env = dict(os.environ, DOCKER_CONFIG=config)
        try:
            subprocess.run(["docker", "login", "-u", lab["LAB_REGISTRY_USER"], "--password-stdin", lab["LAB_REGISTRY"]],
                           input=lab["LAB_REGISTRY_PASSWORD"], text=True, env=env, check=True, capture_output=True)
            subprocess.run(["docker", "pull", "-q", image], env=env, check=True, capture_output=True)
        finally:
            shutil.rmtree(config, ignore_errors=True)
    return image


def apply_task():
    """The role's "Apply the configuration" task, as tasks/apply.yml has it."""
    with open(os.path.join(ROLE, "tasks", "apply.yml")) as f:
        tasks = yaml.safe_load(f)
    return next(t for t in tasks if str(t.get("name", "")).startswith("Apply the configuration"))


class RoleGateway:
    """One gateway: its config folder, env files, ports and container, under a 0755 temp folder (nginx workers
    run as nobody and read the static files)."""

    def __init__(self, lab, keys, llm_key="llm-upstream-key-0123456789"):
        self.lab = lab
        self.image = local_image(lab)
        self.tmp = tempfile.mkdtemp(prefix="llmstack-rolegw-")
        os.chmod(self.tmp, 0o755)
        self.config_dir = os.path.join(self.tmp, "config")
        self.switch_dir = os.path.join(self.tmp, "switch")
        self.state_dir = os.path.join(self.tmp, "state")
        for folder in (self.config_dir, self.switch_dir, os.path.join(self.config_dir, "tls")):
            os.makedirs(folder, 0o755)
        self.keys_file = self._env_file("api_keys.env", keys)
        self.upstream_file = self._env_file("upstream.env", {"LLM_API_KEY": llm_key})
        self.name = "llmstack-rolegw-%s" % uuid.uuid4().hex[:8]
        self.http_port, self.https_port, self.check_port = (labenv.free_port() for _port in range(3))
        self.started = False
        # The role's templates/ and files/ beside the play: its lookups find them as they do in the role.
        self.play_dir = os.path.join(self.tmp, "play")
        os.makedirs(self.play_dir)
        for sub in ("templates", "files"):
            os.symlink(os.path.join(ROLE, sub), os.path.join(self.play_dir, sub))

    def _env_file(self, name, values):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write("".join("%s=%s\n" % kv for kv in values.items()))
        os.chmod(path, 0o600)
        return path

    @property
    def certificate(self):
        return os.path.join(self.config_dir, "tls", "server.crt")

    def tls_context(self):
        """A client context that trusts this gateway's certificate (for 127.0.0.1)."""
        return ssl.create_default_context(cafile=self.certificate)

    def tls_files(self):
        """A self-signed certificate for localhost and 127.0.0.1, where the role keeps its TLS files."""
        tls = os.path.join(self.config_dir, "tls")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "2", "-subj", "/CN=localhost", "-addext",
                        "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", os.path.join(tls, "server.key"),
                        "-out", self.certificate], check=True, capture_output=True)

    def apply(self, routes, upstreams, tls=False, check=False, **extra):
        """Run the role's task with these routes and upstreams (in check mode with check=True). Returns (rc, the
        task's result or the play's output)."""
        if tls and not os.path.exists(self.certificate):
            self.tls_files()
        values = {
            "nginx_gateway_routes": routes, "nginx_gateway_upstreams": upstreams, "llmstack_apps": [],
            "nginx_gateway_tls": tls, "nginx_gateway_http_port": self.http_port,
            "nginx_gateway_https_port": self.https_port, "nginx_gateway_check_port": self.check_port,
            "nginx_gateway_config_dir": self.config_dir, "nginx_gateway_switch_dir": self.switch_dir,
            "nginx_gateway_state_dir": self.state_dir, "nginx_gateway_image": self.image,
            "nginx_gateway_api_keys_env_file": self.keys_file, "nginx_gateway_upstream_env_file": self.upstream_file,
            "nginx_gateway_check_pending": False,
        }
        values.update(extra)
        task = dict(apply_task())
        task.pop("when", None)
        task["llmstack.deploy.nginx_config"] = dict(task["llmstack.deploy.nginx_config"], container=self.name)
        task["register"] = "applied"
        play = [{"hosts": "localhost", "gather_facts": False,
                 "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
                 "vars_files": [os.path.join(labenv.ROOT, "roles", "llmstack", "defaults", "main.yml"),
                                os.path.join(ROLE, "defaults", "main.yml"), os.path.join(ROLE, "vars", "main.yml")],
                 "tasks": [task]}]
        play_path = os.path.join(self.play_dir, "apply.yml")
        vars_path = os.path.join(self.play_dir, "values.json")
        with open(play_path, "w") as f:
            json.dump(play, f)
        with open(vars_path, "w") as f:
            json.dump(values, f)
        cmd, env = labenv.playbook_command(play_path, ["-e", "@" + vars_path] + (["--check"] if check else []))
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=labenv.ROOT, env=env, timeout=300, check=False)
        try:
            result = json.loads(done.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
        except (ValueError, KeyError, IndexError):
            result = {"msg": done.stdout[-3000:] + done.stderr[-3000:]}
        return done.returncode, result

    def config(self):
        with open(os.path.join(self.config_dir, "current", "nginx.conf")) as f:
            return f.read()

    def static_release(self, static_name, files):
        """A static route's files as the role ships them: a release folder under static/<static_name>/releases/ and
        `current` pointing at it (relative, so it resolves in the container too). files: {relative path: text}."""
        base = os.path.join(self.config_dir, "static", static_name)
        release = os.path.join(base, "releases", uuid.uuid4().hex[:12])
        for rel, text in files.items():
            path = os.path.join(release, rel)
            os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
            os.chmod(path, 0o644)
        for folder, dirs, _names in os.walk(os.path.join(self.config_dir, "static")):
            os.chmod(folder, 0o755)
        link = os.path.join(base, "current.tmp")
        os.symlink(os.path.relpath(release, base), link)
        os.rename(link, os.path.join(base, "current"))
        return release

    def start(self, timeout=30):
        """The gateway container as the role runs it: host network, the config folder read-only at the mount."""
        subprocess.run(["docker", "run", "-d", "--name", self.name, "--label", "llmstack-lab=1", "--network", "host",
                        "-v", "%s:%s:ro" % (self.config_dir, MOUNT),
                        "-v", "%s:%s:ro" % (self.switch_dir, self.switch_dir),
                        self.image, "nginx", "-c", MOUNT + "/current/nginx.conf", "-g", "daemon off;"],
                       check=True, capture_output=True)
        self.started = True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError("the gateway did not answer /healthz: %s" % self.logs()[-2000:])

    def logs(self):
        done = subprocess.run(["docker", "logs", self.name], capture_output=True, text=True, check=False)
        return done.stdout + done.stderr

    def access_log(self):
        """The JSON lines of the access log (the container's stdout)."""
        done = subprocess.run(["docker", "logs", self.name], capture_output=True, text=True, check=False)
        return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]

    def stop(self):
        if self.started:
            subprocess.run(["docker", "rm", "-f", self.name], capture_output=True, check=False)
            self.started = False
        shutil.rmtree(self.tmp, ignore_errors=True)


class EchoUpstream:
    """A stdlib upstream on 127.0.0.1: every request answers {"upstream", "method", "path", "headers"} (and is
    recorded); a path ending in /events streams two SSE events, the second only once `release` is set, so a
    client that sees the first before that saw a stream, not a buffered answer; a path ending in /sleep answers
    after `sleep` seconds; an Upgrade: websocket request gets a WebSocket that echoes text frames, prefixed with
    the upstream's name."""

    def __init__(self, name, sleep=8):
        self.name = name
        self.sleep = sleep
        self.requests = []
        self.release = threading.Event()
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def handle_one(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                seen = dict((k.lower(), v) for k, v in self.headers.items())
                upstream.requests.append({"method": self.command, "path": self.path, "headers": seen})
                if seen.get("upgrade", "").lower() == "websocket":
                    return self.websocket(seen)
                if self.path.split("?")[0].endswith("/events"):
                    return self.events()
                if self.path.split("?")[0].endswith("/sleep"):
                    time.sleep(upstream.sleep)
                body = json.dumps({"upstream": upstream.name, "method": self.command, "path": self.path,
                                   "headers": seen}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = handle_one

            def events(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for number, event in enumerate((b"data: one\n\n", b"data: two\n\n")):
                    if number:
                        upstream.release.wait(15)
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def websocket(self, seen):
                accept = base64.b64encode(hashlib.sha1((seen["sec-websocket-key"] + WS_GUID).encode()).digest())
                self.send_response(101)
                self.send_header("Upgrade", "websocket")
                self.send_header("Connection", "Upgrade")
                self.send_header("Sec-WebSocket-Accept", accept.decode())
                self.end_headers()
                self.wfile.flush()
                self.close_connection = True
                while True:
                    head = self.rfile.read(2)
                    if len(head) < 2:
                        return
                    opcode, size = head[0] & 0x0F, head[1] & 0x7F
                    if size == 126:
                        size = struct.unpack("!H", self.rfile.read(2))[0]
                    elif size == 127:
                        size = struct.unpack("!Q", self.rfile.read(8))[0]
                    mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
                    data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(size)))
                    if opcode == 0x8:  # close: answer it, then the connection ends
                        self.frame(0x8, data[:2])
                        return
                    if opcode == 0x9:
                        self.frame(0xA, data)
                    elif opcode == 0x1:
                        self.frame(0x1, ("%s: %s" % (upstream.name, data.decode())).encode())

            def frame(self, opcode, payload):
                size = len(payload)
                if size < 126:
                    head = bytes([0x80 | opcode, size])
                elif size < 65536:
                    head = bytes([0x80 | opcode, 126]) + struct.pack("!H", size)
                else:
                    head = bytes([0x80 | opcode, 127]) + struct.pack("!Q", size)
                self.wfile.write(head + payload)
                self.wfile.flush()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def stop(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
