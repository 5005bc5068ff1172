# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout's own error: at the bottom, so every part of the rollout can raise it."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class RolloutError(Exception):
    """A rollout failed; the message says what happened and what to do."""
