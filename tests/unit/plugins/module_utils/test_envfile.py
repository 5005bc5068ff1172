import pytest

from ansible_collections.llmstack.deploy.plugins.module_utils import envfile

KEY = b"k" * 32
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
    assert envfile.checksum(envfile.render(reordered), KEY) == envfile.checksum(envfile.render(TRICKY), KEY)


def test_checksum_changes_with_a_value():
    changed = dict(TRICKY, EQUALS="a=b=d")
    assert envfile.checksum(envfile.render(changed), KEY) != envfile.checksum(envfile.render(TRICKY), KEY)


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


# ------------------------------------------------- parse: what `docker run --env-file` does

@pytest.mark.parametrize("data,expected", [
    (b"\xef\xbb\xbfA=1\r\nB=2\r\n", {"A": "1", "B": "2"}),
    (b"# c\n  # c2\n\n\t K=  v  \n", {"K": "  v  "}),
    (b"\xc2\xa0A=nbsp\n\x0bB=vtab\n", {"A": "nbsp", "B": "vtab"}),
    (b"\x1cA=1\n", {"\x1cA": "1"}),  # not white space to Go, though it is to Python
    (b"A=a\rb\n", {"A": "a\rb"}),
    (b"A=1\nA=2\n", {"A": "2"}),
    (b"a.b-c=1\nLAST=no newline", {"a.b-c": "1", "LAST": "no newline"}),
    (b"B=x\n\xef\xbb\xbfC=1\n", {"B": "x", "\ufeffC": "1"}),  # a BOM only counts on line 1
])
def test_parse_like_docker(data, expected):
    assert envfile.parse(data) == expected


@pytest.mark.parametrize("data,message", [
    (b"A=1\nB C=2\n", "f.env line 2: variable name 'B C' contains white space"),
    (b"A=1\n=2\n", "f.env line 2: no variable name"),
    (b"A=\xff\n", "f.env line 1: not valid UTF-8"),
    (b"A=1\nBARE\n", "f.env line 2: BARE has no '='"),
    (b"A=x\x00y\n", "f.env line 1: the value of A contains a NUL byte"),
    (b"A=" + b"x" * 65534 + b"\n", "f.env line 1: the line is 64 KiB or longer"),
    (b"A=" + b"x" * 65533 + b"\r\n", "f.env line 1: the line is 64 KiB or longer"),  # the CR counts, as in Docker
    (b"A=" + b"x" * 65534, "f.env line 1: the line is 64 KiB or longer"),  # so does a last line with no newline
])
def test_parse_refuses_with_the_line(data, message):
    with pytest.raises(envfile.EnvFileError) as err:
        envfile.parse(data, source="f.env")
    assert message in str(err.value)
    assert "x" * 20 not in str(err.value)


def test_parse_longest_line_docker_accepts():
    assert len(envfile.parse(b"A=" + b"x" * 65533)["A"]) == 65533


def test_lenient_parse_skips_bad_lines():
    assert envfile.parse(b"A=1\nB C=2\nD=\xff\nE=5\n", strict=False) == {"A": "1", "E": "5"}


def test_checksum_is_keyed():
    content = envfile.render({"PASSWORD": "abc"})
    assert envfile.checksum(content, b"k1" * 16) != envfile.checksum(content, b"k2" * 16)
    assert envfile.checksum(content, b"k1" * 16) == envfile.checksum(content.encode(), b"k1" * 16)


def test_redact_every_value_without_garbling_logs():
    log = "config: TOKEN=s3cr3t-value PORT=8000 WORKERS=4 DEBUG=1 listening on 0.0.0.0:8000, 14 workers"
    out = envfile.redact(log, ["s3cr3t-value", "8000", "4", "1", ""])
    assert "s3cr3t-value" not in out and "8000" not in out
    assert "WORKERS=<redacted>" in out and "DEBUG=<redacted>" in out
    assert "14 workers" in out, "a short value is redacted only where it stands alone"


def test_redact_a_short_value_leaves_names_that_contain_it():
    message = "cannot start agent_service-blue: PGUSER=agent, postgresql://agent:pw12@db/agent"
    out = envfile.redact(message, ["agent", "pw12"])
    assert out.startswith("cannot start agent_service-blue: PGUSER=<redacted>")
    assert "postgresql://<redacted>:<redacted>@db/<redacted>" in out
