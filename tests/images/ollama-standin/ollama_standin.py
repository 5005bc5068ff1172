"""A stand-in for `ollama serve` (ollama/ollama 0.12.6): the subset of Ollama's HTTP API the ollama role and the
stack use, answered as docs/api.md and docs/openai.md of ollama/ollama describe it, with no model behind it.

- GET /, GET /api/version, GET /api/tags (the models pulled, from OLLAMA_MODELS as Ollama lays them out:
  manifests/registry.ollama.ai/library/<name>/<tag>, so they survive a new container on the same volume);
- POST /api/pull {"model"} with streamed NDJSON progress ("pulling manifest", "pulling <digest>" with total and
  completed, "verifying sha256 digest", "writing manifest", "success"), or {"error": ...} for a model the library
  does not have; "stream": false answers once;
- POST /api/chat, /api/generate (one short answer);
- GET /v1/models, POST /v1/chat/completions and /v1/completions (OpenAI's shapes, SSE with data: [DONE] when
  streamed); a model not pulled is a 404 "model ... not found, try pulling it first".

Settings (environment): OLLAMA_HOST (default 0.0.0.0:11434, as the official image sets it), OLLAMA_MODELS,
OLLAMA_STANDIN_LIBRARY (the models a pull finds, comma-separated), OLLAMA_STANDIN_PULL_SECONDS (how long a pull
takes), OLLAMA_STANDIN_MODEL_BYTES (a model's size)."""
import hashlib
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "0.12.6"
MODELS = os.environ.get("OLLAMA_MODELS") or os.path.expanduser("~/.ollama/models")
# The models a pull finds (Ollama's library), comma-separated.
_LIBRARY = os.environ.get("OLLAMA_STANDIN_LIBRARY", "qwen3:0.6b,tinyllama:latest,llama3.2:3b,gemma3:270m")
LIBRARY = [m.strip() for m in _LIBRARY.split(",") if m.strip()]
PULL_SECONDS = float(os.environ.get("OLLAMA_STANDIN_PULL_SECONDS", "2"))
MODEL_BYTES = int(os.environ.get("OLLAMA_STANDIN_MODEL_BYTES", str(522 * 1024 * 1024)))
LOCK = threading.Lock()


def full_name(model):
    """'qwen3:0.6b' as it is, 'llama3.2' -> 'llama3.2:latest' (Ollama's default tag)."""
    model = (model or "").strip()
    return model if ":" in model.rsplit("/", 1)[-1] else model + ":latest"


def manifest_path(model):
    name, tag = full_name(model).split(":", 1)
    if "/" not in name:
        name = "library/" + name
    return os.path.join(MODELS, "manifests", "registry.ollama.ai", name, tag)


def digest_of(model):
    return "sha256:" + hashlib.sha256(full_name(model).encode()).hexdigest()


def pulled():
    """[(name, manifest path)] of the models on disk."""
    root = os.path.join(MODELS, "manifests", "registry.ollama.ai")
    found = []
    for folder, _dirs, files in os.walk(root):
        for tag in files:
            name = os.path.relpath(folder, root)
            name = name[len("library/"):] if name.startswith("library/") else name
            found.append(("%s:%s" % (name, tag), os.path.join(folder, tag)))
    return sorted(found)


def is_pulled(model):
    return os.path.isfile(manifest_path(model))


def in_library(model):
    return full_name(model) in [full_name(m) for m in LIBRARY]


def iso(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + ".000000000Z"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ollama-standin/" + VERSION

    def log_message(self, fmt, *args):  # one line per request, like Ollama's GIN log
        sys.stdout.write("[GIN] %s | %s\n" % (time.strftime("%Y/%m/%d - %H:%M:%S"), fmt % args))

    # -- plumbing
    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return None

    def send_json(self, status, data, content_type="application/json; charset=utf-8"):
        payload = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def start_chunked(self, content_type):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def end_chunks(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def openai_error(self, status, message, kind):
        self.send_json(status, {"error": {"message": message, "type": kind, "param": None, "code": None}})

    # -- routes
    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        if self.path == "/":
            text = b"Ollama is running"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)
        elif self.path == "/api/version":
            self.send_json(200, {"version": VERSION})
        elif self.path == "/api/tags":
            models = []
            for name, path in pulled():
                st = os.stat(path)
                models.append({"name": name, "model": name, "modified_at": iso(st.st_mtime), "size": MODEL_BYTES,
                               "digest": digest_of(name)[len("sha256:"):],
                               "details": {"parent_model": "", "format": "gguf", "family": name.split(":")[0],
                                           "families": [name.split(":")[0]], "parameter_size": "0.6B",
                                           "quantization_level": "Q4_K_M"}})
            self.send_json(200, {"models": models})
        elif self.path == "/v1/models":
            self.send_json(200, {"object": "list", "data": [
                {"id": name, "object": "model", "created": int(os.stat(path).st_mtime), "owned_by": "library"}
                for name, path in pulled()]})
        else:
            self.send_json(404, {"error": "404 page not found"})

    def do_POST(self):
        req = self.body()
        if req is None:
            self.send_json(400, {"error": "invalid character in request body"})
            return
        routes = {"/api/pull": self.pull, "/api/chat": self.native, "/api/generate": self.native,
                  "/v1/chat/completions": self.openai, "/v1/completions": self.openai}
        handler = routes.get(self.path)
        if handler is None:
            self.send_json(404, {"error": "404 page not found"})
            return
        handler(req)

    def pull(self, req):
        model = req.get("model") or req.get("name") or ""
        stream = req.get("stream", True) is not False
        if not model:
            self.send_json(400, {"error": "model is required"})
            return
        if not in_library(model):
            error = {"error": "pull model manifest: file does not exist"}
            if stream:  # Ollama has sent its 200 and the first status before it knows
                self.start_chunked("application/x-ndjson")
                self.chunk(json.dumps({"status": "pulling manifest"}).encode() + b"\n")
                self.chunk(json.dumps(error).encode() + b"\n")
                self.end_chunks()
            else:
                self.send_json(500, error)
            return
        digest = digest_of(model)
        steps = 10
        events = [{"status": "pulling manifest"}]
        # As Ollama: "pulling <short digest>" (docs/api.md shows "downloading <digest>"), no "completed" until some
        # of the layer is there.
        status = "pulling %s" % digest[len("sha256:"):][:12]
        events += [{"status": status, "digest": digest, "total": MODEL_BYTES}]
        events += [{"status": status, "digest": digest, "total": MODEL_BYTES, "completed": MODEL_BYTES * i // steps}
                   for i in range(1, steps + 1)]
        events += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"},
                   {"status": "removing any unused layers"}, {"status": "success"}]
        if stream:
            self.start_chunked("application/x-ndjson")
        for i, event in enumerate(events):
            if event["status"] == "writing manifest":
                self.write_manifest(model, digest)
            if stream:
                self.chunk(json.dumps(event).encode() + b"\n")
            if event.get("total") and i < len(events) - 1:
                time.sleep(PULL_SECONDS / (steps + 1))
        if stream:
            self.end_chunks()
        else:
            self.send_json(200, {"status": "success"})

    @staticmethod
    def write_manifest(model, digest):
        path = manifest_path(model)
        with LOCK:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                json.dump({"schemaVersion": 2, "layers": [{"digest": digest, "size": MODEL_BYTES,
                                                           "mediaType": "application/vnd.ollama.image.model"}]}, f)
            os.rename(tmp, path)

    def native(self, req):
        model = req.get("model") or ""
        if not is_pulled(model):
            self.send_json(404, {"error": "model '%s' not found" % model})
            return
        answer = {"model": model, "created_at": iso(time.time()), "done": True, "done_reason": "stop"}
        if self.path == "/api/chat":
            answer["message"] = {"role": "assistant", "content": "stand-in"}
        else:
            answer["response"] = "stand-in"
        answer.update(total_duration=1000000, load_duration=1000, prompt_eval_count=1, prompt_eval_duration=1000,
                      eval_count=1, eval_duration=1000)
        self.send_json(200, answer)

    def openai(self, req):
        model = req.get("model") or ""
        if not is_pulled(model):
            self.openai_error(404, 'model "%s" not found, try pulling it first' % model, "api_error")
            return
        chat = self.path == "/v1/chat/completions"
        words = ["stand", "-in", " answer"][:max(1, int(req.get("max_tokens") or req.get("max_completion_tokens") or 3))]
        ident = "chatcmpl-%d" % (time.time() * 1000) if chat else "cmpl-%d" % (time.time() * 1000)
        kind = "chat.completion" if chat else "text_completion"
        created = int(time.time())
        usage = {"prompt_tokens": 1, "completion_tokens": len(words), "total_tokens": 1 + len(words)}
        finish = "length" if len(words) < 3 else "stop"
        if not req.get("stream"):
            text = "".join(words)
            choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
                      if chat else {"index": 0, "text": text, "finish_reason": finish})
            self.send_json(200, {"id": ident, "object": kind, "created": created, "model": model,
                                 "system_fingerprint": "fp_ollama", "choices": [choice], "usage": usage})
            return
        self.start_chunked("text/event-stream")
        for i, word in enumerate(words):
            last = i == len(words) - 1
            choice = ({"index": 0, "delta": {"role": "assistant", "content": word},
                       "finish_reason": finish if last else None}
                      if chat else {"index": 0, "text": word, "finish_reason": finish if last else None})
            event = {"id": ident, "object": kind + (".chunk" if chat else ""), "created": created, "model": model,
                     "system_fingerprint": "fp_ollama", "choices": [choice]}
            self.chunk(b"data: " + json.dumps(event).encode() + b"\n\n")
            time.sleep(0.05)
        self.chunk(b"data: [DONE]\n\n")
        self.end_chunks()


def main(argv):
    if argv[:1] in (["--version"], ["-v"]):
        print("ollama version is %s" % VERSION)
        return 0
    if argv[:1] != ["serve"]:
        sys.stderr.write("the ollama stand-in runs `ollama serve` only (and --version)\n")
        return 2
    host, _sep, port = os.environ.get("OLLAMA_HOST", "0.0.0.0:11434").rpartition(":")
    server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)
    server.daemon_threads = True
    sys.stdout.write("Listening on %s:%s (version %s)\n" % (host, port, VERSION))
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
