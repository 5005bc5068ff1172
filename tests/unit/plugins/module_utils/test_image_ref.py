"""image_ref: one parser for image references, by Docker's grammar."""
import pytest

from ansible_collections.llmstack.deploy.plugins.module_utils import image_ref

DIGEST = "sha256:" + "6730589a4957740233e5f24ef8d2140d2f28f59b26ccf0df60f6a1200486ce0a"


@pytest.mark.parametrize("image,host,registry,path,tag,digest", [
    # Docker Hub, written without its host: the first component is a namespace, not a registry.
    ("vllm/vllm-openai:v0.34.0", None, "docker.io", "vllm/vllm-openai", "v0.34.0", None),
    ("nginx:1.27", None, "docker.io", "nginx", "1.27", None),
    ("docker.io/library/nginx:1.27", "docker.io", "docker.io", "library/nginx", "1.27", None),
    ("index.docker.io/vllm/vllm-openai", "index.docker.io", "docker.io", "vllm/vllm-openai", None, None),
    # A registry port is not a tag; only the last component carries one.
    ("host:5443/org/app:1.0", "host:5443", "host:5443", "org/app", "1.0", None),
    ("host:5443/org/app", "host:5443", "host:5443", "org/app", None, None),
    ("localhost:5000/app", "localhost:5000", "localhost:5000", "app", None, None),
    ("localhost/app", "localhost", "localhost", "app", None, None),
    ("[::1]:5000/app:1", "[::1]:5000", "[::1]:5000", "app", "1", None),
    ("ghcr.io/org/sub/app_x__y-z.w:v1_2-3.4", "ghcr.io", "ghcr.io", "org/sub/app_x__y-z.w", "v1_2-3.4", None),
    # A host is known by a '.', a ':', localhost, or upper case (a path is lower case).
    ("Registry/app", "Registry", "Registry", "app", None, None),
    # A single name with a ':' is a Docker Hub image with a tag, not a host with a port.
    ("host:5443", None, "docker.io", "host", "5443", None),
    # Digests, with and without a tag before them.
    ("ghcr.io/org/app@" + DIGEST, "ghcr.io", "ghcr.io", "org/app", None, DIGEST),
    ("host:5443/org/app:1.0@" + DIGEST, "host:5443", "host:5443", "org/app", "1.0", DIGEST),
    ("postgres@" + DIGEST, None, "docker.io", "postgres", None, DIGEST),
])
def test_parse(image, host, registry, path, tag, digest):
    ref = image_ref.parse(image)
    assert (ref.host, ref.registry, ref.path, ref.tag, ref.digest) == (host, registry, path, tag, digest)
    assert str(ref) == image, "the reference as written comes back"


@pytest.mark.parametrize("image,repository,canonical", [
    ("vllm/vllm-openai:v0.34.0", "vllm/vllm-openai", "docker.io/vllm/vllm-openai:v0.34.0"),
    ("nginx:1.27", "nginx", "docker.io/library/nginx:1.27"),
    ("nginx", "nginx", "docker.io/library/nginx:latest"),
    ("index.docker.io/nginx", "index.docker.io/nginx", "docker.io/library/nginx:latest"),
    ("host:5443/org/app", "host:5443/org/app", "host:5443/org/app:latest"),
    ("localhost:5000/app", "localhost:5000/app", "localhost:5000/app:latest"),
    ("ghcr.io/org/app@" + DIGEST, "ghcr.io/org/app", "ghcr.io/org/app@" + DIGEST),
    ("ghcr.io/org/app:1.0@" + DIGEST, "ghcr.io/org/app", "ghcr.io/org/app:1.0@" + DIGEST),
])
def test_repository_and_canonical(image, repository, canonical):
    ref = image_ref.parse(image)
    assert ref.repository == repository
    assert ref.canonical == canonical


@pytest.mark.parametrize("image,tag", [
    ("host:5443/a/b:1.0", "1.0"),
    ("host:5443/a/b", "latest"),  # no tag and no digest: what Docker pulls
    ("host:5443/a/b@" + DIGEST, None),  # the digest pins it; there is no tag
    ("ghcr.io/o/a:1.0@" + DIGEST, "1.0"),
])
def test_effective_tag(image, tag):
    assert image_ref.parse(image).effective_tag == tag


def test_with_tag_replaces_tag_and_digest():
    """The cases as written are the image_tag filter's (tests/unit/plugins/filter); here, what the value holds."""
    ref = image_ref.parse("host:5443/a/b:1.0@" + DIGEST)
    assert ref.with_tag("1.4.2") == ("host:5443", "a/b", "1.4.2", None)
    assert ref.with_tag(DIGEST) == ("host:5443", "a/b", None, DIGEST), "a digest as the tag pins it"
    for bad in ("", "-rc1", "sha256:abc", None, 2):
        with pytest.raises(ValueError, match="is not a valid image tag"):
            ref.with_tag(bad)


@pytest.mark.parametrize("image,message", [
    ("", "'' is not an image reference"),
    (None, "None is not an image reference"),
    ("ghcr.io/org/agent :1.0", "'ghcr.io/org/agent :1.0' is not an image reference (it contains white space)"),
    (" nginx", "contains white space"),
    ("ghcr.io/org/Agent:1.0", "the repository 'org/Agent' is not valid"),
    ("Nginx:1.27", "the repository 'Nginx' is not valid"),
    ("ghcr.io/org/agent:bad:tag", "'ghcr.io/org/agent:bad:tag': 'bad:tag' is not a valid tag"),
    ("ghcr.io/org/agent:-rc1", "'-rc1' is not a valid tag"),
    ("ghcr.io/org/agent:" + "a" * 129, "is not a valid tag"),
    ("ghcr.io/org/agent@sha256:zz", "'ghcr.io/org/agent@sha256:zz': 'sha256:zz' is not a sha256 digest"),
    ("ghcr.io/org/agent@" + DIGEST.upper(), "is not a sha256 digest"),
    ("ghcr.io/org/agent:1.0@md5:abc", "is not a sha256 digest"),
    ("bad_host!:5000/app", "'bad_host!:5000' is not a registry host"),
    ("ghcr.io//app", "the repository '/app' is not valid"),
    ("ghcr.io/", "the repository '' is not valid"),
    (":1.0", "the repository '' is not valid"),
    ("ghcr.io/org/-app", "the repository 'org/-app' is not valid"),
    ("ghcr.io/" + "a" * 250, "longer than 255 characters"),
])
def test_bad_references_are_errors_naming_them(image, message):
    with pytest.raises(ValueError) as err:
        image_ref.parse(image)
    assert message in str(err.value)


@pytest.mark.parametrize("host,valid", [
    ("ghcr.io", True), ("127.0.0.1:5443", True), ("localhost", True), ("localhost:5000", True),
    ("[::1]:5000", True), ("docker.io", True),
    ("myregistry", False),  # Docker would read it as a Docker Hub namespace
    ("bad_host!:5000", False), ("", False), (None, False),
])
def test_valid_host(host, valid):
    assert image_ref.valid_host(host) is valid
