"""The lab's Ollama stand-in (tests/images/ollama-standin) at its interface, against ollama/ollama's docs/api.md
(List Local Models, Pull a Model, Generate) and docs/openai.md (/v1/models, /v1/chat/completions): the shapes the
ollama role and the stack read. The role against the image: molecule/recipes/tests/test_ai_studio_cpu.py."""
import json
import urllib.error
import urllib.request

# docs/api.md, "List Local Models": each model's keys, and its details' keys.
TAGS_MODEL_KEYS = {"name", "modified_at", "size", "digest", "details"}
TAGS_DETAILS_KEYS = {"format", "family", "families", "parameter_size", "quantization_level"}
# docs/api.md, "Pull a Model": the first status, the ones after the download, a download event's keys.
PULL_FIRST = "pulling manifest"
PULL_LAST = ["verifying sha256 digest", "writing manifest", "removing any unused layers", "success"]
DOWNLOAD_KEYS = {"status", "digest", "total"}
# docs/api.md, "Generate a completion", stream false.
GENERATE_KEYS = {"model", "created_at", "response", "done", "total_duration", "load_duration", "prompt_eval_count",
                 "prompt_eval_duration", "eval_count", "eval_duration"}


def call(url, path, body=None):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_pull_streams_the_documented_statuses_and_tags_lists_the_model(ollama_standin):
    ollama = ollama_standin
    status, body = call(ollama, "/api/pull", {"model": "qwen3:0.6b"})
    events = [json.loads(line) for line in body.splitlines()]
    assert status == 200 and events[0] == {"status": PULL_FIRST}
    assert [e["status"] for e in events[-4:]] == PULL_LAST
    downloads = events[1:-4]
    assert downloads and all(set(e) >= DOWNLOAD_KEYS for e in downloads)
    assert "completed" not in downloads[0] and downloads[-1]["completed"] == downloads[-1]["total"]
    models = json.loads(call(ollama, "/api/tags")[1])["models"]
    assert [m["name"] for m in models] == ["qwen3:0.6b"]
    assert set(models[0]) >= TAGS_MODEL_KEYS and set(models[0]["details"]) >= TAGS_DETAILS_KEYS


def test_an_unknown_model_is_an_error_in_the_stream_or_alone(ollama_standin):
    ollama = ollama_standin
    status, body = call(ollama, "/api/pull", {"model": "no-such:1b"})
    assert status == 200 and json.loads(body.splitlines()[-1]) == {"error": "pull model manifest: file does not exist"}
    status, body = call(ollama, "/api/pull", {"model": "no-such:1b", "stream": False})
    assert status == 500 and "error" in json.loads(body)
    assert call(ollama, "/api/pull", {"model": "tinyllama", "stream": False}) == (200, b'{"status": "success"}')


def test_generate_and_the_openai_api_answer_a_pulled_model_only(ollama_standin):
    ollama = ollama_standin
    status, body = call(ollama, "/v1/chat/completions", {"model": "qwen3:0.6b", "messages": []})
    assert status == 404 and "try pulling it first" in json.loads(body)["error"]["message"]
    call(ollama, "/api/pull", {"model": "qwen3:0.6b", "stream": False})
    status, body = call(ollama, "/api/generate", {"model": "qwen3:0.6b", "prompt": "hi", "stream": False})
    assert status == 200 and set(json.loads(body)) >= GENERATE_KEYS
    assert [m["id"] for m in json.loads(call(ollama, "/v1/models")[1])["data"]] == ["qwen3:0.6b"]
    answer = json.loads(call(ollama, "/v1/chat/completions",
                             {"model": "qwen3:0.6b", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]})[1])
    assert answer["object"] == "chat.completion" and answer["usage"]["completion_tokens"] == 1
