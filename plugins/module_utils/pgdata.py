# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A PostgreSQL data folder against an image: which major version the data is, which one the image
runs, and where the image keeps its data. No Docker here, only files and the image's metadata.

A major version can't open another major's data files, and the official image starts a new empty
cluster beside data it does not find where it looks. Its layout changed with 18 (docker-library/postgres
#1259, #1364): up to 17 PGDATA is /var/lib/postgresql/data (the declared volume); from 18 it is
/var/lib/postgresql/<major>/docker with the volume at /var/lib/postgresql.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import posixpath
import re

from ansible_collections.llmstack.deploy.plugins.module_utils import image_ref

OLD_PGDATA = "/var/lib/postgresql/data"
NEW_LAYOUT_FROM = 18
# In a cluster's top folder; each database's folder (base/<oid>) has one too, so the search stops at a cluster.
_CLUSTER_MARKER = "PG_VERSION"
_TAG_VERSION_RE = re.compile(r"^(\d+)(?:\.(\d+))?")
_VOLUME_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")  # Docker's rule for volume names
UPGRADE_HINT = ("To move to the new major version: take a backup (playbooks/backup.yml), point postgres_data at a "
                "new, empty volume or path, converge with the new image and restore the backup into it "
                "(playbooks/restore.yml); or upgrade the files with pg_upgrade. To stay on this data as it is, "
                "set postgres_image to a PostgreSQL %s image.")


class DataCheckError(Exception):
    """The data and the image don't go together; the message says where, both versions and what to do."""


def check_data_name(data):
    """data is a volume name or an absolute host path, as the rollout mounts it."""
    if not (data.startswith("/") or _VOLUME_NAME_RE.match(data)):
        raise DataCheckError("data: %r is neither a volume name nor an absolute host path" % data)


def major_of(version):
    """The major version in a version text: '16.13' -> '16', '15' -> '15', '9.6.24' -> '9.6', else None."""
    match = _TAG_VERSION_RE.match(str(version or "").strip())
    if not match:
        return None
    first, second = match.group(1), match.group(2)
    if int(first) < 10:  # before 10 the major had two parts
        return "%s.%s" % (first, second) if second is not None else None
    return str(int(first))


def env_dict(env):
    """An image's Config.Env list (['K=V', ...]) as a dict."""
    return dict(item.split("=", 1) for item in env or [] if "=" in item)


def tag_of(ref):
    """The tag of an image reference, or None (a digest, or no tag, or not a reference)."""
    try:
        return image_ref.parse(ref).tag
    except ValueError:
        return None


def image_major(ref, env=None):
    """(major, source): the image's PG_MAJOR if its environment is known and has one, else the tag's version."""
    major = major_of(env_dict(env).get("PG_MAJOR")) if env is not None else None
    if major:
        return major, "PG_MAJOR"
    major = major_of(tag_of(ref))
    return (major, "tag") if major else (None, None)


def is_new_layout(major):
    return major is not None and "." not in major and int(major) >= NEW_LAYOUT_FROM


def layout(major, env=None, volumes=None):
    """(mount_target, subdir): where the data volume goes in the container, and where the cluster is below it.

    From the image's PGDATA and declared VOLUME when known (PGDATA inside a declared volume: mount that
    volume), else from the major version's layout in the official image."""
    pgdata = env_dict(env).get("PGDATA") if env is not None else None
    if not pgdata:
        pgdata = "/var/lib/postgresql/%s/docker" % major if is_new_layout(major) else OLD_PGDATA
    if volumes is None:  # the image's metadata is not known: the official image's volume for that layout
        volumes = ["/var/lib/postgresql" if is_new_layout(major) else OLD_PGDATA]
    pgdata = posixpath.normpath(pgdata)
    mount = pgdata
    for volume in sorted(volumes or [], key=len):
        volume = posixpath.normpath(volume)
        if pgdata == volume or pgdata.startswith(volume.rstrip("/") + "/"):
            mount = volume
            break
    subdir = posixpath.relpath(pgdata, mount)
    return mount, "" if subdir == "." else subdir


def read_version(folder):
    """The content of folder/PG_VERSION, or None when there is none."""
    try:
        with open(os.path.join(folder, _CLUSTER_MARKER)) as f:
            return f.read().strip() or "?"
    except (IOError, OSError) as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise


def find_clusters(root, depth=2):
    """{relative folder: PG_VERSION content} of the clusters at root or up to depth folders below it.

    A cluster's own folders are not searched (base/<oid>/PG_VERSION belongs to its cluster)."""
    found = {}

    def walk(folder, rel, left):
        version = read_version(folder)
        if version is not None:
            found[rel] = version
            return
        if left == 0:
            return
        try:
            names = sorted(os.listdir(folder))
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                return
            raise
        for name in names:
            path = os.path.join(folder, name)
            if os.path.isdir(path) and not os.path.islink(path):
                walk(path, posixpath.join(rel, name) if rel else name, left - 1)

    walk(root, "", depth)
    return found


def compare(where, image, major, subdir, clusters):
    """{'status': 'new'|'match', 'data_version'} or DataCheckError.

    where names the data for people ('volume postgres_data (/var/lib/docker/volumes/...)'); subdir is where
    the image looks for its cluster below the mount; clusters is find_clusters() of the mount's host folder."""
    if not clusters:
        return {"status": "new", "data_version": None}
    if major is None:
        raise DataCheckError(
            "cannot tell which PostgreSQL major version the image %s runs (no PG_MAJOR in its environment, no "
            "version in its tag), so it can't be checked against the data in %s (PostgreSQL %s); use a tag that "
            "names the version, such as postgres:16.13-bookworm" % (image, where, describe(clusters)))
    if subdir in clusters:
        version = clusters[subdir]
        if major_of(version) == major:
            return {"status": "match", "data_version": version}
        raise DataCheckError(
            "the data in %s is PostgreSQL %s, but the image %s runs PostgreSQL %s, which can't open it. Nothing was "
            "changed; a running postgres container was left as it is. %s"
            % (where, version, image, major, UPGRADE_HINT % version))
    # Data, but not where this image looks: it would start a new, empty cluster beside it.
    inside = posixpath.join("<data>", subdir) if subdir else "<data>"
    versions = sorted(set(clusters.values()), key=lambda v: [int(n) for n in re.findall(r"\d+", v)])
    raise DataCheckError(
        "the data in %s is PostgreSQL %s (%s), but the image %s runs PostgreSQL %s and looks for its cluster in %s, "
        "where there is none: it would start a new, empty database beside the old one. Nothing was changed; a running "
        "postgres container was left as it is. %s"
        % (where, "/".join(versions), describe(clusters), image, major, inside, UPGRADE_HINT % versions[-1]))


def describe(clusters):
    return ", ".join("%s in %s" % (v, posixpath.join("<data>", k) if k else "<data>")
                     for k, v in sorted(clusters.items()))
