# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The files the gateway reads per request, in one place: their names, their format, read and write.

In the gateway's switch folder (nginx_gateway_switch_dir, default /etc/llmstack/gateway):
  <upstream>.live    a blue_green service's live slot: one line, `<upstream>_<slot>` (the nginx upstream's name)
  <upstream>.drain   a plain upstream's server that gets no new requests: one line, `host:port`
The nginx template builds the same paths (roles/nginx_gateway/templates/nginx.conf.j2); nginx reads them with njs.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.llmstack.deploy.plugins.module_utils import state

SLOTS = ("blue", "green")
LIVE_SUFFIX = ".live"
DRAIN_SUFFIX = ".drain"


class SwitchError(Exception):
    pass


def other_slot(slot):
    return "green" if slot == "blue" else "blue"


def live_path(folder, name):
    return os.path.join(folder, name + LIVE_SUFFIX)


def drain_path(folder, name):
    return os.path.join(folder, name + DRAIN_SUFFIX)


def slot_line(name, slot):
    """What the switch file holds for slot: the name of nginx's upstream for it."""
    return "%s_%s" % (name, slot)


def parse_slot(content, name):
    """The slot a switch file's content names, else None."""
    for slot in SLOTS:
        if content.strip() == slot_line(name, slot):
            return slot
    return None


def read_text(path):
    """The file's stripped content; None if it does not exist."""
    try:
        with open(path) as f:
            return f.read().strip()
    except (IOError, OSError):
        if not os.path.exists(path):
            return None
        raise


class SwitchFile:
    """One blue_green service's switch file (`<folder>/<name>.live`). The gateway reads it per request, so
    writing it moves traffic without a reload; the write is an atomic replace, so a reader sees old or new."""

    def __init__(self, path, name):
        self.path = path
        self.name = name

    @classmethod
    def in_folder(cls, folder, name):
        return cls(live_path(folder, name), name)

    @property
    def folder(self):
        return os.path.dirname(os.path.abspath(self.path))

    def check_folder(self):
        """Raise SwitchError unless the folder exists (the gateway role creates it; a typo must not create one
        the gateway never reads)."""
        if not os.path.isdir(self.folder):
            raise SwitchError("switch_file: the folder %s does not exist (the gateway role creates it)" % self.folder)

    def read_raw(self):
        """The content, None without a file (raises OSError if it exists but can't be read)."""
        return read_text(self.path)

    def read(self):
        """The live slot; None if there is no file yet. A file that names no slot of this service is an error."""
        try:
            content = self.read_raw()
        except (IOError, OSError) as e:
            raise SwitchError("cannot read the switch file %s: %s" % (self.path, e))
        if content is None:
            return None
        slot = parse_slot(content, self.name)
        if slot:
            return slot
        raise SwitchError("the switch file %s says %r, not %s or %s: fix or remove it (the gateway reads it to "
                          "pick the live slot)" % (self.path, content[:80], slot_line(self.name, "blue"),
                                                   slot_line(self.name, "green")))

    def peek(self):
        """For reports: the slot, None without a file, '?' for anything else; never raises."""
        try:
            content = self.read_raw()
        except (IOError, OSError):
            return None
        if content is None:
            return None
        return parse_slot(content, self.name) or "?"

    def write(self, slot):
        state.write_file(self.path, slot_line(self.name, slot) + "\n", mode=0o644)
