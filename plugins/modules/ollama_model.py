#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: ollama_model
short_description: Pull Ollama models that are missing, then check each answers a one-token completion
version_added: 0.1.0
description:
  - Asks the Ollama server at O(url) which models it has (C(GET /api/tags)) and pulls each model of O(models) it
    lacks (C(POST /api/pull)), reading the streamed progress to its end. A model already there is not pulled again.
  - Each pull's progress (each status, a layer's download every 10 %) is returned in RV(progress) and appended to
    O(log) as it comes, for C(tail -f) while the task runs (the role runs it asynchronously).
  - Then each model must answer a one-token chat completion through Ollama's OpenAI API (C(/v1/chat/completions)),
    which is the stack's readiness for an LLM server.
  - A model the library does not have fails the task naming it, with Ollama's message.
author:
  - llmstack.deploy maintainers (@llmstack)
options:
  url:
    description: Ollama's base URL, from the host.
    type: str
    default: http://127.0.0.1:11434
  models:
    description: The models to have, C(<name>[:<tag>]) (C(llama3.2) is C(llama3.2:latest)).
    type: list
    elements: str
    required: true
  timeout:
    description: Seconds one pull may take (a read of the progress stream waits at most this long).
    type: int
    default: 3600
  log:
    description: A file the progress lines are appended to (empty, none).
    type: path
    default: ""
extends_documentation_fragment:
  - llmstack.deploy.attributes
attributes:
  check_mode:
    support: full
    details:
      - Says which models would be pulled (RV(pulled)); pulls nothing and asks for no completion.
  diff_mode:
    support: none
  idempotent:
    support: full
"""

EXAMPLES = r"""
- name: Pull the models and check they answer
  llmstack.deploy.ollama_model:
    models: [qwen3:0.6b, llama3.2:1b]
    log: /var/lib/llmstack/deployments/ollama.log
  async: 3600
  poll: 10
"""

RETURN = r"""
pulled:
  description: The models pulled by this run (in check mode, those that would be).
  returned: always
  type: list
  elements: str
present:
  description: The models that were there already.
  returned: always
  type: list
  elements: str
progress:
  description: The pulls' progress, readable.
  returned: always
  type: list
  elements: str
  sample: ["qwen3:0.6b: pulling manifest", "qwen3:0.6b: pulling 514cf42a1ceb 50% of 522.0 MB", "qwen3:0.6b: success"]
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.llmstack.deploy.plugins.module_utils import ollama


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type="str", default="http://127.0.0.1:11434"),
            models=dict(type="list", elements="str", required=True),
            timeout=dict(type="int", default=3600),
            log=dict(type="path", default=""),
        ),
        supports_check_mode=True,
    )
    p = module.params
    url = p["url"].rstrip("/")

    # Each new progress line written once, as it comes.
    def log(lines):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with open(p["log"], "a") as f:
            f.write("".join("%s %s\n" % (stamp, line) for line in lines))
    try:
        result = ollama.ensure(url, p["models"], p["timeout"], check_mode=module.check_mode,
                               log=log if p["log"] else None)
    except ollama.OllamaError as e:
        module.fail_json(msg=str(e))
    module.exit_json(changed=bool(result["pulled"]), **result)


if __name__ == "__main__":
    main()
