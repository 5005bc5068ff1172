"""`python3 -m agent_service`: serve the app with uvicorn on 0.0.0.0:$PORT (default 8000)."""
import os

import uvicorn

if __name__ == "__main__":
    # uvicorn handles SIGTERM: it stops accepting, lets requests in flight finish, then exits.
    # Behind a proxy, set FORWARDED_ALLOW_IPS (read by uvicorn) so access logs show client addresses.
    uvicorn.run("agent_service.main:app", host="0.0.0.0", port=int(os.environ.get("PORT", "8000")),
                log_level=os.environ.get("LOG_LEVEL", "info").lower())
