"""Settings, all from the environment (the deployment writes them to an env file)."""
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    # SQLAlchemy URL. It may leave out user, password and database: libpq then takes PGUSER,
    # PGPASSWORD and PGDATABASE from the environment, so the password need not be in the URL.
    database_url: str
    llm_base_url: str        # OpenAI-compatible base URL, e.g. http://vllm:8000/v1
    llm_api_key: str         # sent as "Authorization: Bearer ..." (empty: no header)
    llm_model: str           # the served model name
    llm_timeout: float       # seconds to wait for the LLM (whole answer, or between streamed chunks)
    session_max_age_days: float  # sessions not updated for this long are deleted
    app_version: str
    client_header: str       # the header the gateway puts the client's name in


def load() -> Settings:
    return Settings(
        database_url=os.environ.get("DATABASE_URL", "postgresql://"),
        llm_base_url=os.environ.get("LLM_BASE_URL", "http://vllm:8000/v1").rstrip("/"),
        llm_api_key=os.environ.get("LLM_API_KEY", ""),
        llm_model=os.environ.get("LLM_MODEL", "default"),
        llm_timeout=float(os.environ.get("LLM_TIMEOUT_SECONDS", "120")),
        session_max_age_days=float(os.environ.get("SESSION_MAX_AGE_DAYS", "30")),
        app_version=os.environ.get("APP_VERSION", "dev"),
        client_header=os.environ.get("CLIENT_HEADER", "X-Llmstack-Client"),
    )
