# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ollama_models: the Ollama models of a list, each name checked as the ollama_model module checks it.

ollama_models | llmstack.deploy.ollama_models

The logic is plugins/module_utils/ollama.py. Documentation: ollama_models.yml beside this file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible_collections.llmstack.deploy.plugins.module_utils import ollama


def ollama_models(models):
    if not isinstance(models, list) or not models:
        raise AnsibleFilterError("ollama_models: a list of at least one model name <name>[:<tag>] (e.g. qwen3:0.6b)")
    try:
        ollama.check_names(models)
    except ollama.OllamaError as e:
        raise AnsibleFilterError(str(e))
    return models


class FilterModule(object):
    def filters(self):
        return {"ollama_models": ollama_models}
