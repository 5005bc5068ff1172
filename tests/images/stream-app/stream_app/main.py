"""HTTP and WebSocket API of the stream app.

  GET  /                         {"app": "stream-app", "version"}
  GET  /health                   {"status": "ok", "version"}
  GET  /version                  {"version"}
  GET  /stream?tokens=&interval_ms=   text/event-stream: data: {"token": i, "version"} ..., then data: [DONE]
  POST /stream                   the same, parameters in a JSON body {"tokens", "interval_ms"}
  GET  /headers                  the request headers as received (lower-case names)
  WS   /ws                       echo: each text message comes back as {"echo": message, "version"}
  GET|POST /mcp                  {"mcp": "ok", "name", "version"}: the stand-in for an MCP server's endpoint
  PUT  /notes/{name}             the body, kept as a file in $DATA_DIR (default /app/data): an app's data on disk
  GET  /notes/{name}             {"name", "text"} of a note kept, 404 for one that is not there
  POST /chat                     {"message", "model"}: asks Ollama at $OLLAMA_URL (POST /api/generate, not streamed),
                                 as the operators' AI studio backend did: {"response", "model"}; 503 without it
  GET  /upstreams                each URL of $MCP_SERVERS (comma-separated) asked with GET: {url: {"status", "body"}
                                 or {"error"}}, to show which servers the app reaches by name

Each path above is also served under any prefix (/api/design/stream, /api/voice/ws): the last segment picks the
handler, so the app stands in for apps whose routes live under their own paths.

A request that carries Authorization or X-Streaming-Proxy-Key (headers a gateway should strip) is logged as a
warning naming the header, never its value.
"""
import asyncio
import json
import logging
import os
import socket
import urllib.error
import urllib.request

from fastapi import FastAPI, HTTPException, Query, Request, WebSocket
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

VERSION = os.environ.get("APP_VERSION", "dev")
NAME = os.environ.get("APP_NAME", socket.gethostname())
DATA_DIR = os.environ.get("DATA_DIR", "/app/data")
MAX_TOKENS = 100000
MAX_INTERVAL_MS = 60000
# Lower-case name -> the name as logged.
SENSITIVE_HEADERS = {"authorization": "Authorization", "x-streaming-proxy-key": "X-Streaming-Proxy-Key"}

# The app's own log lines (uvicorn configures its loggers itself; the root logger is left alone).
log = logging.getLogger("stream_app")
_handler = logging.StreamHandler()
_handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
log.addHandler(_handler)
log.setLevel(logging.INFO)
log.propagate = False


class WarnSensitiveHeaders:
    """ASGI middleware: HTTP requests and WebSocket handshakes alike, before any route runs."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            names = set(name.decode("latin-1").lower() for name, _value in scope["headers"])
            # A WebSocket handshake is a GET too; its scope has no method.
            what = scope.get("method", "GET") + " " + scope["path"] + (" (WebSocket)" if scope["type"] == "websocket" else "")
            for name in sorted(names & set(SENSITIVE_HEADERS)):
                log.warning("%s: the request carries an %s header (a gateway should strip it)", what, SENSITIVE_HEADERS[name])
        await self.app(scope, receive, send)


app = FastAPI(title="stream-app", version=VERSION)
app.add_middleware(WarnSensitiveHeaders)


class StreamRequest(BaseModel):
    tokens: int = Field(20, ge=0, le=MAX_TOKENS)
    interval_ms: int = Field(100, ge=0, le=MAX_INTERVAL_MS)


@app.get("/")
def root():
    return {"app": "stream-app", "version": VERSION}


@app.get("/health")
@app.get("/{prefix:path}/health")
def health():
    return {"status": "ok", "version": VERSION}


@app.get("/version")
@app.get("/{prefix:path}/version")
def version():
    return {"version": VERSION}


@app.get("/headers")
@app.get("/{prefix:path}/headers")
def headers(request: Request):
    # Repeated headers are joined as HTTP allows (", "), so none is lost from the answer.
    seen = {}
    for name, value in request.headers.items():
        seen[name] = seen[name] + ", " + value if name in seen else value
    return seen


async def events(tokens, interval_ms):
    for i in range(tokens):
        if i:
            await asyncio.sleep(interval_ms / 1000.0)
        yield "data: %s\n\n" % json.dumps({"token": i, "version": VERSION})
    yield "data: [DONE]\n\n"


def event_stream(tokens, interval_ms):
    # X-Accel-Buffering: no tells nginx not to buffer, so each event reaches the client as it is sent.
    return StreamingResponse(events(tokens, interval_ms), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@app.get("/stream")
@app.get("/{prefix:path}/stream")
def stream_get(tokens: int = Query(20, ge=0, le=MAX_TOKENS), interval_ms: int = Query(100, ge=0, le=MAX_INTERVAL_MS)):
    return event_stream(tokens, interval_ms)


@app.post("/stream")
@app.post("/{prefix:path}/stream")
def stream_post(req: StreamRequest):
    return event_stream(req.tokens, req.interval_ms)


@app.websocket("/ws")
@app.websocket("/{prefix:path}/ws")
async def ws_echo(websocket: WebSocket):
    await websocket.accept()
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is None:
            # Binary frames are not part of this API: 1003 is "unsupported data".
            await websocket.close(code=1003)
            return
        await websocket.send_text(json.dumps({"echo": message["text"], "version": VERSION}))


@app.api_route("/mcp", methods=["GET", "POST"])
@app.api_route("/{prefix:path}/mcp", methods=["GET", "POST"])
def mcp():
    return {"mcp": "ok", "name": NAME, "version": VERSION}


def ask(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return {"status": resp.status, "body": json.loads(resp.read().decode("utf-8") or "null")}
    except urllib.error.HTTPError as e:
        return {"status": e.code}
    except (OSError, ValueError) as e:
        return {"error": str(e)}


def note_path(name):
    if not name.replace("-", "").replace("_", "").isalnum():
        raise HTTPException(status_code=400, detail="a note's name is letters, digits, - and _")
    return os.path.join(DATA_DIR, name + ".txt")


@app.put("/notes/{name}")
@app.put("/{prefix:path}/notes/{name}")
async def note_put(name: str, request: Request):
    path = note_path(name)
    with open(path + ".tmp", "wb") as f:
        f.write(await request.body())
    os.replace(path + ".tmp", path)
    return {"name": name, "stored": True}


@app.get("/notes/{name}")
@app.get("/{prefix:path}/notes/{name}")
def note_get(name: str):
    try:
        with open(note_path(name), encoding="utf-8") as f:
            return {"name": name, "text": f.read()}
    except FileNotFoundError:
        raise HTTPException(status_code=404, detail="no note %s" % name) from None


class ChatRequest(BaseModel):
    message: str = Field(..., max_length=10000)
    model: str = Field(..., max_length=200)


@app.post("/chat")
@app.post("/{prefix:path}/chat")
def chat(req: ChatRequest):
    base = os.environ.get("OLLAMA_URL", "").rstrip("/")
    if not base:
        raise HTTPException(status_code=503, detail="no OLLAMA_URL")
    body = json.dumps({"model": req.model, "prompt": req.message, "stream": False}).encode()
    request = urllib.request.Request(base + "/api/generate", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as resp:
            answer = json.loads(resp.read().decode("utf-8"))
    except urllib.error.HTTPError as e:
        raise HTTPException(status_code=502, detail="Ollama answered %d" % e.code) from None
    except (OSError, ValueError) as e:
        raise HTTPException(status_code=502, detail="Ollama: %s" % e) from None
    return {"response": answer.get("response", ""), "model": answer.get("model", req.model)}


@app.get("/upstreams")
@app.get("/{prefix:path}/upstreams")
def upstreams():
    urls = [url.strip() for url in os.environ.get("MCP_SERVERS", "").split(",") if url.strip()]
    return dict((url, ask(url)) for url in urls)
