"""Reference agent service: a chat API that keeps conversations in PostgreSQL and asks an
OpenAI-compatible LLM server (vLLM) for the replies."""
