#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: nginx_config
short_description: Apply a gateway's nginx configuration as a validated release, then reload
version_added: 0.2.0
description:
  - Writes the configuration files of an nginx running in a container as one release under
    O(path)C(/releases/<id>), validates it with C(nginx -t) in that container (or, before the container
    exists, in a throwaway one from O(image)), and only then points O(path)C(/current) at it and
    reloads nginx with C(nginx -s reload) in the container (Docker's kill API would mark the container as stopped
    by hand, and an C(unless-stopped) gateway would then not come back after a reboot). A configuration that
    fails C(nginx -t) never becomes current, and the message shows nginx's error.
  - A running gateway that Docker holds as stopped by hand (a reload by an earlier version of this module) is
    restarted once, with a warning, even when the configuration is unchanged (only a start clears the mark).
  - nginx runs with C(-c <mount>/current/nginx.conf); relative includes resolve against the release's
    own folder, so the candidate is validated whole and a reload reads the new release whole.
  - O(secret_files) are rendered on the host from env files (for example the API keys
    M(llmstack.deploy.ssm_env_file) fetched), so their values never pass through the controller and
    never appear in a diff. A value with characters outside C([A-Za-z0-9._~+/=-]) is refused,
    naming its key.
  - No-op when the release id (a keyed hash over every file, the secret files and O(watch_files)) is
    already current and the gateway is not so marked.
author:
  - llmstack.deploy maintainers (@llmstack)
extends_documentation_fragment:
  - llmstack.deploy.attributes
  - llmstack.deploy.attributes.actiongroup_docker
  - llmstack.deploy.docker
attributes:
  check_mode:
    support: full
    details: Writes, validates and reloads nothing; creates nothing, not even O(state_dir).
  diff_mode:
    support: full
    details: A unified diff of the plain files; a secret file shows only that it changed.
  idempotent:
    support: full
options:
  path:
    description: The configuration folder on the host (mounted read-only into the gateway at O(mount)).
    type: path
    required: true
  mount:
    description: Where O(path) is mounted inside the gateway container.
    type: str
    default: /etc/nginx/llmstack
  files:
    description:
      - The plain files of the configuration, as a dict of relative name to content. Must include C(nginx.conf).
      - Include other files with paths relative to C(nginx.conf), for example C(include routes.conf).
    type: dict
    required: true
  secret_files:
    description: Files rendered on the host from an env file, one line per key.
    type: list
    elements: dict
    default: []
    suboptions:
      file:
        description: Relative name of the file in the release.
        type: str
        required: true
      env_file:
        description: The env file to read (Docker's format, as M(llmstack.deploy.ssm_env_file) writes it).
        type: path
        required: true
      line:
        description:
          - The line for each key, with C({key}), C({value}), and C({value_re}) (the value as a regex literal, each
            non-alphanumeric character in brackets), for example C("~^Bearer {value_re}$" "{key}";).
        type: str
        required: true
      keys:
        description: Only these keys, in this order. Default every key of the env file, sorted.
        type: list
        elements: str
  watch_files:
    description:
      - Files on the host that the configuration uses from outside the release (TLS certificate and key).
        Their content is part of the release id, so replacing one reloads nginx.
    type: list
    elements: path
    default: []
  container:
    description: The gateway container, where C(nginx -t) runs and which gets the reload.
    type: str
    default: nginx_gateway
  image:
    description:
      - Image to validate with when the container is not running (first deployment). Without it, or when
        it is not on the host yet, a first configuration is applied unvalidated (with a warning) and the
        gateway's start is the check.
    type: str
  keep:
    description: Releases kept for inspection and manual rollback (the current one always stays).
    type: int
    default: 5
  state_dir:
    description: Where the host key (for the release id) and the lock live.
    type: path
    default: /var/lib/llmstack
notes:
  - Runs on the gateway host and needs the Docker SDK for Python there, like M(llmstack.deploy.container_rollout).
"""

EXAMPLES = r"""
- name: Apply the gateway configuration
  llmstack.deploy.nginx_config:
    path: /etc/llmstack/nginx_gateway
    files:
      nginx.conf: "{{ lookup('ansible.builtin.template', 'nginx.conf.j2') }}"
    secret_files:
      - file: api_keys.map
        env_file: /etc/llmstack/nginx_gateway.api_keys.env
        line: '"~^Bearer {value_re}$" "{key}";'
    container: nginx_gateway
    image: docker.io/library/nginx:1.27.3
"""

RETURN = r"""
release:
  description: The id of the current release after the run.
  type: str
  returned: always
previous:
  description: The release that was current before, or null.
  type: str
  returned: always
validated:
  description: How the release was checked with C(nginx -t) (C(container), C(image)), C(none), or null when nothing changed.
  type: str
  returned: always
reloaded:
  description: Whether the running gateway got a reload.
  type: bool
  returned: always
restarted:
  description: >-
    Whether the gateway was restarted (or would be, in check mode) because Docker held it as stopped by hand
    after a reload by an earlier version of this module, so that Docker starts it again at boot.
  type: bool
  returned: always
secret_keys:
  description: The keys rendered into each secret file (names only).
  type: dict
  returned: always
"""

import os
import shutil
import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmstack.deploy.plugins.module_utils import docker_client as dc
from ansible_collections.llmstack.deploy.plugins.module_utils import envfile, managed_file
from ansible_collections.llmstack.deploy.plugins.module_utils import nginx_config as ngx
from ansible_collections.llmstack.deploy.plugins.module_utils import state


def validate(client, p, rid):
    """nginx -t on the candidate: in the running gateway, else in a throwaway container of p['image']."""
    conf = "%s/%s/%s/nginx.conf" % (p["mount"].rstrip("/"), ngx.RELEASES, rid)
    cmd = ["nginx", "-t", "-q", "-c", conf]
    container = dc.find(client, p["container"])
    if container is not None and container.status == "running":
        with dc.call("nginx -t in %s" % p["container"]):
            code, out = container.exec_run(cmd)
        return "container", code, out
    if p["image"]:
        with dc.call("inspect image %s" % p["image"]):
            try:
                client.images.get(p["image"])
            except dc.docker.errors.ImageNotFound:
                return "none", 0, b""
        with dc.call("nginx -t in a container of %s" % p["image"]):
            box = client.containers.create(p["image"], cmd, network_mode="host", detach=True,
                                           volumes={p["path"]: {"bind": p["mount"], "mode": "ro"}})
            try:
                box.start()
                code = box.wait(timeout=60).get("StatusCode")
                out = box.logs(stdout=True, stderr=True)
            finally:
                box.remove(force=True)
        return "image", code, out
    return "none", 0, b""


def reload(module, container, p):
    """SIGHUP to the master by `nginx -s reload` inside the gateway. Not Docker's kill API: dockerd marks any
    container it signals as stopped by hand, and then does not start an unless-stopped gateway again at boot."""
    conf = "%s/current/nginx.conf" % p["mount"].rstrip("/")
    with dc.call("nginx -s reload in %s" % p["container"]):
        code, out = container.exec_run(["nginx", "-s", "reload", "-c", conf])
    if code != 0:
        # The new release is current: nginx must get it, even at that cost.
        module.warn("%s: nginx -s reload failed (%s); sent SIGHUP through Docker instead, which marks the container "
                    "as stopped by hand (restart it once so that Docker starts it again at boot)"
                    % (p["container"], (out or b"").decode("utf-8", "replace").strip()[-300:]))
        with dc.call("reload nginx in %s" % p["container"]):
            container.kill(signal="SIGHUP")


def run(module, p):
    result = apply(module, p)
    restart_if_marked(module, p, result)
    return result


def restart_if_marked(module, p, result):
    """A reload by an earlier version of this module went through Docker's kill API, which marked the gateway as
    stopped by hand: dockerd would not start it at boot. Only a start clears the mark, so restart it once."""
    try:
        client = dc.connect(p["docker_host"], timeout=30)
    except dc.DockerError:
        return  # no daemon yet (check mode on a fresh host): no gateway to repair
    container = dc.find(client, p["container"])
    if container is None or container.status != "running":
        return
    if not dc.manually_stopped(client, container, p["docker_host"]):
        return
    result.update(changed=True, restarted=True)
    module.warn("%s: Docker holds it as stopped by hand (a reload through Docker's kill API, as this module did "
                "before), so it would not start at boot; %s it once, which ends its open connections"
                % (p["container"], "would restart" if module.check_mode else "restarted"))
    if not module.check_mode:
        with dc.call("restart %s" % p["container"]):
            container.restart(timeout=container.attrs["Config"].get("StopTimeout") or 10)


def apply(module, p):
    secret_names, files, secrets, secret_keys, secret_values = set(), {}, {}, {}, []
    for name, content in p["files"].items():
        files[ngx.check_file_name(name)] = ("" if content is None else str(content)).encode("utf-8")
    if "nginx.conf" not in files:
        raise ngx.ConfigError("files: nginx.conf is missing (nginx runs with -c <mount>/current/nginx.conf)")
    for spec in p["secret_files"]:
        name, content, keys, values = ngx.render_secret_file(spec)
        if name in files:
            raise ngx.ConfigError("secret_files: %s is also in files" % name)
        secrets[name], secret_keys[name] = content, keys
        secret_names.add(name)
        secret_values.extend(values)
    # Ansible masks them in anything the module returns, a failure's message and traceback included.
    managed_file.register_secrets(module, secret_values)
    watched = {}
    for path in p["watch_files"]:
        data, _st = managed_file.read(path)
        if data is None:
            raise ngx.ConfigError("watch_files: %s does not exist" % path)
        watched["watch:" + path] = data

    key = state.host_key(p["state_dir"], create=not module.check_mode) or os.urandom(32)
    release_files = dict(files, **secrets)
    rid = ngx.release_id(dict(release_files, **watched), key)
    previous = ngx.current_release(p["path"])
    result = dict(changed=rid != previous, release=rid, previous=previous, validated=None, reloaded=False,
                  restarted=False, secret_keys=secret_keys)
    if not result["changed"]:
        return result
    if module._diff:
        result["diff"] = {"before_header": "%s/current (%s)" % (p["path"], previous or "none"),
                          "after_header": "%s/releases/%s" % (p["path"], rid),
                          "prepared": ngx.diff(p["path"], previous, release_files, secret_names)}
    if module.check_mode:
        return result

    client = dc.connect(p["docker_host"])
    with state.Lock(p["state_dir"], "%s-config" % p["container"]):
        # Read again under the lock: a run that held it may have made this release current meanwhile.
        if ngx.current_release(p["path"]) == rid:
            return dict(result, changed=False, diff={})
        ngx.write_release(p["path"], rid, release_files, secret_names)
        how, code, out = validate(client, p, rid)
        result["validated"] = how
        if code != 0:
            # The candidate goes away; current (the last good one) stays and nginx is not touched.
            shutil.rmtree(os.path.join(p["path"], ngx.RELEASES, rid), ignore_errors=True)
            text = envfile.redact((out or b"").decode("utf-8", "replace").strip(), secret_values)
            raise ngx.ConfigError("nginx -t refused the new configuration (the current one stays): %s" % text[-1500:])
        if how == "none":
            module.warn("%s: configuration applied without nginx -t: no running %s and no image %s on the host yet; "
                        "the gateway's start checks it" % (p["path"], p["container"], p["image"]))
        ngx.activate(p["path"], rid)
        container = dc.find(client, p["container"])
        if container is not None and container.status == "running":
            reload(module, container, p)
            result["reloaded"] = True
        ngx.prune(p["path"], p["keep"], protect=[rid])
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            mount=dict(type="str", default="/etc/nginx/llmstack"),
            files=dict(type="dict", required=True),
            secret_files=dict(type="list", elements="dict", default=[], no_log=False, options=dict(
                file=dict(type="str", required=True),
                env_file=dict(type="path", required=True),
                line=dict(type="str", required=True),
                keys=dict(type="list", elements="str", no_log=False))),
            watch_files=dict(type="list", elements="path", default=[]),
            container=dict(type="str", default="nginx_gateway"),
            image=dict(type="str"),
            keep=dict(type="int", default=5),
            state_dir=dict(type="path", default="/var/lib/llmstack"),
            **dc.DOCKER_ARGUMENT_SPEC
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        module.exit_json(**run(module, p))
    except (ngx.ConfigError, envfile.EnvFileError, state.StateError, dc.DockerError) as e:
        module.fail_json(msg="%s: %s" % (p["path"], e))
    except Exception as e:  # pylint: disable=broad-exception-caught
        module.fail_json(msg="%s: unexpected %s: %s" % (p["path"], e.__class__.__name__, e),
                         exception=traceback.format_exc())


if __name__ == "__main__":
    main()
