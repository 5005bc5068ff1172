"""pgdata: the data's major version against the image's, in both layouts of the official image."""
import os

import pytest

from ansible_collections.llmstack.deploy.plugins.module_utils import pgdata

# The environment and volumes `docker image inspect` shows for the official images (and the lab's).
PG16_ENV = ["PATH=/usr/local/sbin:/usr/bin:/usr/lib/postgresql/16/bin", "PG_MAJOR=16", "PG_VERSION=16.13-1.pgdg120+1",
            "PGDATA=/var/lib/postgresql/data"]
PG16_VOLUMES = ["/var/lib/postgresql/data"]
PG18_ENV = ["PG_MAJOR=18", "PG_VERSION=18.4-1.pgdg12+1", "PGDATA=/var/lib/postgresql/18/docker"]
PG18_VOLUMES = ["/var/lib/postgresql"]


def cluster(folder, version):
    """A cluster's top folder as initdb leaves it, with a database folder that has its own PG_VERSION."""
    os.makedirs(os.path.join(folder, "base", "1"))
    os.makedirs(os.path.join(folder, "global"))
    for path in (folder, os.path.join(folder, "base", "1")):
        with open(os.path.join(path, "PG_VERSION"), "w") as f:
            f.write(version + "\n")


@pytest.mark.parametrize("text, major", [
    ("16", "16"), ("16.13", "16"), ("16.13-bookworm", "16"), ("15", "15"), ("18.4-trixie", "18"),
    ("9.6", "9.6"), ("9.6.24-alpine", "9.6"), ("9", None), ("latest", None), ("bookworm", None), ("", None),
    (None, None), ("016", "16"),
])
def test_major_of(text, major):
    assert pgdata.major_of(text) == major


@pytest.mark.parametrize("ref, env, expected", [
    ("docker.io/library/postgres:16.13-bookworm", PG16_ENV, ("16", "PG_MAJOR")),
    # PG_MAJOR wins over a tag that says something else (a retagged image).
    ("registry:5443/llmstack/postgres:stable", ["PG_MAJOR=15"], ("15", "PG_MAJOR")),
    ("docker.io/library/postgres:16.13-bookworm", None, ("16", "tag")),
    ("docker.io/library/postgres:17", [], ("17", "tag")),
    ("127.0.0.1:5443/llmstack/postgres:15", None, ("15", "tag")),  # the registry's port is not the tag
    ("docker.io/library/postgres:latest", None, (None, None)),
    ("docker.io/library/postgres@sha256:" + "ab" * 32, None, (None, None)),
    ("docker.io/library/postgres:16@sha256:" + "ab" * 32, None, ("16", "tag")),
])
def test_image_major(ref, env, expected):
    assert pgdata.image_major(ref, env) == expected


@pytest.mark.parametrize("major, env, volumes, expected", [
    ("16", PG16_ENV, PG16_VOLUMES, ("/var/lib/postgresql/data", "")),
    ("18", PG18_ENV, PG18_VOLUMES, ("/var/lib/postgresql", "18/docker")),
    # Without the image's metadata (check mode, nothing pulled yet): the official layout of that major.
    ("16", None, None, ("/var/lib/postgresql/data", "")),
    ("17", None, None, ("/var/lib/postgresql/data", "")),
    ("18", None, None, ("/var/lib/postgresql", "18/docker")),
    ("19", None, None, ("/var/lib/postgresql", "19/docker")),
    ("9.6", None, None, ("/var/lib/postgresql/data", "")),
    (None, None, None, ("/var/lib/postgresql/data", "")),
    # A PGDATA below the declared volume (a common custom image): mount the volume, look below it.
    ("16", ["PGDATA=/var/lib/postgresql/data/pgdata"], ["/var/lib/postgresql/data"],
     ("/var/lib/postgresql/data", "pgdata")),
    # A PGDATA outside every declared volume: mount PGDATA itself.
    ("16", ["PGDATA=/srv/pg"], ["/var/lib/postgresql/data"], ("/srv/pg", "")),
])
def test_layout(major, env, volumes, expected):
    assert pgdata.layout(major, env, volumes) == expected


def test_find_clusters_stops_at_a_cluster(tmp_path):
    cluster(str(tmp_path), "16")
    assert pgdata.find_clusters(str(tmp_path)) == {"": "16"}


def test_find_clusters_new_layout_with_two_majors(tmp_path):
    """After pg_upgrade --link from 17 to 18 under /var/lib/postgresql both clusters are there."""
    cluster(str(tmp_path / "17" / "docker"), "17")
    cluster(str(tmp_path / "18" / "docker"), "18")
    assert pgdata.find_clusters(str(tmp_path)) == {"17/docker": "17", "18/docker": "18"}


def test_find_clusters_empty_missing_and_not_deeper_than_asked(tmp_path):
    assert pgdata.find_clusters(str(tmp_path)) == {}
    assert pgdata.find_clusters(str(tmp_path / "missing")) == {}
    (tmp_path / "lost+found").mkdir()
    cluster(str(tmp_path / "a" / "b" / "c"), "16")
    assert pgdata.find_clusters(str(tmp_path)) == {}
    (tmp_path / "file").write_text("x")
    assert pgdata.find_clusters(str(tmp_path / "file")) == {}


def test_find_clusters_empty_pg_version_is_still_data(tmp_path):
    (tmp_path / "PG_VERSION").write_text("")
    assert pgdata.find_clusters(str(tmp_path)) == {"": "?"}


def test_unreadable_folder_is_an_error(tmp_path, monkeypatch):
    def denied(path):
        raise PermissionError(13, "Permission denied", path)
    monkeypatch.setattr(pgdata.os, "listdir", denied)
    with pytest.raises(OSError):
        pgdata.find_clusters(str(tmp_path))


WHERE = "volume postgres_data (/var/lib/docker/volumes/postgres_data/_data)"
IMAGE = "docker.io/library/postgres:16.13-bookworm"


def test_compare_new_and_match():
    assert pgdata.compare(WHERE, IMAGE, "16", "", {}) == {"status": "new", "data_version": None}
    assert pgdata.compare(WHERE, IMAGE, None, "", {}) == {"status": "new", "data_version": None}
    assert pgdata.compare(WHERE, IMAGE, "16", "", {"": "16"}) == {"status": "match", "data_version": "16"}
    assert pgdata.compare(WHERE, "postgres:18", "18", "18/docker", {"17/docker": "17", "18/docker": "18"}) == \
        {"status": "match", "data_version": "18"}


def test_compare_mismatch_names_place_versions_and_what_to_do():
    with pytest.raises(pgdata.DataCheckError) as e:
        pgdata.compare(WHERE, IMAGE, "16", "", {"": "14"})
    msg = str(e.value)
    assert WHERE in msg and IMAGE in msg
    assert "is PostgreSQL 14" in msg and "runs PostgreSQL 16" in msg
    assert "pg_upgrade" in msg and "playbooks/backup.yml" in msg and "playbooks/restore.yml" in msg
    assert "PostgreSQL 14 image" in msg and "Nothing was changed" in msg


def test_compare_upgrade_to_18_sees_the_old_layout():
    """17's data at the volume's top, 18 looks in 18/docker: it would init an empty cluster beside it."""
    with pytest.raises(pgdata.DataCheckError) as e:
        pgdata.compare(WHERE, "postgres:18.4", "18", "18/docker", {"": "17"})
    msg = str(e.value)
    assert "is PostgreSQL 17" in msg and "runs PostgreSQL 18" in msg and "<data>/18/docker" in msg
    assert "new, empty database" in msg


def test_compare_next_major_in_the_new_layout():
    with pytest.raises(pgdata.DataCheckError) as e:
        pgdata.compare(WHERE, "postgres:19", "19", "19/docker", {"18/docker": "18"})
    assert "is PostgreSQL 18" in str(e.value) and "runs PostgreSQL 19" in str(e.value)


def test_compare_unknown_major_with_data_refuses():
    with pytest.raises(pgdata.DataCheckError) as e:
        pgdata.compare(WHERE, "postgres:latest", None, "", {"": "16"})
    assert "cannot tell" in str(e.value) and "16 in <data>" in str(e.value)


def test_compare_old_two_part_major():
    assert pgdata.compare(WHERE, "postgres:9.6", "9.6", "", {"": "9.6"})["status"] == "match"
    with pytest.raises(pgdata.DataCheckError):
        pgdata.compare(WHERE, "postgres:9.5", "9.5", "", {"": "9.6"})


@pytest.mark.parametrize("data, ok", [
    ("postgres_data", True), ("/srv/pg", True), ("pg.data-1", True),
    ("relative/path", False), ("", False), ("-x", False), ("a", False),
])
def test_check_data_name(data, ok):
    if ok:
        pgdata.check_data_name(data)
    else:
        with pytest.raises(pgdata.DataCheckError):
            pgdata.check_data_name(data)
