"""nginx_config: releases are written whole, compared by a keyed id, switched with one rename; secret
files are rendered on the host and never shown. nginx -t itself runs in the integration tests."""
import os

import pytest

from ansible_collections.llmstack.deploy.plugins.module_utils import nginx_config as ngx

KEY = b"k" * 32
SECRET = "0123456789abcdef0123456789abcdef"


def env_file(tmp_path, text, name="keys.env"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_secret_file_renders_every_key_sorted(tmp_path):
    path = env_file(tmp_path, "ALICE=%s\nCI=%s\n" % (SECRET, SECRET[::-1]))
    name, content, keys, values = ngx.render_secret_file({"file": "api_keys.map", "env_file": path,
                                                          "line": '"Bearer {value}" "{key}";'})
    assert name == "api_keys.map" and keys == ["ALICE", "CI"] and values == [SECRET, SECRET[::-1]]
    assert content.decode() == '"Bearer %s" "ALICE";\n"Bearer %s" "CI";\n' % (SECRET, SECRET[::-1])


@pytest.mark.parametrize("value", ['ab"cd', "ab$cd", "ab;cd", "ab cd", "ab\\cd", "ab{cd"])
def test_a_value_that_could_break_out_of_its_string_is_refused_by_key_not_value(tmp_path, value):
    path = env_file(tmp_path, "CI=%s\n" % value)
    with pytest.raises(ngx.ConfigError) as err:
        ngx.render_secret_file({"file": "api_keys.map", "env_file": path, "line": '"Bearer {value}" "{key}";'})
    assert "the value of CI" in str(err.value) and value not in str(err.value)


def test_secret_file_missing_key_or_file_is_named(tmp_path):
    path = env_file(tmp_path, "OTHER=x\n")
    with pytest.raises(ngx.ConfigError, match="has no key LLM_API_KEY"):
        ngx.render_secret_file({"file": "a.conf", "env_file": path, "keys": ["LLM_API_KEY"], "line": "{value}"})
    with pytest.raises(ngx.ConfigError, match="does not exist"):
        ngx.render_secret_file({"file": "a.conf", "env_file": str(tmp_path / "nope.env"), "line": "{value}"})


@pytest.mark.parametrize("name", ["../etc/passwd", "/abs.conf", ".hidden", "a/../b", "a b.conf"])
def test_file_names_stay_inside_the_release(name):
    with pytest.raises(ngx.ConfigError, match="relative path"):
        ngx.check_file_name(name)


def test_release_id_depends_on_content_and_key_not_order():
    files = {"nginx.conf": b"a", "api_keys.map": SECRET.encode()}
    same = {"api_keys.map": SECRET.encode(), "nginx.conf": b"a"}
    assert ngx.release_id(files, KEY) == ngx.release_id(same, KEY)
    assert ngx.release_id(files, KEY) != ngx.release_id(dict(files, **{"api_keys.map": b"rotated"}), KEY)
    assert ngx.release_id(files, KEY) != ngx.release_id(files, b"x" * 32)


def test_write_activate_and_switch_back(tmp_path):
    root = str(tmp_path / "gw")
    first = {"nginx.conf": b"events {}\n", "api_keys.map": b"secret\n"}
    ngx.write_release(root, "r1", first, {"api_keys.map"})
    ngx.activate(root, "r1")
    assert ngx.current_release(root) == "r1"
    assert os.readlink(os.path.join(root, "current")) == os.path.join("releases", "r1")  # relative: works in the container
    assert oct(os.stat(os.path.join(root, "releases", "r1", "api_keys.map")).st_mode & 0o777) == "0o600"
    assert oct(os.stat(os.path.join(root, "releases", "r1", "nginx.conf")).st_mode & 0o777) == "0o644"
    ngx.write_release(root, "r2", {"nginx.conf": b"events { }\n"}, set())
    ngx.activate(root, "r2")
    assert ngx.current_release(root) == "r2"
    assert open(os.path.join(root, "current", "nginx.conf"), "rb").read() == b"events { }\n"


def test_a_killed_write_leaves_no_release_and_is_cleaned_up(tmp_path):
    root = str(tmp_path / "gw")
    os.makedirs(os.path.join(root, "releases", ".tmp-r9-123"))
    assert ngx.current_release(root) is None
    ngx.prune(root, 5)
    assert os.listdir(os.path.join(root, "releases")) == []


def test_prune_keeps_the_newest_and_never_current(tmp_path):
    root = str(tmp_path / "gw")
    for i, rid in enumerate(["a", "b", "c", "d"]):
        ngx.write_release(root, rid, {"nginx.conf": rid.encode()}, set())
        os.utime(os.path.join(root, "releases", rid), (1000 + i, 1000 + i))
    ngx.activate(root, "a")
    removed = ngx.prune(root, 2, protect=["a"])
    assert sorted(removed) == ["b"]
    assert sorted(os.listdir(os.path.join(root, "releases"))) == ["a", "c", "d"]


def test_diff_shows_plain_files_and_hides_secret_ones(tmp_path):
    root = str(tmp_path / "gw")
    ngx.write_release(root, "r1", {"nginx.conf": b"listen 80;\n", "api_keys.map": b"old-secret\n"}, {"api_keys.map"})
    text = ngx.diff(root, "r1", {"nginx.conf": b"listen 8080;\n", "api_keys.map": b"new-secret\n"}, {"api_keys.map"})
    assert "-listen 80;" in text and "+listen 8080;" in text
    assert "secret file changed" in text and "old-secret" not in text and "new-secret" not in text


def test_value_re_renders_a_key_as_a_regex_literal_that_matches_only_itself(tmp_path):
    import re
    path = str(tmp_path / "k.env")
    with open(path, "w") as f:
        f.write("ALICE=aB.c+d/e=~-_9\n")
    _name, content, _keys, _values = ngx.render_secret_file(
        {"file": "api_keys.map", "env_file": path, "line": '"~^Bearer {value_re}$" "{key}";'})
    line = content.decode().strip()
    assert "\\" not in line
    regex = line.split('"')[1][1:]
    assert re.match(regex, "Bearer aB.c+d/e=~-_9")
    assert not re.match(regex, "Bearer Ab.c+d/e=~-_9")  # case matters
    assert not re.match(regex, "Bearer aBXc+d/e=~-_9")  # a dot is a dot
    assert not re.match(regex, "Bearer aB.c+d/e=~-_9x")
