"""ollama: models pulled once with their progress, an unknown one refused by name, readiness as one token; against
the lab's Ollama stand-in run as a local process (tests/unit/conftest.py)."""
import pytest

from ansible_collections.llmstack.deploy.plugins.module_utils import ollama


def test_missing_models_are_pulled_once_with_progress_then_never_again(ollama_standin):
    logged = []
    first = ollama.ensure(ollama_standin, ["qwen3:0.6b", "tinyllama"], timeout=30,
                          log=logged.extend)
    assert first["pulled"] == ["qwen3:0.6b", "tinyllama"] and first["present"] == []
    lines = first["progress"]
    assert lines[0] == "qwen3:0.6b: pulling manifest" and "qwen3:0.6b: success" in lines
    assert [line for line in lines if "% of" in line][-1].startswith("tinyllama: pulling ")
    assert any(" 50% of " in line for line in lines) and lines[-1].startswith("tinyllama: pulled in ")
    # The log got each line once, as it came: the same lines, but the pull times.
    assert logged == [line for line in lines if " pulled in " not in line]
    # tinyllama is tinyllama:latest, which /api/tags lists: there, not pulled again.
    again = ollama.ensure(ollama_standin, ["qwen3:0.6b", "tinyllama:latest"], timeout=30)
    assert again["pulled"] == [] and again["present"] == ["qwen3:0.6b", "tinyllama:latest"]


def test_check_mode_pulls_nothing_even_where_ollama_does_not_run_yet(ollama_standin):
    assert ollama.ensure(ollama_standin, ["qwen3:0.6b"], 30, check_mode=True)["pulled"] == ["qwen3:0.6b"]
    assert ollama.present(ollama_standin) == set()
    assert ollama.ensure("http://127.0.0.1:9", ["qwen3:0.6b"], 30, check_mode=True)["pulled"] == ["qwen3:0.6b"]


def test_an_unknown_model_fails_naming_it_with_ollamas_message(ollama_standin):
    with pytest.raises(ollama.OllamaError, match="pull llama9:70b: Ollama says: pull model manifest: file does not"):
        ollama.ensure(ollama_standin, ["qwen3:0.6b", "llama9:70b"], 30)


@pytest.mark.parametrize("bad", ["Qwen3", "qwen3:", "a b", "../etc", ""])
def test_a_malformed_name_is_refused_before_any_call(bad):
    with pytest.raises(ollama.OllamaError, match="ollama_models: .*not a model name"):
        ollama.ensure("http://127.0.0.1:9", ["qwen3:0.6b", bad], 30)


def test_a_model_that_does_not_answer_is_not_ready(ollama_standin):
    ollama.ensure(ollama_standin, ["qwen3:0.6b"], 30)
    assert ollama.one_token(ollama_standin, "qwen3:0.6b") is None
    assert "not found, try pulling it first" in ollama.one_token(ollama_standin, "tinyllama:latest")
