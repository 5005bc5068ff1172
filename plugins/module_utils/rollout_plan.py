# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a run will deploy: the whole ContainerSpec validated and the image resolved, before anything on the
host is touched. Bad input fails here."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.llmstack.deploy.plugins.module_utils import docker_client as dc
from ansible_collections.llmstack.deploy.plugins.module_utils import spec as specs
from ansible_collections.llmstack.deploy.plugins.module_utils.errors import RolloutError


class Plan:
    """spec: the ContainerSpec. rollback (state=rolled_back): {to, from, note}, and target, the recorded deployment
    it returns to. image: the local image (None in check mode before a pull). drain_url: drain_metrics_url with
    {port} resolved. outage: why the registry was skipped, or None. env_read: False when check mode left the env
    files unread (inputs_changed), so the spec hash can't be known."""

    def __init__(self, spec, rollback=None, target=None):
        self.spec, self.rollback, self.target = spec, rollback, target
        self.image = self.drain_url = self.outage = None
        self.env_read = True

    @classmethod
    def from_params(cls, p, history):
        """The spec asked for, or with state=rolled_back the one recorded by the deployment to return to."""
        if p["state"] != "rolled_back":
            return cls(specs.ContainerSpec.from_params(p))
        target, note = history.rollback_target()
        current = history.current
        rollback = {"to": target["seq"], "note": note,
                    "from": current["seq"] if target is not current else (current.get("rollback_of") or None)}
        return cls(specs.ContainerSpec.from_record(p["name"], p["strategy"], target), rollback, target)

    def check(self, key, client, p, read_env=True):
        """What can be checked on the host without changing it: env files, networks, the health check's API key,
        the drain URL and GPU support. read_env=False leaves the env files unread; only `env` is known then."""
        spec = self.spec
        if read_env:
            spec.load_env(key)
        else:
            spec.environment, self.env_read = dict(spec.options["env"]), False
        dc.check_networks(client, spec)
        key_name = (spec.health.get("healthcheck") or {}).get("api_key_env")
        if read_env and key_name and not spec.environment.get(key_name):
            raise specs.SpecError("healthcheck.api_key_env: %s is not set by env_files or env" % key_name)
        # Checked here, before anything is touched; used before the old container stops.
        self.drain_url = spec.url_for(p.get("drain_metrics_url"), option="drain_metrics_url")
        if spec.options["gpus"]:
            missing = dc.gpu_support_missing(p["docker_host"])
            if missing:
                raise specs.SpecError(missing)

    def resolve(self, registry, current, pull, log, warn):
        """The image: with a rollback the one the host kept (no registry call), else the digest the registry gives
        for the tag. current: the history's current deployment (its digest stands in when the registry is down)."""
        spec, target = self.spec, self.target
        if target is not None:
            log(self.rollback["note"])
            self.image = registry.local_image(target["image_id"])
            if self.image is None:
                raise RolloutError("the image of deployment #%d, %s (%s), is no longer on this host; deploy it "
                                   "again with state: present" % (target["seq"], target["digest_ref"], target["image_id"]))
            changed = spec.changed_env_files() if self.env_read else []
            if changed:
                warn("env file(s) %s changed since deployment #%d; the rollback uses their current content "
                     "(values are never recorded)" % (", ".join(changed), target["seq"]))
            return
        log("resolving %s" % spec.image)
        try:
            self.image, spec.digest_ref = registry.resolve(spec.image, pull=pull)
        except dc.RegistryUnreachable as e:
            self.image = self.outage_fallback(registry, current, e)

    def outage_fallback(self, registry, current, error):
        """The registry is down: keep the digest recorded for this same tag, if a run can be a no-op."""
        if not current or current.get("image") != self.spec.image:
            raise error
        self.spec.digest_ref = current["digest_ref"]
        self.outage = "%s; kept %s, the digest recorded for %s" % (error, current["digest_ref"], self.spec.image)
        return registry.local_image(current["image_id"])

    def spec_hash(self, key):
        """The spec hash; None when the env files were not read (nothing on the host can match it then)."""
        return self.spec.hash(key) if self.env_read else None

    def summary(self, key, current):
        """The spec summary. Without the env files, their keys stand as the current deployment recorded them."""
        summary = self.spec.summary(key)
        if not self.env_read:
            recorded = ((current or {}).get("summary") or {}).get("environment") or {}
            summary["environment"] = dict(recorded, **summary["environment"])
        return summary
