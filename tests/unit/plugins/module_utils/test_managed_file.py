"""ManagedFile on a real AnsibleModule (file common arguments, check and diff mode) in tmp_path."""
import json
import os
import pwd
import stat

import pytest

from ansible.module_utils import basic
from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmstack.deploy.plugins.module_utils import managed_file

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core before 2.19 reads the arguments from basic._ANSIBLE_ARGS
    from unittest import mock

    def patch_module_args(args):
        return mock.patch.object(basic, "_ANSIBLE_ARGS", json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode())

SECRET = "s3cr3t-value-that-must-not-show"


def module():
    """An AnsibleModule with ssm_env_file's file options; made within args()."""
    return AnsibleModule(
        argument_spec=dict(path=dict(type="path", required=True), mode=dict(type="raw", default="0600"),
                           folder_mode=dict(type="raw", default="0750")),
        add_file_common_args=True, supports_check_mode=True)


def args(path, check_mode=False, **params):
    return patch_module_args(dict(params, path=str(path), _ansible_check_mode=check_mode, _ansible_diff=True))


def update(path, content, check_mode=False, views=None, **params):
    with args(path, check_mode=check_mode, **params):
        return managed_file.ManagedFile(module()).update(content, **(views or {}))


def mode_of(path):
    return stat.S_IMODE(os.stat(str(path)).st_mode)


def test_creates_the_file_0600_then_changes_nothing(tmp_path):
    path = tmp_path / "app.env"
    result = update(path, "A=1\n")
    assert result["changed"] is True
    assert path.read_text() == "A=1\n" and mode_of(path) == 0o600
    assert result["diff"] == {"before_header": "%s (absent)" % path, "after_header": str(path),
                              "before": "", "after": "A=1\n"}
    mtime = path.stat().st_mtime_ns
    again = update(path, b"A=1\n")
    assert again == {"changed": False}
    assert path.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.env"], "no temp file is left behind"


def test_new_content_keeps_the_file_s_attributes_unless_asked(tmp_path):
    path = tmp_path / "daemon.json"
    path.write_text("{}\n")
    os.chmod(str(path), 0o644)
    result = update(path, "{\"debug\": true}\n", mode=None)
    assert result["changed"] is True and mode_of(path) == 0o644
    assert path.read_text() == "{\"debug\": true}\n"
    assert result["diff"]["before"] == "{}\n"


def test_mode_only_change(tmp_path):
    path = tmp_path / "app.env"
    update(path, "A=1\n")
    inode = path.stat().st_ino
    result = update(path, "A=1\n", mode="0640")
    assert result["changed"] is True
    assert mode_of(path) == 0o640 and path.stat().st_ino == inode, "changed in place, not rewritten"
    # Without views of its own the diff shows the content, then the attributes as Ansible's file module does.
    content, attrs = result["diff"]
    assert content["before"] == content["after"] == "A=1\n"
    assert attrs["before"] == {"mode": "0600"} and attrs["after"] == {"mode": "0640"}
    assert update(path, "A=1\n", mode="0640")["changed"] is False
    assert update(path, None, mode="u=rw,g=r")["changed"] is False, "a symbolic mode that is already there"


def test_views_get_the_attributes_before_and_after(tmp_path):
    path = tmp_path / "app.env"
    update(path, "A=1\n")
    views = dict(before_view=lambda attrs: "mode %04o\n" % attrs["mode"],
                 after_view=lambda attrs: "mode %04o\n" % attrs["mode"])
    result = update(path, "A=2\n", mode="g+r", views=views)
    assert result["diff"]["before"] == "mode 0600\n" and result["diff"]["after"] == "mode 0640\n"
    assert mode_of(path) == 0o640 and path.read_text() == "A=2\n"


def test_owner_and_group_are_set_before_the_file_appears(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("chown to another user takes root")
    nobody = pwd.getpwnam("nobody")
    path = tmp_path / "app.env"
    update(path, "A=1\n", owner="nobody", group=str(nobody.pw_gid), mode="0640")
    st = path.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (nobody.pw_uid, nobody.pw_gid, 0o640)
    # A rewrite keeps them, though the task no longer names them.
    update(path, "A=2\n", mode=None)
    st = path.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (nobody.pw_uid, nobody.pw_gid, 0o640)


def test_unknown_owner_fails_before_anything_is_written(tmp_path, capsys):
    path = tmp_path / "sub" / "app.env"
    with pytest.raises(SystemExit):
        update(path, "A=1\n", owner="no-such-user-xyz")
    out = json.loads(capsys.readouterr().out)
    assert out["failed"] is True and out["msg"] == "%s: owner no-such-user-xyz does not exist on this host" % path
    assert not (tmp_path / "sub").exists()


def test_missing_folders_are_created_0750(tmp_path):
    path = tmp_path / "etc" / "llmstack" / "app.env"
    result = update(path, "A=1\n")
    assert result["changed"] is True and path.read_text() == "A=1\n"
    for folder in (tmp_path / "etc", tmp_path / "etc" / "llmstack"):
        assert mode_of(folder) == 0o750
        if os.geteuid() == 0:
            assert (folder.stat().st_uid, folder.stat().st_gid) == (0, 0)
    folders, content = result["diff"][:2], result["diff"][2]
    assert folders == [
        {"before": {"path": str(tmp_path / "etc"), "state": "absent"},
         "after": {"path": str(tmp_path / "etc"), "state": "directory", "mode": "0750"}},
        {"before": {"path": str(tmp_path / "etc" / "llmstack"), "state": "absent"},
         "after": {"path": str(tmp_path / "etc" / "llmstack"), "state": "directory", "mode": "0750"}}]
    assert content["after"] == "A=1\n"


def test_folder_mode_option(tmp_path):
    path = tmp_path / "switch" / "svc.live"
    update(path, "blue\n", folder_mode="0755", mode="0644")
    assert mode_of(tmp_path / "switch") == 0o755 and mode_of(path) == 0o644
    with args(tmp_path / "x" / "f"):
        managed_file.ManagedFile(module(), folder_mode=0o700).update("1\n")
    assert mode_of(tmp_path / "x") == 0o700


def test_folder_mode_is_the_files_own_folders_and_the_ones_above_are_0750(tmp_path):
    """/etc/llmstack/postgres/password with folder_mode 0700 on a fresh host: postgres/ is 0700, the
    /etc/llmstack above it 0750 as every other role leaves it."""
    path = tmp_path / "llmstack" / "postgres" / "password"
    result = update(path, "pw\n", folder_mode="0700", mode="0600")
    assert mode_of(tmp_path / "llmstack") == 0o750 and mode_of(tmp_path / "llmstack" / "postgres") == 0o700
    assert [e["after"]["mode"] for e in result["diff"][:2]] == ["0750", "0700"]


def test_check_mode_touches_nothing(tmp_path):
    path = tmp_path / "new" / "app.env"
    result = update(path, "A=1\n", check_mode=True, mode="0640")
    assert result["changed"] is True
    assert result["diff"][0]["after"]["state"] == "directory"
    assert result["diff"][1]["after"] == "A=1\n"
    assert list(tmp_path.iterdir()) == [], "check mode created the folder"

    existing = tmp_path / "app.env"
    existing.write_text("A=1\n")
    os.chmod(str(existing), 0o600)
    mtime = existing.stat().st_mtime_ns
    result = update(existing, "A=2\n", check_mode=True, mode="0644")
    assert result["changed"] is True
    assert existing.read_text() == "A=1\n" and mode_of(existing) == 0o600 and existing.stat().st_mtime_ns == mtime
    assert update(existing, None, check_mode=True, mode="0644")["changed"] is True
    assert mode_of(existing) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.env"]


def test_the_diff_holds_what_the_views_give_never_the_content(tmp_path):
    path = tmp_path / "secret.env"
    path.write_text("OLD=%s\n" % SECRET)
    views = dict(before_view=lambda attrs: "PASSWORD=<redacted>\n",
                 after_view=lambda attrs: "PASSWORD=<redacted> (changed)\n")
    result = update(path, "NEW=%s-2\n" % SECRET, views=views, mode="0640")
    assert SECRET not in json.dumps(result)
    assert result["diff"]["after"] == "PASSWORD=<redacted> (changed)\n"


def test_register_secrets_masks_long_values_only(tmp_path):
    with args(tmp_path / "f"):
        mod = module()
    managed_file.register_secrets(mod, [SECRET, "1", "short", None])
    assert SECRET in mod.no_log_values
    assert "1" not in mod.no_log_values and "short" not in mod.no_log_values


def test_a_new_file_needs_content(tmp_path):
    with pytest.raises(ValueError, match="needs content"):
        update(tmp_path / "absent", None)


# ------------------------------------------------------------------------- write_atomic

def test_write_atomic_mode_and_replace(tmp_path):
    target = tmp_path / "app.env"
    target.write_text("OLD=1\n")
    os.chmod(str(target), 0o644)
    managed_file.write_atomic(str(target), "NEW=2\n", mode=0o640)
    assert target.read_text() == "NEW=2\n"
    assert mode_of(target) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.env"]


def test_write_atomic_temp_file_is_0600_and_removed_when_prepare_fails(tmp_path):
    seen = []

    def prepare(tmp):
        seen.append((mode_of(tmp), open(tmp).read()))
        raise RuntimeError("stop")
    target = tmp_path / "key.pem"
    with pytest.raises(RuntimeError):
        managed_file.write_atomic(str(target), "SECRET\n", mode=0o600, prepare=prepare)
    assert seen == [(0o600, "SECRET\n")]
    assert list(tmp_path.iterdir()) == []


def test_write_atomic_missing_folder_is_named(tmp_path):
    with pytest.raises(OSError) as err:
        managed_file.write_atomic(str(tmp_path / "nope" / "app.env"), "A=1\n")
    assert "nope" in str(err.value)
