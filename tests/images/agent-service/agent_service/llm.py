"""Client for an OpenAI-compatible chat completions endpoint (vLLM), plain and streamed."""
import json
from typing import AsyncIterator, Dict, List

import httpx


class LLMError(Exception):
    """The LLM could not be reached or answered with an error. The message never holds the key."""


class LLMClient:
    def __init__(self, base_url: str, api_key: str, model: str, timeout: float):
        self.url = base_url + "/chat/completions"
        self.model = model
        self.headers = {"Authorization": "Bearer " + api_key} if api_key else {}
        # One client (connection pool) for the whole app; the timeout applies per read, so a long
        # streamed answer is fine as long as chunks keep coming.
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=10.0))

    async def close(self):
        await self.http.aclose()

    def _body(self, messages: List[Dict[str, str]], stream: bool):
        return {"model": self.model, "messages": messages, "stream": stream}

    async def complete(self, messages: List[Dict[str, str]]) -> str:
        """The whole reply at once."""
        try:
            r = await self.http.post(self.url, json=self._body(messages, False), headers=self.headers)
        except httpx.HTTPError as e:
            raise LLMError("LLM unreachable: %s" % type(e).__name__) from e
        if r.status_code != 200:
            raise LLMError("LLM answered HTTP %d: %s" % (r.status_code, r.text[:200]))
        return r.json()["choices"][0]["message"]["content"] or ""

    async def stream(self, messages: List[Dict[str, str]]) -> AsyncIterator[str]:
        """The reply piece by piece, as the server sends it (server-sent events)."""
        try:
            async with self.http.stream("POST", self.url, json=self._body(messages, True),
                                        headers=self.headers) as r:
                if r.status_code != 200:
                    await r.aread()
                    raise LLMError("LLM answered HTTP %d: %s" % (r.status_code, r.text[:200]))
                async for line in r.aiter_lines():
                    if not line.startswith("data:"):
                        continue  # blank separators, comments (keep-alives)
                    data = line[len("data:"):].strip()
                    if data == "[DONE]":
                        break
                    for choice in json.loads(data).get("choices", []):
                        piece = (choice.get("delta") or {}).get("content")
                        if piece:
                            yield piece
        except httpx.HTTPError as e:
            raise LLMError("LLM stream failed: %s" % type(e).__name__) from e
