"""SSE + WebSocket test app: token streams, a WebSocket echo and a mirror of the request headers, so
tests can see what a gateway in front of it buffers, forwards or strips."""
