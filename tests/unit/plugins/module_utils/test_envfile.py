import os
import stat

import pytest

from ansible_collections.llmstack.deploy.plugins.module_utils import envfile

TRICKY = {
    "EQUALS": "a=b=c",
    "HASH": "#not a comment",
    "QUOTES": "'single' \"double\"",
    "DOLLAR": "$HOME ${X} $(id)",
    "SPACES": "  leading and trailing  ",
    "UNICODE": "héllo ✓ 日本",
    "EMPTY": "",
    "BACKSLASH": "a\\nb\\t",
}


def test_render_is_sorted_and_parses_back_exactly():
    content = envfile.render(TRICKY)
    keys = [line.split("=", 1)[0] for line in content.splitlines() if not line.startswith("#")]
    assert keys == sorted(TRICKY)
    assert envfile.parse(content) == TRICKY


def test_render_is_deterministic_regardless_of_insertion_order():
    reordered = dict(reversed(list(TRICKY.items())))
    assert envfile.render(reordered) == envfile.render(TRICKY)
    assert envfile.checksum(envfile.render(reordered)) == envfile.checksum(envfile.render(TRICKY))


def test_checksum_changes_with_a_value():
    changed = dict(TRICKY, EQUALS="a=b=d")
    assert envfile.checksum(envfile.render(changed)) != envfile.checksum(envfile.render(TRICKY))


@pytest.mark.parametrize("bad", ["line1\nline2", "ends with cr\r", "nul\0byte"])
def test_unwritable_value_names_key_not_value(bad):
    with pytest.raises(envfile.EnvFileError) as err:
        envfile.render({"SECRET_KEY": bad})
    assert "SECRET_KEY" in str(err.value)
    assert bad not in str(err.value)
    assert "line1" not in str(err.value)


def test_invalid_key_is_named():
    with pytest.raises(envfile.EnvFileError, match="1BAD"):
        envfile.render({"1BAD": "x"})


def test_overlong_line_is_refused():
    with pytest.raises(envfile.EnvFileError, match="BIG"):
        envfile.render({"BIG": "x" * 70000})


def test_key_diff():
    before = {"A": "1", "B": "2", "C": "3"}
    after = {"A": "1", "B": "two", "D": "4"}
    assert envfile.key_diff(before, after) == {"added": ["D"], "removed": ["C"], "changed": ["B"]}


def test_redacted_view_never_shows_values():
    view = envfile.redacted_view({"PASSWORD": "hunter2"}, changed=["PASSWORD"], meta={"mode": "0600"})
    assert "hunter2" not in view
    assert "PASSWORD=<redacted> (changed)" in view
    assert "# mode: 0600" in view


def test_write_atomic_mode_and_replace(tmp_path):
    target = tmp_path / "app.env"
    target.write_text("OLD=1\n")
    os.chmod(str(target), 0o644)
    envfile.write_atomic(str(target), "NEW=2\n", mode=0o640)
    assert target.read_text() == "NEW=2\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    # no temp file left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.env"]


def test_write_atomic_missing_folder_is_named(tmp_path):
    missing = tmp_path / "nope" / "app.env"
    with pytest.raises(envfile.EnvFileError, match="nope"):
        envfile.write_atomic(str(missing), "A=1\n")
