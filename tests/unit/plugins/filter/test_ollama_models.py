"""The ollama_models filter: the ollama_model module's name check, for the ollama role's check before it touches
the host."""
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.llmstack.deploy.plugins.filter.ollama_models import ollama_models


def test_good_names_pass_unchanged():
    models = ["qwen3:0.6b", "tinyllama", "library/llama3.2:3b"]
    assert ollama_models(models) == models


@pytest.mark.parametrize("models, named", [
    (["qwen3:0.6b", "Qwen3"], '"Qwen3"'),
    (["a b"], '"a b"'),
    (["../etc"], '"../etc"'),
])
def test_a_bad_name_is_refused_by_name(models, named):
    with pytest.raises(AnsibleFilterError, match="ollama_models: %s: not a model name" % named.replace(".", "[.]")):
        ollama_models(models)


@pytest.mark.parametrize("models", [[], "qwen3:0.6b", None])
def test_an_empty_list_or_no_list_is_refused(models):
    with pytest.raises(AnsibleFilterError, match="a list of at least one model name"):
        ollama_models(models)
