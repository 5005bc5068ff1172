"""A stand-in for `vllm serve` (vLLM 0.33.0) for tests: same command line, same HTTP surface, no model.

The command line is parsed with a parser built from serve-flags-0.33.0.json, which was dumped from
vLLM 0.33.0's own parser (make_arg_parser, by extract.py), so every real flag is accepted and anything
else fails like the real server does (argparse error, exit 2).

The "model" answers deterministically with what it received:
  chat:        "echo(<number of messages>): <content of the last user message>"
  completions: "echo(1): <prompt>"
one word per token, STANDIN_TOKEN_DELAY_MS (default 30) per token, `max_tokens` caps the words.
STANDIN_LOAD_SECONDS (default 0) simulates model loading: the port is bound but not listening.
"""
import argparse
import hmac
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "0.33.0"
FLAGS_FILE = "serve-flags-%s.json" % VERSION
# Paths the real server guards with --api-key (GUARDED_PREFIX in vllm/entrypoints/serve/middleware/authenticate.py).
GUARDED_PREFIXES = ("/v1", "/v2", "/inference", "/cohere")


# ---------------------------------------------------------------------------------------------------
# Command line: an argparse parser generated from the flag list of the real release.
# ---------------------------------------------------------------------------------------------------

def human_readable_int(value):
    """vLLM's parser for sizes: 1k = 1000, 1K = 1024, 25.6k = 25600, plain ints as they are."""
    value = value.strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmMgGtT])", value)
    if match:
        number, suffix = match.groups()
        if suffix.islower():
            return int(float(number) * 1000 ** ("kmgt".index(suffix) + 1))
        if "." in number:  # like vLLM: no decimals with binary suffixes
            raise argparse.ArgumentTypeError("decimals are not allowed with binary suffixes like %s" % suffix)
        return int(number) * 1024 ** ("KMGT".index(suffix) + 1)
    return int(value)


def human_readable_int_or_auto(value):
    if value.strip().lower() in ("auto", "-1"):
        return -1
    return human_readable_int(value)


def _optional_type(value):
    # vLLM wraps an inner type the flag list does not record; "" and "None" mean None, as in vLLM.
    return None if value in ("", "None") else value


def loads(value):
    return json.loads(value)  # a JSON error becomes "invalid loads value", as in vLLM


# Types named in the flag list. Types not listed (dataclass and dict parsers, lambdas) take any string.
TYPES = {
    "int": int,
    "float": float,
    "str": str,
    "loads": loads,
    "human_readable_int": human_readable_int,
    "human_readable_int_or_auto": human_readable_int_or_auto,
    "_optional_type": _optional_type,
}


class StrChoices(list):
    """The flag list stores choices as strings; compare the converted value the same way."""

    def __contains__(self, value):
        return str(value) in list(self)


def find_flags_file():
    return os.path.join(os.path.dirname(os.path.realpath(__file__)), FLAGS_FILE)  # installed side by side


def is_negative(flag, dest):
    """True for the flag of a boolean pair that sets dest to False (--no-x, or --disable-x for enable_x)."""
    name = flag.lstrip("-").replace("-", "_")
    if name == "no_" + dest:
        return True
    for a, b in (("enable_", "disable_"), ("disable_", "enable_")):
        if dest.startswith(a) and name == b + dest[len(a):]:
            return True
    return False


def build_parser():
    with open(find_flags_file()) as f:
        spec = json.load(f)
    parser = argparse.ArgumentParser(prog="vllm serve", usage="vllm serve [model_tag] [options]", allow_abbrev=True,
                                     description="vLLM %s stand-in: start the OpenAI-compatible server." % VERSION)
    parser.add_argument("model_tag", nargs="?", help="The model tag to serve (optional if in --model or --config).")
    for row in spec["flags"]:
        flags, dest, default = row["flags"], row["dest"], row["default"]
        help_text = (row.get("help") or "").replace("%", "%%")
        if row["nargs"] == 0:
            # Boolean flags: store_true, or a pair like --enable-x/--disable-x sharing one dest.
            positive = [f for f in flags if not is_negative(f, dest)]
            negative = [f for f in flags if is_negative(f, dest)]
            if positive:
                parser.add_argument(*positive, dest=dest, action="store_const", const=True, default=default,
                                    help=help_text)
            if negative:
                parser.add_argument(*negative, dest=dest, action="store_const", const=False, default=default,
                                    help=argparse.SUPPRESS)
            continue
        kwargs = {"dest": dest, "default": default, "help": help_text,
                  "type": TYPES.get(row["type"], str)}
        if row["nargs"] is not None:
            kwargs["nargs"] = row["nargs"]
            if row["nargs"] == "?":
                kwargs["const"] = True  # --hf-token alone means "use the stored token"
        elif row["type"] == "str" and isinstance(default, list):
            kwargs["action"] = "append"  # repeatable flags such as --middleware
        if row["choices"]:
            kwargs["choices"] = StrChoices(row["choices"])
        parser.add_argument(*flags, **kwargs)
    return parser


def yaml_scalar(text):
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        return [yaml_scalar(t) for t in text[1:-1].split(",") if t.strip()]
    if text in ("true", "True", "yes"):
        return True
    if text in ("false", "False", "no"):
        return False
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    try:
        return json.loads(text)
    except ValueError:
        return text


def config_file_args(path):
    """--config FILE: a flat YAML map of option: value (the common subset; no PyYAML in the image)."""
    config, key = {}, None
    with open(path) as f:
        for line in f:
            line = line.split(" #")[0].rstrip()
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line.lstrip().startswith("- ") and key:
                config.setdefault(key, [])
                if not isinstance(config[key], list):
                    config[key] = []
                config[key].append(yaml_scalar(line.lstrip()[2:]))
            elif ":" in line:
                key, value = (part.strip() for part in line.split(":", 1))
                config[key] = yaml_scalar(value) if value else []
    args = []
    for key, value in config.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is False:
            continue
        elif isinstance(value, list):
            args += [flag] + [str(v) for v in value]
        elif isinstance(value, dict):
            args += [flag, json.dumps(value)]
        else:
            args += [flag, str(value)]
    return args


def normalise(argv):
    """What vLLM's FlexibleArgumentParser does before argparse sees the arguments."""
    out, dotted, i = [], {}, 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg.startswith("--"):
            key, eq, value = arg.partition("=")
            flag, dot, sub = key.partition(".")
            key = flag.replace("_", "-") + dot + sub  # --max_model_len == --max-model-len (not in .sub.keys)
            arg = key + eq + value
        elif re.fullmatch(r"-O\d", arg):
            arg = key = "--optimization-level=" + arg[2:]  # -O3 == --optimization-level 3
            eq = ""
        else:
            key, eq, value = arg.partition("=")
        if arg.startswith("-") and "." in key and not re.fullmatch(r"-?[\d.]+", key):
            # --compilation-config.mode=3 / -cc.mode 3: merged into one JSON value for the flag.
            if not eq:
                value = argv[i] if i < len(argv) else ""
                i += 1
            flag, *path = key.split(".")
            node = dotted.setdefault(flag, {})
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = yaml_scalar(value)
            continue
        out.append(arg)
    for flag, value in dotted.items():
        out += [flag, json.dumps(value)]
    return out


def parse_serve_args(argv):
    parser = build_parser()
    argv = normalise(argv)
    # --config FILE: its options go first, so the command line wins.
    if "--config" in argv or any(a.startswith("--config=") for a in argv):
        probe = argparse.ArgumentParser(add_help=False)
        probe.add_argument("--config")
        known = probe.parse_known_args(argv)[0]
        if known.config:
            try:
                argv = normalise(config_file_args(known.config)) + argv
            except OSError as e:
                parser.error("cannot read --config %s: %s" % (known.config, e.strerror))
    args = parser.parse_args(argv)
    args.model = args.model_tag or args.model
    return args


# ---------------------------------------------------------------------------------------------------
# Server
# ---------------------------------------------------------------------------------------------------

def log(msg):
    print("INFO %s [stand-in] %s" % (time.strftime("%m-%d %H:%M:%S"), msg), flush=True)


def words_of(content):
    """Text of an OpenAI message content: a string or a list of parts."""
    if isinstance(content, list):
        content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


class Engine:
    """Counts requests like the real engine's scheduler gauges; --max-num-seqs bounds the running ones."""

    def __init__(self, max_num_seqs):
        self.lock = threading.Lock()
        self.running = self.waiting = self.in_flight = 0
        self.slots = threading.BoundedSemaphore(max_num_seqs)

    def add(self, field, n):
        with self.lock:
            setattr(self, field, getattr(self, field) + n)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streaming, like uvicorn
    server_version = "uvicorn"
    sys_version = ""

    # -- plumbing ----------------------------------------------------------------------------------
    def setup(self):
        super().setup()
        # Small SSE writes go out at once instead of waiting for an ACK (Nagle), as with uvicorn.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send_json(self, code, obj):
        data = json.dumps(obj, ensure_ascii=False).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.server.draining:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def error(self, code, message, kind="BadRequestError", param=None):
        self.send_json(code, {"error": {"message": message, "type": kind, "param": param, "code": code}})

    def read_json(self):
        try:
            body = json.loads(self.body or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self.error(400, "The request body must be a JSON object.")
            return None
        return body

    def log_message(self, fmt, *args):
        pass  # replaced by log_request: one line per request, request line only (no headers, no key)

    def log_request(self, code="-", size="-"):
        if not self.server.args.disable_uvicorn_access_log:
            print('INFO:     %s:%s - "%s" %s' % (self.client_address[0], self.client_address[1],
                                                 self.requestline, getattr(code, "value", code)), flush=True)

    def authorised(self):
        keys = self.server.api_keys
        path = self.path.split("?")[0]
        if not keys or self.command == "OPTIONS" or not path.startswith(GUARDED_PREFIXES):
            return True
        given = self.headers.get("Authorization", "")
        ok = False
        for key in keys:  # no early exit: compare against every key
            ok |= hmac.compare_digest(given.encode(), ("Bearer " + key).encode())
        return ok

    def do_GET(self):
        self.counted_route()

    def do_POST(self):
        self.counted_route()

    def counted_route(self):
        # Requests being handled (not idle keep-alive connections): what a drain on SIGTERM waits for.
        self.server.engine.add("in_flight", 1)
        try:
            # Read the body first, so an early answer (401, 404) leaves the keep-alive connection in step.
            self.body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.route()
        finally:
            self.server.engine.add("in_flight", -1)

    # -- routes ------------------------------------------------------------------------------------
    def route(self):
        if not self.authorised():
            return self.send_json(401, {"error": {"message": "Unauthorized", "type": "Unauthorized", "code": 401}})
        path = self.path.split("?")[0]
        routes = {
            ("GET", "/health"): self.health,
            ("GET", "/ping"): self.health,
            ("GET", "/version"): lambda: self.send_json(200, {"version": VERSION}),
            ("GET", "/metrics"): self.metrics,
            ("GET", "/v1/models"): self.models,
            ("POST", "/v1/chat/completions"): lambda: self.generate(chat=True),
            ("POST", "/v1/completions"): lambda: self.generate(chat=False),
        }
        handler = routes.get((self.command, path))
        if handler:
            return handler()
        if any(route[1] == path for route in routes):
            return self.send_json(405, {"detail": "Method Not Allowed"})
        self.send_json(404, {"detail": "Not Found"})

    def health(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def metrics(self):
        e, name = self.server.engine, self.server.names[0]
        lines = []
        for metric, value, text in (("vllm:num_requests_running", e.running, "Number of requests in model execution batches."),
                                    ("vllm:num_requests_waiting", e.waiting, "Number of requests waiting to be processed.")):
            # Label names and float values as the real server (prometheus_client) prints them.
            lines += ["# HELP %s %s" % (metric, text), "# TYPE %s gauge" % metric,
                      '%s{engine="0",model_name="%s"} %.1f' % (metric, name, value)]
        data = ("\n".join(lines) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def models(self):
        args = self.server.args
        created = int(self.server.started)
        self.send_json(200, {"object": "list", "data": [
            {"id": name, "object": "model", "created": created, "owned_by": "vllm", "root": args.model,
             "parent": None, "max_model_len": self.server.max_model_len, "permission": []}
            for name in self.server.names]})

    def generate(self, chat):
        body = self.read_json()
        if body is None:
            return
        model = body.get("model") or self.server.names[0]
        if model not in self.server.names:
            return self.error(404, "The model `%s` does not exist." % model, "NotFoundError", "model")
        if chat:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
                return self.error(400, "`messages` must be a non-empty list of messages.", param="messages")
            users = [m for m in messages if m.get("role") == "user"]
            last = words_of(users[-1].get("content")) if users else ""
            text = "echo(%d): %s" % (len(messages), last)
            prompt_tokens = sum(len(words_of(m.get("content")).split()) for m in messages)
        else:
            prompt = body.get("prompt")
            if isinstance(prompt, list):
                prompt = " ".join(str(p) for p in prompt)
            if not isinstance(prompt, str):
                return self.error(400, "`prompt` must be a string.", param="prompt")
            text = "echo(1): %s" % prompt
            prompt_tokens = len(prompt.split())
        words = text.split()
        finish = "stop"
        cap = body.get("max_completion_tokens") or body.get("max_tokens")
        if cap is not None:
            if not isinstance(cap, int) or cap < 1:
                return self.error(400, "max_tokens must be at least 1, got %r." % cap, param="max_tokens")
            if cap < len(words):
                words, finish = words[:cap], "length"
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
                 "total_tokens": prompt_tokens + len(words)}
        meta = {"id": ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex, "created": int(time.time()),
                "model": model}

        engine = self.server.engine
        engine.add("waiting", 1)
        engine.slots.acquire()
        engine.add("waiting", -1)
        engine.add("running", 1)
        try:
            if body.get("stream"):
                self.stream(chat, meta, words, finish, usage, body)
            else:
                time.sleep(self.server.delay * len(words))  # the time the tokens would take
                content = " ".join(words)
                if chat:
                    choice = {"index": 0, "message": {"role": "assistant", "content": content, "tool_calls": []},
                              "logprobs": None, "finish_reason": finish}
                else:
                    choice = {"index": 0, "text": content, "logprobs": None, "finish_reason": finish}
                self.send_json(200, dict(meta, object="chat.completion" if chat else "text_completion",
                                         choices=[choice], usage=usage))
        finally:
            engine.add("running", -1)
            engine.slots.release()

    def stream(self, chat, meta, words, finish, usage, body):
        """Server-sent events, one chunk per word, each written and flushed on its own (chunked encoding)."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        kind = "chat.completion.chunk" if chat else "text_completion"

        def event(payload):
            data = ("data: %s\n\n" % payload).encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def chunk(text, reason=None, first=False):
            if chat:
                delta = {"role": "assistant", "content": text} if first else {"content": text}
                choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
            else:
                choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}
            event(json.dumps(dict(meta, object=kind, choices=[choice]), ensure_ascii=False))

        try:
            if chat:
                chunk("", first=True)  # vLLM opens a chat stream with the role
            for i, word in enumerate(words):
                time.sleep(self.server.delay)
                chunk(word if i == 0 else " " + word, finish if i == len(words) - 1 else None)
            if (body.get("stream_options") or {}).get("include_usage"):
                event(json.dumps(dict(meta, object=kind, choices=[], usage=usage)))
            event("[DONE]")
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away: abort, as vLLM does


def make_server(args):
    host = args.host or "0.0.0.0"
    server_cls = ThreadingHTTPServer
    if ":" in host:
        server_cls = type("V6Server", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6})
    server = server_cls((host, args.port), Handler, bind_and_activate=False)
    server.daemon_threads = True  # exit does not wait for open connections; the drain below waits for requests
    server.args = args
    server.names = args.served_model_name or [args.model]
    env_key = os.environ.get("VLLM_API_KEY")
    server.api_keys = [k for k in (args.api_key or [env_key]) if k]
    server.delay = float(os.environ.get("STANDIN_TOKEN_DELAY_MS", "30")) / 1000
    server.engine = Engine(args.max_num_seqs or 256)
    server.max_model_len = args.max_model_len if args.max_model_len and args.max_model_len > 0 else 4096
    server.draining = False
    server.started = time.time()
    return server


def serve(argv):
    args = parse_serve_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())

    server = make_server(args)
    # The arguments that matter here, secrets masked.
    names = ("model", "served_model_name", "host", "port", "api_key", "max_model_len", "shutdown_timeout", "hf_token")
    shown = {k: ("<redacted>" if k in ("api_key", "hf_token") else v) for k, v in vars(args).items()
             if k in names and v not in (None, False, [], {})}
    log("vLLM API server version %s (stand-in); args: %s" % (VERSION, shown))
    # Like vLLM: the port is bound before the model loads, but nothing listens until it has loaded.
    server.server_bind()
    load = float(os.environ.get("STANDIN_LOAD_SECONDS", "0"))
    if load > 0:
        log("Loading model %s (%.0f s)..." % (args.model, load))
        if stop.wait(load):
            log("Interrupted while loading.")
            return 0
    server.server_activate()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log("Starting vLLM API server 0 on http://%s:%d" % (args.host or "0.0.0.0", args.port))
    print("INFO:     Application startup complete.", flush=True)

    stop.wait()
    log("Shutting down (--shutdown-timeout %d)." % args.shutdown_timeout)
    if args.shutdown_timeout > 0:
        # Drain: refuse new connections, let requests in flight finish, for at most N seconds.
        server.draining = True
        server.shutdown()
        server.server_close()
        deadline = time.monotonic() + args.shutdown_timeout
        while server.engine.in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        if server.engine.in_flight:
            log("Drain timed out with %d request(s) in flight; aborting them." % server.engine.in_flight)
    # With 0 (the default) requests in flight are aborted, as vLLM's engine client does.
    sys.stdout.flush()
    os._exit(0)


def main(argv):
    if argv[:1] in (["--version"], ["-v"]):
        print(VERSION)
        return 0
    if argv[:1] != ["serve"]:
        print("usage: vllm serve [model_tag] [options]\nvllm: error: this stand-in only implements `serve`",
              file=sys.stderr)
        return 2
    return serve(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
