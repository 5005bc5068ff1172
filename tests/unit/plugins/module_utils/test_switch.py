"""switch: the files the gateway reads per request, their names and their one-line format."""
import os
import stat

import pytest

from ansible_collections.llmstack.deploy.plugins.module_utils import switch


def test_names_and_format():
    assert switch.live_path("/etc/llmstack/gateway", "vllm") == "/etc/llmstack/gateway/vllm.live"
    assert switch.drain_path("/etc/llmstack/gateway", "agent_service") == "/etc/llmstack/gateway/agent_service.drain"
    assert switch.slot_line("vllm", "green") == "vllm_green"
    assert [switch.other_slot(s) for s in switch.SLOTS] == ["green", "blue"]


@pytest.mark.parametrize("content,slot", [
    ("vllm_blue", "blue"), ("vllm_green\n", "green"), ("  vllm_green  \n", "green"),
    ("", None), ("vllm_red", None), ("other_blue", None), ("vllm_blue\nvllm_green", None),
])
def test_parse_slot(content, slot):
    assert switch.parse_slot(content, "vllm") == slot


def test_write_then_read(tmp_path):
    live = switch.SwitchFile.in_folder(str(tmp_path), "vllm")
    assert live.path == str(tmp_path / "vllm.live") and live.folder == str(tmp_path)
    assert live.read() is None and live.peek() is None and live.read_raw() is None
    live.write("green")
    assert (tmp_path / "vllm.live").read_text() == "vllm_green\n"
    assert stat.S_IMODE(os.stat(live.path).st_mode) == 0o644, "nginx's workers read it"
    assert live.read() == "green" and live.peek() == "green"
    live.write("blue")
    assert live.read() == "blue"


def test_a_file_naming_no_slot_of_the_service(tmp_path):
    (tmp_path / "vllm.live").write_text("agent_service_blue\n")
    live = switch.SwitchFile.in_folder(str(tmp_path), "vllm")
    assert live.peek() == "?"
    with pytest.raises(switch.SwitchError, match="says 'agent_service_blue', not vllm_blue or vllm_green"):
        live.read()


def test_an_unreadable_file(tmp_path):
    (tmp_path / "vllm.live").mkdir()  # exists, can't be read as a file: the same for root and others
    live = switch.SwitchFile.in_folder(str(tmp_path), "vllm")
    assert live.peek() is None
    with pytest.raises(switch.SwitchError, match="cannot read the switch file"):
        live.read()


def test_check_folder(tmp_path):
    switch.SwitchFile.in_folder(str(tmp_path), "vllm").check_folder()
    with pytest.raises(switch.SwitchError, match="the folder %s does not exist" % (tmp_path / "nowhere")):
        switch.SwitchFile.in_folder(str(tmp_path / "nowhere"), "vllm").check_folder()
