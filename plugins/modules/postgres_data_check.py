#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: postgres_data_check
short_description: Check that a PostgreSQL image can open the data it is about to be given
version_added: 0.1.0
description:
  - Run before rolling out a PostgreSQL container. Compares the major version of the data (its
    C(PG_VERSION) file, read on the host) with the image's major version, and fails with a message naming
    the volume or path, both versions and what to do when they differ. A major version can't open another's
    data files, and the official image would start a new, empty cluster beside data it does not find where
    it looks.
  - The image's major comes from its C(PG_MAJOR) environment variable (the official image sets it), read
    after the image is resolved in the registry and pulled, else from the version in its tag.
  - Where the data goes in the container comes from the image's C(PGDATA) and declared volume, so both
    layouts of the official image work - up to 17 the volume is C(/var/lib/postgresql/data), from 18 it
    is C(/var/lib/postgresql) with the cluster in C(<major>/docker) (docker-library/postgres issue 1259).
    The result's RV(mount_target) is the container path to mount O(data) on.
  - A volume that does not exist yet, or holds no cluster, is new data, and any image is fine.
  - Also says whether the running container (O(container)) runs another image than O(image), so a role can
    back the data up before the image changes.
  - Changes nothing on the host except pulling the image (which the rollout would pull anyway).
author:
  - llmstack.deploy maintainers (@llmstack)
options:
  data:
    description:
      - The data, as the rollout mounts it - a Docker volume name (read through the volume's mount point on
        the host) or an absolute host path.
    type: str
    required: true
  image:
    description:
      - The image about to be rolled out, with a tag or a digest, with or without its registry (as
        O(llmstack.deploy.container_rollout#module:image)).
    type: str
    required: true
  registry:
    description: Registry host, as in M(llmstack.deploy.container_rollout); defaults to the one O(image) names.
    type: str
  registry_username:
    description: Registry user. With O(registry_password), the module logs in first.
    type: str
  registry_password:
    description: Registry token or password.
    type: str
  container:
    description: The container that runs the data today, compared with O(image) for RV(image_changes).
    type: str
    default: postgres
extends_documentation_fragment:
  - llmstack.deploy.attributes
  - llmstack.deploy.attributes.actiongroup_docker
  - llmstack.deploy.docker
attributes:
  check_mode:
    support: full
    details:
      - Resolves the image in the registry but pulls nothing; without a local copy the major comes from the tag.
  diff_mode:
    support: none
  idempotent:
    support: full
notes:
  - Reading a volume's files needs root on the Docker host (C(become=true)) and a local daemon.
requirements:
  - the docker Python SDK (python3-docker 5.x or docker 7.x) on the target host
"""

EXAMPLES = r"""
- name: Refuse an image whose major version can't open the data
  llmstack.deploy.postgres_data_check:
    data: postgres_data
    image: docker.io/library/postgres:16.13-bookworm
  register: pg

- name: Roll out, with the data where this image looks for it
  llmstack.deploy.container_rollout:
    name: postgres
    image: docker.io/library/postgres:16.13-bookworm
    volumes: ["postgres_data:{{ pg.mount_target }}"]
"""

RETURN = r"""
status:
  description: C(new) (no cluster in the data yet) or C(match) (same major version).
  returned: success
  type: str
  sample: match
data_version:
  description: The data's C(PG_VERSION) (null for new data).
  returned: success
  type: str
  sample: "16"
data_dir:
  description: The host folder that was read (a volume's mount point, or the path); null for a volume that does not exist yet.
  returned: success
  type: str
  sample: /var/lib/docker/volumes/postgres_data/_data
image:
  description: The full image reference.
  returned: success
  type: str
digest_ref:
  description: The image pinned by digest (null when the registry could not be reached).
  returned: success
  type: str
major:
  description: The image's major version.
  returned: success
  type: str
  sample: "16"
major_source:
  description: Where RV(major) came from, C(PG_MAJOR) (the image's environment) or C(tag).
  returned: success
  type: str
mount_target:
  description: The container path to mount the data on.
  returned: success
  type: str
  sample: /var/lib/postgresql/data
data_subdir:
  description: Where the image's cluster is below RV(mount_target) (empty up to 17, C(18/docker) for 18).
  returned: success
  type: str
container_running:
  description: Whether O(container) exists and runs.
  returned: success
  type: bool
image_changes:
  description: O(container) exists and runs another image than O(image) (compared by digest).
  returned: success
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.llmstack.deploy.plugins.module_utils import docker_client as dc
from ansible_collections.llmstack.deploy.plugins.module_utils import pgdata
from ansible_collections.llmstack.deploy.plugins.module_utils import spec as specs


def host_folder(client, data):
    """(host folder or None, words naming the data) for a volume name or an absolute path."""
    if data.startswith("/"):
        return data, "host path %s" % data
    with dc.call("inspect volume %s" % data):
        try:
            volume = client.volumes.get(data)
        except dc.docker.errors.NotFound:
            return None, "volume %s (not created yet)" % data
    mountpoint = volume.attrs.get("Mountpoint")
    if not mountpoint:
        raise dc.DockerError("volume %s (driver %s) has no local mount point to read PG_VERSION from"
                             % (data, volume.attrs.get("Driver")))
    return mountpoint, "volume %s (%s)" % (data, mountpoint)


def image_facts(client, registry, ref, check_mode, warnings):
    """(digest_ref, image attrs or None). attrs is None in check mode without a local copy, or with the
    registry out of reach and no local copy of the tag."""
    try:
        image, digest_ref = registry.resolve(ref, pull=not check_mode)
    except dc.RegistryUnreachable as e:
        warnings.append("%s; the image's version comes from a local copy or its tag" % e)
        return None, attrs_of(registry.local_image(ref))
    return digest_ref, attrs_of(image)


def attrs_of(image):
    return image.attrs if image is not None else None


def running_image(client, name):
    """(running?, digest or None, image id or None) of the container called name."""
    container = dc.find(client, name)
    if container is None or container.status != "running":
        return False, None, None
    return True, container.labels.get(specs.LABEL_DIGEST), container.attrs.get("Image")


def run(module):
    p = module.params
    warnings = []
    ref, host = specs.image_reference(p["image"], p["registry"])
    client = dc.connect(p["docker_host"])
    registry = dc.Registry(client, host, p["registry_username"], p["registry_password"])
    digest_ref, attrs = image_facts(client, registry, ref, module.check_mode, warnings)
    config = (attrs or {}).get("Config") or {}
    env = config.get("Env") if attrs is not None else None
    major, source = pgdata.image_major(ref, env)
    mount, subdir = pgdata.layout(major, env, list(config.get("Volumes") or {}) if attrs is not None else None)

    folder, where = host_folder(client, p["data"])
    try:
        clusters = pgdata.find_clusters(folder) if folder else {}
    except (IOError, OSError) as e:
        raise dc.DockerError("cannot read %s: %s; run the task as root (become: true) on the Docker host itself"
                             % (where, e))
    if major is None and not clusters:
        warnings.append("cannot tell which PostgreSQL major version %s runs (no PG_MAJOR, no version in its tag); "
                        "the data is new, so nothing is at risk" % ref)
    result = pgdata.compare(where, ref, major, subdir, clusters)

    running, running_digest, running_id = running_image(client, p["container"])
    if digest_ref and running_digest:
        changes = running_digest != digest_ref.split("@", 1)[1]
    elif attrs is not None and running_id:
        changes = running_id != attrs.get("Id")
    else:
        changes = running  # can't tell: assume it does, so a backup is taken rather than skipped
    result.update(changed=False, data_dir=folder, image=ref, digest_ref=digest_ref, major=major, major_source=source,
                  mount_target=mount, data_subdir=subdir, container_running=running,
                  image_changes=bool(running and changes))
    return result, warnings


def main():
    module = AnsibleModule(
        argument_spec=dict(
            data=dict(type="str", required=True),
            image=dict(type="str", required=True),
            registry=dict(type="str"),
            registry_username=dict(type="str"),
            registry_password=dict(type="str", no_log=True),
            container=dict(type="str", default="postgres"),
            **dc.DOCKER_ARGUMENT_SPEC
        ),
        required_together=[["registry_username", "registry_password"]],
        supports_check_mode=True,
    )
    try:
        pgdata.check_data_name(module.params["data"])
        result, warnings = run(module)
    except (pgdata.DataCheckError, dc.DockerError, specs.SpecError) as e:
        module.fail_json(msg="postgres data check: %s" % e)
    for warning in warnings:
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
