# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    # The Docker connection option of every module in the docker action group: docker_client.DOCKER_ARGUMENT_SPEC.
    DOCUMENTATION = r"""
options:
  docker_host:
    description: Docker daemon URL. Defaults to E(DOCKER_HOST), else the local socket.
    type: str
    default: unix:///var/run/docker.sock
"""
