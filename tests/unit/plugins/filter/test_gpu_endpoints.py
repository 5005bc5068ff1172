"""gpu_endpoints filter and the split topology's wiring (playbooks/vars/split.yml): a GPU host's published
vllm_endpoint, else (outside --limit) its inventory address with its own vllm_port, else a clear failure."""
import json
import os
import re
import subprocess
import sys

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.llmstack.deploy.plugins.filter import gpu_endpoints as f

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))


def test_a_published_endpoint_wins_over_the_address():
    hv = {"g1": {"vllm_endpoint": "10.0.0.5:8000", "llmstack_private_address": "10.9.9.9", "vllm_port": 9}}
    assert f.gpu_endpoints(["g1"], hv, 8000) == ["10.0.0.5:8000"]


def test_a_host_outside_the_limit_uses_its_address_and_its_own_port():
    hv = {"g1": {"llmstack_private_address": "10.0.0.6", "vllm_port": 8001},
          "g2": {"llmstack_private_address": "10.0.0.7"}}
    assert f.gpu_endpoints(["g1", "g2"], hv, 8000) == ["10.0.0.6:8001", "10.0.0.7:8000"]


def test_a_host_with_no_address_fails_naming_it():
    hv = {"g1": {"vllm_endpoint": "10.0.0.5:8000"}, "gpu-3": {}}
    with pytest.raises(AnsibleFilterError, match=r"GPU host gpu-3 has neither vllm_endpoint nor llmstack_private_address"):
        f.gpu_endpoints(["g1", "gpu-3"], hv, 8000)


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
        "vars": {"llmstack_vllm_port": 8000},
        "tasks": [{"ansible.builtin.debug": {"msg": "ENDPOINTS={{ llmstack_gpu_endpoints | to_json }}"}}]}]))
    return subprocess.run(["ansible-playbook", "-i", str(inventory), str(play)], cwd=ROOT, capture_output=True,
                          text=True, check=False, env=dict(os.environ, ANSIBLE_NOCOLOR="1"))


def test_the_split_wiring_reads_each_gpu_hosts_own_port(tmp_path):
    proc = render(tmp_path, {"g1": {"vllm_endpoint": "10.0.0.5:8000"},
                             "g2": {"llmstack_private_address": "10.0.0.6", "vllm_port": 8001}})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(re.search(r"ENDPOINTS=(\[.*\])", proc.stdout).group(1)) == ["10.0.0.5:8000", "10.0.0.6:8001"]


def test_the_split_wiring_fails_naming_a_gpu_host_without_an_address(tmp_path):
    proc = render(tmp_path, {"g1": {"vllm_endpoint": "10.0.0.5:8000"}, "gpu-3": {}})
    assert proc.returncode != 0
    assert "GPU host gpu-3 has neither vllm_endpoint nor llmstack_private_address" in proc.stdout + proc.stderr
