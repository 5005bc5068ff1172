# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""certbot's deploy hook for the gateway: put a new certificate in place and reload nginx without a dropped stream.

certbot runs the hook (roles/nginx_gateway/files/llmstack_certbot_hook.py, with this file beside it) after each
issuance and renewal, with RENEWED_LINEAGE set to the certificate's live/<name> folder. The hook:
  1. copies its fullchain.pem and privkey.pem over the gateway's tls/server.crt and server.key, each atomically;
  2. runs `nginx -t` on the live configuration, which loads the new pair (a key that does not match fails here);
  3. reloads with `nginx -s reload`, as the nginx_config module does: the old workers finish their streams.
A pair nginx refuses is taken back out (the old files restored) and nginx is not reloaded, so the gateway keeps
serving its old certificate. Standard library only (with managed_file.py, installed beside it): it runs outside
Ansible, on the host.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess

try:
    from ansible_collections.llmstack.deploy.plugins.module_utils import managed_file
except ImportError:  # on the host: installed beside this file (roles/nginx_gateway/tasks/certbot.yml)
    import managed_file

# certbot's file in live/<name> -> the gateway's file in tls/, with its mode.
PAIR = (("fullchain.pem", "server.crt", 0o644), ("privkey.pem", "server.key", 0o600))


class HookError(Exception):
    pass


def install(lineage, tls_dir):
    """Copy the lineage's pair into tls_dir. Returns {path: (old bytes or None, mode)} to undo with restore()."""
    new = {}
    for src, dest, mode in PAIR:
        data = managed_file.read(os.path.join(lineage, src))[0]
        if not data:
            raise HookError("%s has no %s" % (lineage, src))
        new[os.path.join(tls_dir, dest)] = (data, mode)
    old = dict((path, (managed_file.read(path)[0], mode)) for path, (_data, mode) in new.items())
    for path, (data, mode) in new.items():
        managed_file.write_atomic(path, data, mode)
    return old


def restore(old):
    for path, (data, mode) in old.items():
        if data is None:
            if os.path.exists(path):
                os.unlink(path)
        else:
            managed_file.write_atomic(path, data, mode)


def _nginx(nginx, args):
    proc = subprocess.run(list(nginx) + list(args), capture_output=True, text=True, check=False)
    return proc.returncode, (proc.stderr or proc.stdout or "").strip()


def deploy(lineage, tls_dir, nginx, conf):
    """install(), nginx -t, then nginx -s reload. nginx: the command that runs nginx where the gateway runs
    (docker exec <container> nginx). On a refused pair, the old one is restored and HookError raised."""
    old = install(lineage, tls_dir)
    code, out = _nginx(nginx, ["-t", "-c", conf])
    if code != 0:
        restore(old)
        raise HookError("nginx -t refused the new certificate of %s (the old one is back, nginx not reloaded): %s"
                        % (lineage, out))
    code, out = _nginx(nginx, ["-s", "reload", "-c", conf])
    if code != 0:
        raise HookError("nginx -s reload failed: %s" % out)
