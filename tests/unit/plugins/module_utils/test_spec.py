"""ContainerSpec: validated once, before anything is touched; one source for hash, record and SDK args."""
import pytest

from ansible_collections.llmstack.deploy.plugins.module_utils import docker_client as dc
from ansible_collections.llmstack.deploy.plugins.module_utils import spec as specs

KEY = b"k" * 32


def params(**over):
    p = dict(name="svc", strategy="recreate", image="org/app:v1", registry="reg.example:5443", env_files=[],
             env={}, ports=["127.0.0.1:8001:8000"], slots=None, volumes=[], networks=[], command=None,
             restart_policy="unless-stopped", memory=None, cpus=None, gpus=None, ipc_mode=None, shm_size=None,
             user=None, read_only=False, security_opts=["no-new-privileges"], log_driver="json-file",
             log_options={"max-size": "10m"}, labels={}, healthcheck=None, health_timeout=300)
    p.update(over)
    return p


def built(**over):
    spec = specs.ContainerSpec.from_params(params(**over))
    spec.digest_ref = "reg.example:5443/org/app@sha256:1"
    spec.load_env(KEY)
    return spec


def test_every_run_option_reaches_the_hash():
    """An option added to RUN_OPTIONS but left out of the summary would silently break idempotence."""
    base = built().hash(KEY)
    changed = dict(command=["serve"], env={"A": "1"}, volumes=["/d:/d"], restart_policy="always", memory="1g",
                   cpus=1.5, gpus=1, ipc_mode="host", shm_size="1g", user="1000", read_only=True,
                   security_opts=[], log_driver="local", log_options={}, labels={"a": "b"},
                   ports=["127.0.0.1:8002:8000"], networks=[{"name": "n", "aliases": None}], stop_timeout=90)
    for option, value in changed.items():
        assert built(**{option: value}).hash(KEY) != base, option
    # network_mode excludes ports and networks, so it is compared on a container without them.
    bare = built(ports=[]).hash(KEY)
    assert built(ports=[], network_mode="host").hash(KEY) != bare
    assert set(changed) | {"slots", "network_mode"} == set(specs.RUN_OPTIONS)


def test_an_option_added_later_leaves_existing_hashes_alone():
    """A container deployed before network_mode existed keeps its hash (an upgrade restarts nothing)."""
    summary = built().summary(KEY)
    assert "network_mode" not in summary
    assert built(network_mode="bridge").summary(KEY)["network_mode"] == "bridge"
    assert "stop_timeout" not in summary and built(stop_timeout=90).summary(KEY)["stop_timeout"] == 90


def test_stop_timeout_reaches_the_container_and_defaults_to_30():
    assert dc.container_args(built(stop_timeout=90), "svc", None, {})["stop_timeout"] == 90
    assert "stop_timeout" not in dc.container_args(built(), "svc", None, {})
    assert (built().stop_timeout(), built(stop_timeout=0).stop_timeout()) == (30, 0)
    with pytest.raises(specs.SpecError, match="stop_timeout: -1"):
        built(stop_timeout=-1)


def test_network_mode_host_reaches_the_sdk_without_a_network():
    args = dc.container_args(built(ports=[], network_mode="host"), "svc", None, {})
    assert args["network_mode"] == "host" and "network" not in args and "ports" not in args


def test_health_settings_are_recorded_but_not_hashed():
    plain = built()
    probed = built(healthcheck={"kind": "http", "url": "http://127.0.0.1:{port}/health"}, health_timeout=900)
    assert probed.hash(KEY) == plain.hash(KEY)
    assert probed.record()["health"]["health_timeout"] == 900


def test_env_file_values_change_the_hash_and_never_appear(tmp_path):
    env_file = tmp_path / "a.env"
    env_file.write_text("PASSWORD=hunter2-secret\n")
    first = built(env_files=[str(env_file)])
    env_file.write_text("PASSWORD=hunter3-secret\n")
    second = built(env_files=[str(env_file)])
    assert first.hash(KEY) != second.hash(KEY)
    for text in (repr(first.summary(KEY)), repr(first.record())):
        assert "hunter2" not in text
    assert first.record()["env_files"][0]["path"] == str(env_file)
    assert first.record()["env_files"][0]["checksum"] != second.record()["env_files"][0]["checksum"]


def test_hash_does_not_depend_on_order_or_the_spelling_of_a_port():
    assert built(ports=["127.0.0.1:8001:8000"]).hash(KEY) == built(ports=["127.0.0.1:8001:8000/tcp"]).hash(KEY)
    assert built(env={"A": "1", "B": "2"}).hash(KEY) == built(env={"B": "2", "A": "1"}).hash(KEY)


@pytest.mark.parametrize("over,message", [
    ({"ports": ["not-a-port"]}, "ports: 'not-a-port'"),
    ({"ports": ["8000"]}, "ports: '8000'"),
    ({"ports": ["70000:8000"]}, "ports: '70000:8000'"),
    ({"ports": ["1.2.3:8001:8000"]}, "'1.2.3' is not an IP address"),
    ({"ports": ["8001:8000/icmp"]}, "ports: '8001:8000/icmp'"),
    ({"volumes": ["/data"]}, "volumes: '/data'"),
    ({"volumes": ["/a:relative"]}, "volumes: '/a:relative'"),
    ({"volumes": ["/a:/b:rx"]}, "volumes: '/a:/b:rx'"),
    ({"volumes": ["bad name!:/b"]}, "neither an absolute path nor a volume name"),
    ({"gpus": -1}, "gpus: -1"),
    ({"gpus": True}, "gpus: True"),
    ({"gpus": "0,,1"}, "gpus: '0,,1'"),
    ({"memory": "lots"}, "memory: 'lots'"),
    ({"shm_size": "1.5.g"}, "shm_size: '1.5.g'"),
    ({"cpus": 0}, "cpus: 0"),
    ({"env": {"A B": "1"}}, "env: 'A B'"),
    ({"env": {"A": "x\0y"}}, "the value of A contains a NUL"),
    ({"labels": {"llmstack.slot": "x"}}, "llmstack.slot: the llmstack. prefix is reserved"),
    ({"networks": [{"name": "n"}, {"name": "n"}]}, "each entry needs a name, once"),
    ({"name": "../etc"}, "name: '../etc'"),
    ({"strategy": "blue_green", "ports": None}, "blue_green needs slots.blue and slots.green"),
    ({"strategy": "blue_green", "ports": ["127.0.0.1:1:2"]}, "ports are for strategy recreate"),
    ({"slots": {"blue": {"ports": []}, "green": {"ports": []}}}, "slots are for strategy blue_green"),
    ({"strategy": "blue_green", "ports": None, "slots": {"blue": {"ports": ["127.0.0.1:9:8000"]},
                                                         "green": {"ports": ["127.0.0.1:9:8000"]}}},
     "both publish 127.0.0.1:9"),
    ({"ports": [], "healthcheck": {"url": "http://127.0.0.1:{port}/"}}, "uses {port}, but the container publishes no port"),
    ({"image": "ghcr.io/org/app:v1"}, "names registry ghcr.io but registry is reg.example:5443"),
    ({"image": "org/app :v1"}, "is not an image reference"),
    ({"network_mode": "hots"}, "network_mode: 'hots'"),
    ({"network_mode": "host"}, "network_mode host: the container has no ports or networks"),
    ({"network_mode": "host", "ports": [], "networks": [{"name": "n"}]}, "drop ports and networks"),
    ({"network_mode": "host", "strategy": "blue_green", "ports": None,
      "slots": {"blue": {"ports": []}, "green": {"ports": []}}}, "blue_green needs a port per slot"),
])
def test_bad_input_is_named(over, message):
    with pytest.raises(specs.SpecError) as err:
        specs.ContainerSpec.from_params(params(**over))
    assert message in str(err.value)


def test_env_files_errors_name_file_and_line(tmp_path):
    missing = tmp_path / "missing.env"
    with pytest.raises(specs.SpecError, match="%s does not exist" % missing):
        built(env_files=[str(missing)])
    bad = tmp_path / "bad.env"
    bad.write_bytes(b"A=1\nB=\xff\n")
    with pytest.raises(specs.SpecError, match="%s line 2: not valid UTF-8" % bad):
        built(env_files=[str(bad)])


DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("image,registry,expected", [
    # Without a host, a reference is Docker Hub's, as Docker reads it (never ghcr.io's).
    ("vllm/vllm-openai:v0.34.0", None, ("docker.io/vllm/vllm-openai:v0.34.0", "docker.io")),
    ("nginx:1.27", None, ("docker.io/library/nginx:1.27", "docker.io")),
    ("org/app", None, ("docker.io/org/app:latest", "docker.io")),
    ("nginx:1.27", "docker.io", ("docker.io/library/nginx:1.27", "docker.io")),
    ("docker.io/library/nginx:1.27", "index.docker.io", ("docker.io/library/nginx:1.27", "docker.io")),
    # An explicit registry goes in front of a reference without a host.
    ("org/app:v1", "127.0.0.1:5443", ("127.0.0.1:5443/org/app:v1", "127.0.0.1:5443")),
    ("app", "localhost:5000", ("localhost:5000/app", "localhost:5000")),
    # A reference with a host is taken as it is.
    ("ghcr.io/org/app:1.2", None, ("ghcr.io/org/app:1.2", "ghcr.io")),
    ("ghcr.io/org/app:1.2", "ghcr.io", ("ghcr.io/org/app:1.2", "ghcr.io")),
    ("host:5443/org/app", None, ("host:5443/org/app", "host:5443")),
    ("localhost/app@" + DIGEST, None, ("localhost/app@" + DIGEST, "localhost")),
])
def test_image_reference_is_never_prefixed_twice(image, registry, expected):
    assert specs.image_reference(image, registry) == expected


@pytest.mark.parametrize("image,registry,message", [
    ("ghcr.io/org/app:v1", "reg.example:5443", "image ghcr.io/org/app:v1 names registry ghcr.io but registry is "
                                               "reg.example:5443: drop one of them"),
    ("docker.io/vllm/vllm-openai:v1", "ghcr.io", "names registry docker.io but registry is ghcr.io"),
    ("org/app:v1", "myregistry", "registry: 'myregistry' is not a registry host[:port]"),
    ("org/app:v1", "bad_host!:5000", "registry: 'bad_host!:5000' is not a registry host[:port]"),
    ("Org/App:v1", None, "image: 'Org/App:v1': the repository 'App' is not valid"),
    ("org/app:-v1", None, "image: 'org/app:-v1': '-v1' is not a valid tag"),
    ("org/app@sha256:ab", None, "image: 'org/app@sha256:ab': 'sha256:ab' is not a sha256 digest"),
])
def test_image_reference_errors_name_the_reference(image, registry, message):
    with pytest.raises(specs.SpecError) as err:
        specs.image_reference(image, registry)
    assert message in str(err.value)


@pytest.mark.parametrize("ref,expected", [
    ("ghcr.io/o/app:v1", ("ghcr.io/o/app", "v1", None)),
    ("127.0.0.1:5443/o/app", ("127.0.0.1:5443/o/app", "latest", None)),
    ("127.0.0.1:5443/o/app:v2", ("127.0.0.1:5443/o/app", "v2", None)),
    ("ghcr.io/o/app@" + DIGEST, ("ghcr.io/o/app", None, DIGEST)),
    # The repository never keeps the tag, so repo@digest is a valid reference.
    ("ghcr.io/o/app:v1@" + DIGEST, ("ghcr.io/o/app", "v1", DIGEST)),
])
def test_split_reference(ref, expected):
    assert specs.split_reference(ref) == expected


@pytest.mark.parametrize("value,expected", [
    (None, None), (0, None), ("all", "all"), (2, {"count": 2}), ("2", {"count": 2}),
    (["0", "1"], {"device_ids": ["0", "1"]}), ("0,1", {"device_ids": ["0", "1"]}),
    ("GPU-8f2a-11", {"device_ids": ["GPU-8f2a-11"]}),
])
def test_parse_gpus(value, expected):
    assert specs.parse_gpus(value) == expected


def test_record_round_trip_gives_the_same_spec(tmp_path):
    env_file = tmp_path / "a.env"
    env_file.write_text("A=1\n")
    spec = built(env_files=[str(env_file)], env={"X": "y"}, memory="1g", volumes=["/d:/d:ro"],
                 healthcheck={"kind": "http", "url": "http://127.0.0.1:{port}/health"})
    entry = {"seq": 4, "strategy": "recreate", "image": spec.image, "digest_ref": spec.digest_ref, "spec": spec.record()}
    again = specs.ContainerSpec.from_record("svc", "recreate", entry)
    again.load_env(KEY)
    assert again.hash(KEY) == spec.hash(KEY)
    assert again.health_url() == "http://127.0.0.1:8001/health"
    assert again.changed_env_files() == []
    env_file.write_text("A=2\n")
    again.load_env(KEY)
    assert again.changed_env_files() == [str(env_file)]
    with pytest.raises(specs.SpecError, match="ran with strategy recreate"):
        specs.ContainerSpec.from_record("svc", "blue_green", entry)


def test_blue_green_record_round_trip():
    spec = built(strategy="blue_green", ports=None, slots={"blue": {"ports": ["127.0.0.1:8001:8000"]},
                                                           "green": {"ports": ["127.0.0.1:8002:8000"]}})
    entry = {"seq": 1, "strategy": "blue_green", "image": spec.image, "digest_ref": spec.digest_ref,
             "spec": spec.record()}
    again = specs.ContainerSpec.from_record("svc", "blue_green", entry)
    again.load_env(KEY)
    assert again.hash(KEY) == spec.hash(KEY) and again.ports_for("green") == ["127.0.0.1:8002:8000/tcp"]


def test_sdk_arguments_come_from_the_spec():
    spec = built(ports=["127.0.0.1:8001:8000", "127.0.0.2:8001:8000", "9000:9000/udp"], volumes=["data:/data"],
                 memory="1g", cpus=0.5, gpus="all", env={"B": "2", "A": "1"}, restart_policy="no",
                 networks=[{"name": "net1", "aliases": ["x"]}], labels={"team": "llm"})
    args = dc.container_args(spec, "svc", None, {"team": "llm", "llmstack.service": "svc"})
    assert args["ports"] == {"8000/tcp": [("127.0.0.1", 8001), ("127.0.0.2", 8001)], "9000/udp": 9000}
    assert args["environment"] == ["A=1", "B=2"]
    assert args["volumes"] == ["data:/data:rw"] and args["mem_limit"] == "1g" and args["nano_cpus"] == 500000000
    assert args["device_requests"][0]["Count"] == -1 and "restart_policy" not in args
    assert args["network"] == "net1" and args["labels"]["llmstack.service"] == "svc"


def test_sdk_arguments_per_slot():
    spec = built(strategy="blue_green", ports=None, slots={"blue": {"ports": ["127.0.0.1:8001:8000"]},
                                                           "green": {"ports": ["127.0.0.1:8002:8000"]}})
    assert dc.container_args(spec, "svc-blue", "blue", {})["ports"] == {"8000/tcp": ("127.0.0.1", 8001)}
    assert dc.container_args(spec, "svc-green", "green", {})["ports"] == {"8000/tcp": ("127.0.0.1", 8002)}


def test_device_requests():
    assert dc.device_requests(None) is None
    assert dc.device_requests("all")[0]["Count"] == -1
    assert dc.device_requests({"count": 2})[0]["Count"] == 2
    assert dc.device_requests({"device_ids": ["0", "1"]})[0]["DeviceIDs"] == ["0", "1"]


def test_summary_diff_names_options_and_env_keys():
    before = built(env={"A": "1", "B": "2"}).summary(KEY)
    after = built(env={"A": "1", "B": "3", "C": "4"}, memory="2g").summary(KEY)
    assert specs.summary_diff(before, after) == {
        "options": ["memory"], "env": {"added": ["C"], "removed": [], "changed": ["B"]}}


def test_url_for_fills_the_published_port_and_names_the_option_without_one():
    assert built().url_for("http://127.0.0.1:{port}/metrics") == "http://127.0.0.1:8001/metrics"
    assert built().url_for("http://10.0.0.5:8000/metrics") == "http://10.0.0.5:8000/metrics"
    with pytest.raises(specs.SpecError, match="drain_metrics_url uses {port}, but the container publishes no port"):
        built(ports=[]).url_for("http://127.0.0.1:{port}/metrics", option="drain_metrics_url")
