"""HTTP API of the agent service.

  GET  /health          200 {"status": "ok", "version"} when the database answers, else 503
  GET  /version         {"version": APP_VERSION}
  POST /chat            {"session_id"?, "message", "stream"?} -> {"session_id", "reply", "client"} or SSE
  GET  /sessions/{id}   the stored messages of a session
  POST /admin/cleanup   delete sessions idle for SESSION_MAX_AGE_DAYS now -> {"deleted": n}

A weekly job does the same cleanup. Nothing here logs the LLM key or the database password.
The client is who the gateway says it is: its name in CLIENT_HEADER (the gateway replaces any copy a client
sends). The gateway never forwards a client's Authorization header; one that arrives is logged (not its value).
"""
import json
import logging
import uuid
from typing import Optional

from apscheduler.schedulers.background import BackgroundScheduler
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from . import config, db
from .llm import LLMClient, LLMError

# The app's own log lines (uvicorn configures its loggers itself; the root logger is left alone).
log = logging.getLogger("agent_service")
_handler = logging.StreamHandler()
_handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
log.addHandler(_handler)
log.setLevel(logging.INFO)
log.propagate = False

settings = config.load()
engine = db.make_engine(settings.database_url)
llm = LLMClient(settings.llm_base_url, settings.llm_api_key, settings.llm_model, settings.llm_timeout)
scheduler = BackgroundScheduler(timezone="UTC")
app = FastAPI(title="agent-service", version=settings.app_version)


class ChatRequest(BaseModel):
    session_id: Optional[uuid.UUID] = None  # omit to start a new conversation
    message: str = Field(..., min_length=1)
    stream: bool = False


@app.on_event("startup")
def startup():
    log.info("version %s; database %s; LLM %s model %s", settings.app_version, db.safe_url(engine),
             settings.llm_base_url, settings.llm_model)
    db.create_tables(engine)  # waits up to 60 s for the database, then gives up (the container exits)
    scheduler.add_job(db.delete_old_sessions, "interval", weeks=1, args=[engine, settings.session_max_age_days],
                      id="session-cleanup")
    scheduler.start()


@app.on_event("shutdown")
async def shutdown():
    scheduler.shutdown(wait=False)
    await llm.close()
    engine.dispose()


@app.get("/health")
def health():
    try:
        db.ping(engine)
    except Exception as e:  # any failure means "not ready"; the type is enough for the log
        log.warning("health: database check failed: %s", type(e).__name__)
        return JSONResponse({"status": "unavailable"}, status_code=503)
    return {"status": "ok", "version": settings.app_version}


@app.get("/version")
def version():
    return {"version": settings.app_version}


def client_of(request: Request) -> str:
    if "authorization" in request.headers:
        log.warning("%s %s: the request carries an Authorization header (the gateway should strip it)",
                    request.method, request.url.path)
    return request.headers.get(settings.client_header, "")


@app.post("/chat")
async def chat(req: ChatRequest, request: Request):
    client = client_of(request)
    try:
        history = await run_in_threadpool(db.history, engine, req.session_id)
    except db.SessionNotFound:
        raise HTTPException(404, "unknown session")
    session_id = req.session_id or uuid.uuid4()
    messages = history + [{"role": "user", "content": req.message}]

    if req.stream:
        # X-Accel-Buffering: no tells nginx not to buffer, so events reach the client as they come.
        return StreamingResponse(stream_reply(session_id, messages, req.message), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    try:
        reply = await llm.complete(messages)
    except LLMError as e:
        log.warning("chat %s: %s", session_id, e)
        raise HTTPException(502, "the language model is unavailable")
    await run_in_threadpool(db.save_turn, engine, session_id, req.message, reply)
    return {"session_id": str(session_id), "reply": reply, "client": client}


def sse(obj) -> str:
    return "data: %s\n\n" % json.dumps(obj)


async def stream_reply(session_id, messages, user_message):
    """SSE: {"session_id"} first, then {"delta": text} per LLM chunk, then [DONE] once the turn is stored.

    If the client goes away, Starlette cancels this generator; the LLM request is closed with it and
    nothing is stored.
    """
    yield sse({"session_id": str(session_id)})
    pieces = []
    try:
        async for piece in llm.stream(messages):
            pieces.append(piece)
            yield sse({"delta": piece})
    except LLMError as e:
        log.warning("chat %s: %s", session_id, e)
        yield sse({"error": "the language model is unavailable"})
        return
    await run_in_threadpool(db.save_turn, engine, session_id, user_message, "".join(pieces))
    yield "data: [DONE]\n\n"


@app.get("/sessions/{session_id}")
def get_session(session_id: uuid.UUID):
    try:
        return db.session_messages(engine, session_id)
    except db.SessionNotFound:
        raise HTTPException(404, "unknown session")


@app.post("/admin/cleanup")
def cleanup():
    # Runs the weekly job now. Keep /admin off the public route (the gateway should not expose it).
    return {"deleted": db.delete_old_sessions(engine, settings.session_max_age_days)}
