# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fault tests' hook: stop a rollout at a named phase (tests/integration/test_rollout_faults.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

# The phases a rollout passes, in order; the fault tests kill the module at each.
PHASES = ("pending", "stopped_old", "health_wait", "switched")


def checkpoint(phase):
    """Test hook: LLMSTACK_TEST_FAULT=<phase>:<action>[:<arg>] stops a rollout at a named phase.

    pause:<file> writes this process's pid to <file> and waits to be killed; sleep:<seconds> waits;
    raise[:timeout] raises (timeout: the SDK's ReadTimeout). The fault tests use it to SIGKILL the
    module exactly at a phase. Phases: PHASES. Unset, a no-op."""
    fault = os.environ.get("LLMSTACK_TEST_FAULT", "")
    want, _sep, rest = fault.partition(":")
    if not fault or want != phase:
        return
    action, _sep, arg = rest.partition(":")
    if action == "pause":
        with open(arg, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(600)
    elif action == "sleep":
        time.sleep(float(arg))
    elif action == "raise":
        if arg == "timeout":
            import requests.exceptions
            raise requests.exceptions.ReadTimeout("injected at %s" % phase)
        raise RuntimeError("injected fault at %s" % phase)
