"""`python3 -m stream_app`: serve the app with uvicorn on 0.0.0.0:$PORT (default 8000)."""
import os

import uvicorn

if __name__ == "__main__":
    # wsproto: the WebSocket implementation Debian's uvicorn depends on; named, so "auto" can't pick another.
    # uvicorn handles SIGTERM: it stops accepting, closes WebSockets (1012) and lets streams in flight finish.
    uvicorn.run("stream_app.main:app", host="0.0.0.0", port=int(os.environ.get("PORT", "8000")), ws="wsproto",
                log_level=os.environ.get("LOG_LEVEL", "info").lower())
