"""image_tag filter: a new tag on an image reference, with registry ports and digests kept apart."""
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.llmstack.deploy.plugins.filter import image_tag as f

DIGEST = "sha256:" + "6730589a4957740233e5f24ef8d2140d2f28f59b26ccf0df60f6a1200486ce0a"


@pytest.mark.parametrize("image,tag,expected", [
    ("ghcr.io/org/agent:1.0.0", "1.4.2", "ghcr.io/org/agent:1.4.2"),
    # A registry port is not a tag: with and without a tag after the repository.
    ("host:5443/a/b:1.0", "1.4.2", "host:5443/a/b:1.4.2"),
    ("host:5443/a/b", "1.4.2", "host:5443/a/b:1.4.2"),
    ("172.17.0.1:5443/llmstack/agent-service:1.0.0", "1.0.1", "172.17.0.1:5443/llmstack/agent-service:1.0.1"),
    ("localhost:5000/app:latest", "v2", "localhost:5000/app:v2"),
    ("[::1]:5000/app:1", "2", "[::1]:5000/app:2"),
    # Digests are replaced whole, with or without a tag before them.
    ("ghcr.io/org/agent@" + DIGEST, "1.4.2", "ghcr.io/org/agent:1.4.2"),
    ("host:5443/a/b:1.0@" + DIGEST, "1.4.2", "host:5443/a/b:1.4.2"),
    # Docker Hub short names stay short.
    ("vllm/vllm-openai:v0.33.0", "v0.34.0", "vllm/vllm-openai:v0.34.0"),
    ("postgres", "16.13-bookworm", "postgres:16.13-bookworm"),
    ("nginx:1.27", "1.27.4", "nginx:1.27.4"),
    ("docker.io/library/nginx:1.27.3", "1.27.4", "docker.io/library/nginx:1.27.4"),
    # A digest as the new "tag" pins the image.
    ("ghcr.io/org/agent:1.0.0", DIGEST, "ghcr.io/org/agent@" + DIGEST),
    ("host:5443/a/b:1.0@" + DIGEST, DIGEST, "host:5443/a/b@" + DIGEST),
    # White space around a tag read from SSM or a file.
    ("ghcr.io/org/agent:1.0.0", " 1.4.2\n", "ghcr.io/org/agent:1.4.2"),
])
def test_retag(image, tag, expected):
    assert f.image_tag(image, tag) == expected


def test_a_number_is_a_tag():
    assert f.image_tag("ghcr.io/org/agent:1", 2) == "ghcr.io/org/agent:2"


@pytest.mark.parametrize("image,tag,message", [
    ("ghcr.io/org/agent:1.0", "", "'' is not a valid image tag"),
    ("ghcr.io/org/agent:1.0", None, "'' is not a valid image tag"),
    ("ghcr.io/org/agent:1.0", "-rc1", "'-rc1' is not a valid image tag"),
    ("ghcr.io/org/agent:1.0", "1.4 2", "is not a valid image tag"),
    ("ghcr.io/org/agent:1.0", "a" * 129, "is not a valid image tag"),
    ("ghcr.io/org/agent:1.0", "sha256:abc", "is not a valid image tag"),
    ("", "1.0", "is not an image reference"),
    (None, "1.0", "is not an image reference"),
    ("ghcr.io/org/agent :1.0", "1.0", "white space"),
    ("ghcr.io/org/agent@sha256:zz", "1.0", "is not a sha256 digest"),
    ("ghcr.io/org/Agent:1.0", "1.0", "repository 'org/Agent' is not valid"),
    ("ghcr.io/org/agent:bad:tag", "1.0", "is not a valid tag"),
    ("bad_host!:5000/app", "1.0", "is not a registry host"),
    ("Nginx:1.27", "1.28", "repository 'Nginx' is not valid"),
])
def test_bad_input_is_an_error_naming_it(image, tag, message):
    with pytest.raises(AnsibleFilterError, match="image_tag: .*" + message.replace("(", r"\(").replace(")", r"\)")):
        f.image_tag(image, tag)


def test_filter_is_registered_under_its_name():
    assert f.FilterModule().filters() == {"image_tag": f.image_tag, "image_version": f.image_version}


@pytest.mark.parametrize("image, version", [
    ("docker.io/library/nginx:1.27.3", "1.27.3"),
    ("nginx:1.27.3-bookworm", "1.27.3"),
    ("host:5443/llmstack-lab/nginx:1.22", "1.22"),
    ("vllm/vllm-openai:v0.33.0", "0.33.0"),
    ("nginx:mainline", ""),
    ("nginx", ""),
    ("nginx@sha256:" + "a" * 64, ""),
])
def test_image_version(image, version):
    assert f.image_version(image) == version
