"""Server-sent events as a client receives them."""
import time


def arrivals(resp):
    """[(monotonic time, line)] of each `data:` line of an open text/event-stream response, read from its socket
    as it comes, up to `data: [DONE]`."""
    found = []
    while not found or found[-1][1].strip() != b"data: [DONE]":
        line = resp.fp.readline()
        assert line, "the stream ended before [DONE]"
        if line.startswith(b"data:"):
            found.append((time.monotonic(), line))
    return found
