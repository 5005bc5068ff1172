"""The split topology's wiring (playbooks/vars/split.yml), rendered by ansible-playbook against a static inventory:
a GPU host's published vllm_endpoint, else (outside --limit) its inventory address with its own vllm_port, else a
failure naming the host."""
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def render(tmp_path, hosts):
    """llmstack_gpu_endpoints as the app play sees it, through ansible-playbook with a static inventory."""
    inventory = tmp_path / "hosts.json"
    inventory.write_text(json.dumps({"all": {"children": {
        "llmstack_gpu": {"hosts": hosts},
        "llmstack_app": {"hosts": {"app": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}},
    }}}))
    play = tmp_path / "play.yml"
    play.write_text(json.dumps([{
        "hosts": "llmstack_app", "gather_facts": False,
        "vars_files": [os.path.join(ROOT, "playbooks", "vars", "split.yml")],
        "vars": {"llmstack_vllm_port": 8000,
                 # As the agent's entry reads it, resolved by app validate (a filter rendering it failed).
                 "llmstack_apps": [{"name": "agent", "image": "ghcr.io/acme/agent:1", "slots": {"blue": 1, "green": 2},
                                    "env": {"LLM_BASE_URL": "{{ llmstack_llm_base_url }}"}}]},
        "tasks": [{"ansible.builtin.debug": {"msg": "ENDPOINTS={{ llmstack_gpu_endpoints | to_json }}"}},
                  {"ansible.builtin.import_role": {"name": "llmstack.deploy.app", "tasks_from": "validate"}},
                  {"ansible.builtin.debug": {"msg": "AGENT={{ app_entries[0].env.LLM_BASE_URL }}"}}]}]))
    return subprocess.run(["ansible-playbook", "-i", str(inventory), str(play)], cwd=ROOT, capture_output=True,
                          text=True, check=False, env=dict(os.environ, ANSIBLE_NOCOLOR="1"))


def test_the_split_wiring_reads_each_gpu_hosts_own_port(tmp_path):
    proc = render(tmp_path, {"g1": {"vllm_endpoint": "10.0.0.5:8000", "llmstack_private_address": "10.9.9.9"},
                             "g2": {"llmstack_private_address": "10.0.0.6", "vllm_port": 8001},
                             "g3": {"llmstack_private_address": "10.0.0.7"}})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    endpoints = json.loads(re.search(r"ENDPOINTS=(\[.*\])", proc.stdout).group(1))
    assert endpoints == ["10.0.0.5:8000", "10.0.0.6:8001", "10.0.0.7:8000"]
    assert "AGENT=http://10.0.0.5:8000/v1" in proc.stdout


def test_the_split_wiring_fails_naming_a_gpu_host_without_an_address(tmp_path):
    proc = render(tmp_path, {"g1": {"vllm_endpoint": "10.0.0.5:8000"}, "gpu-3": {}})
    assert proc.returncode != 0
    assert "GPU host gpu-3 has neither vllm_endpoint nor llmstack_private_address" in proc.stdout + proc.stderr
