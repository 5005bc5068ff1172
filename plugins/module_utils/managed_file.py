# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A file a module owns: read it, decide whether it changes, diff it, write it atomically.

ManagedFile works on AnsibleModule's file common arguments (the module sets add_file_common_args=True):
mode, owner, group, the SELinux parts, attributes and unsafe_writes go through load_file_common_arguments
and set_fs_attributes_if_different, as in Ansible's own file modules. The write is ours rather than
atomic_move's: atomic_move gives a new file the umask's mode for a moment and never fsyncs, while a secret
must be 0600 (or the mode asked for) from its first byte and survive a crash whole.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import grp
import os
import pwd
import stat
import tempfile

# A missing folder above the file is created with this mode (root:root when the module runs as root).
DEFAULT_FOLDER_MODE = 0o750
# Ansible masks no_log values wherever they occur inside a result string, so a short value would garble
# every number and path that holds it; values this short are left to the modules' own care.
MIN_SECRET_LENGTH = 8


class ManagedFileError(Exception):
    """Names the path, owner, group or mode at fault; never content."""


def read(path):
    """(bytes, stat) of an existing file, or (None, None)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        return data, os.stat(path)
    except FileNotFoundError:
        return None, None


def write_atomic(path, content, mode=0o600, uid=-1, gid=-1, prepare=None, unsafe_writes=False):
    """Write content (text, or bytes as they are) through a temp file in the same folder, then rename.

    The temp file is created 0600 and gets mode/uid/gid (-1 keeps the process's) before anything else can
    see it, so a secret never exists with wider permissions; prepare(temp_path), if given, sets the rest
    first. Content and metadata are fsynced before the rename and the folder after it: readers, and a host
    that crashes, see the old file or the new one, never half of one. unsafe_writes: where the rename is
    refused because the file is a bind mount (EBUSY), write it in place instead."""
    data = content if isinstance(content, bytes) else content.encode("utf-8")
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchown(f.fileno(), uid, gid)
            os.fchmod(f.fileno(), mode)
            if prepare is not None:
                prepare(tmp)
            os.fsync(f.fileno())
        try:
            os.rename(tmp, path)
        except OSError as e:
            if not (unsafe_writes and e.errno == errno.EBUSY):
                raise
            with open(path, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.unlink(tmp)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def attributes(st):
    """mode/uid/gid of a stat result, as the modules show them in a diff."""
    return {"mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}


def octal_mode(value):
    """A mode as an int from an int or an octal string ('0600'); None for a symbolic one ('u=rw')."""
    if value is None or isinstance(value, int):
        return value
    try:
        return int(str(value), 8)
    except ValueError:
        return None


def resolve_id(value, kind):
    """uid/gid (kind 'owner' or 'group') from a name or a number; None when not set."""
    if value is None:
        return None
    if str(value).isdigit():
        return int(value)
    lookup = pwd.getpwnam if kind == "owner" else grp.getgrnam
    try:
        return lookup(value)[2]
    except KeyError:
        raise ManagedFileError("%s %s does not exist on this host" % (kind, value))


def missing_folders(path):
    """The folders above path that do not exist, outermost first."""
    missing = []
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(folder):
        missing.insert(0, folder)
        folder = os.path.dirname(folder)
    return missing


def folder_modes(folders, mode):
    """[(folder, mode)]: the file's own folder gets mode, a missing one above it DEFAULT_FOLDER_MODE (a 0700
    secrets folder must not make /etc/llmstack 0700 on a fresh host)."""
    return [(folder, mode if folder == folders[-1] else DEFAULT_FOLDER_MODE) for folder in folders]


def make_folders(folders, mode):
    """Create folders (outermost first), see folder_modes; root:root when running as root."""
    for folder, mode in folder_modes(folders, mode):
        try:
            os.mkdir(folder, mode)
        except FileExistsError:
            # Another task created it meanwhile: its mode and owner are that task's to decide.
            if os.path.isdir(folder):
                continue
            raise
        if os.geteuid() == 0:
            os.chown(folder, 0, 0)
        os.chmod(folder, mode)  # mkdir's mode went through the umask


def register_secrets(module, values):
    """Have Ansible mask these values wherever the module's result, messages or logs would show them."""
    module.no_log_values.update(v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_LENGTH)


def _text(data):
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


class ManagedFile:
    """The module's file at `path` (default: the `path` option), read when created.

    update() writes new content only when it differs, applies the file arguments and creates missing
    folders (folder_mode, default the `folder_mode` option or 0750); nothing is touched in check mode.
    A new file gets the task's mode, or new_mode when the task gives none; an existing file keeps its own.
    An owner or group that does not exist fails the module before anything changes."""

    def __init__(self, module, path=None, folder_mode=None, new_mode=0o600):
        self.module = module
        self.file_args = module.load_file_common_arguments(module.params, path=path or module.params["path"])
        self.path = self.file_args["path"]
        if folder_mode is None:
            folder_mode = module.params.get("folder_mode") or DEFAULT_FOLDER_MODE
        self.folder_mode = octal_mode(folder_mode)
        self.content, self.stat = read(self.path)
        try:
            if self.folder_mode is None:
                raise ManagedFileError("folder_mode %r is not an octal number such as '0750'" % (folder_mode,))
            self.wanted = self._wanted(new_mode)
        except ManagedFileError as e:
            module.fail_json(msg="%s: %s" % (self.path, e))

    @property
    def exists(self):
        return self.stat is not None

    def _wanted(self, new_mode):
        """mode/uid/gid the task asks for, as far as they are known before the file is touched."""
        want = {}
        mode = octal_mode(self.file_args["mode"])
        if mode is not None:
            want["mode"] = mode
        elif not self.exists and self.file_args["mode"] is None:
            want["mode"] = new_mode
        for kind, key in (("owner", "uid"), ("group", "gid")):
            value = resolve_id(self.file_args[kind], kind)
            if value is not None:
                want[key] = value
        return want

    def update(self, content=None, before_view=None, after_view=None, backup=False):
        """Make the file hold content (None: keep what it holds) with the task's file arguments.

        Returns {'changed': ...}, plus 'diff' in diff mode and 'backup_file' when backup=True replaced a file.
        before_view/after_view(attrs) give the diff's text for each side, attrs being the file's mode/uid/gid
        then; a module with secrets passes redacted ones. Without them the diff shows the content as it is,
        and a change of the file's attributes as Ansible's file module shows it."""
        if content is None and not self.exists:
            raise ValueError("%s does not exist, so it needs content" % self.path)
        if isinstance(content, str):
            content = content.encode("utf-8")
        module, result = self.module, {}
        folders = missing_folders(self.path)
        rewrite = content is not None and content != self.content
        attr_diff = {}
        # On an existing file this applies mode, owner and the rest now (in check mode: only compares), so a
        # new content below is written with the attributes the file already has.
        attrs_changed = self.exists and module.set_fs_attributes_if_different(
            self.file_args, False, diff=attr_diff, expand=False)
        result["changed"] = bool(folders or rewrite or attrs_changed)
        if rewrite and not module.check_mode:
            make_folders(folders, self.folder_mode)
            if backup and self.exists:
                result["backup_file"] = module.backup_local(self.path)
            self._write(content)
        if module._diff and result["changed"]:
            result["diff"] = self._diff(folders, content, attr_diff, before_view, after_view)
        return result

    def _write(self, content):
        module, path = self.module, self.path
        st = os.stat(path) if self.exists else None
        mode = stat.S_IMODE(st.st_mode) if st else self.wanted.get("mode", 0o600)
        # Keeping another user's ownership takes root; otherwise the writer's own is all there can be.
        uid, gid = (st.st_uid, st.st_gid) if st and os.geteuid() == 0 else (-1, -1)
        # chattr flags (attributes) wait for the rename: an immutable temp file could not be renamed.
        temp_args = dict(self.file_args, attributes=None)

        def prepare(tmp):
            if module.selinux_enabled():
                context = module.selinux_context(path) if st else module.selinux_default_context(path)
                module.set_context_if_different(tmp, context, False)
            module.set_fs_attributes_if_different(dict(temp_args, path=tmp), False, expand=False)
        write_atomic(path, content, mode=mode, uid=uid, gid=gid, prepare=prepare,
                     unsafe_writes=module.params.get("unsafe_writes", False))
        module.set_attributes_if_different(path, self.file_args["attributes"], False, expand=False)

    def _diff(self, folders, content, attr_diff, before_view, after_view):
        before_attrs = attributes(self.stat) if self.exists else {}
        after_attrs = dict(before_attrs, **self.wanted)
        # Ansible resolved what the task's values could not tell before (a symbolic mode, for one).
        for key, name in (("mode", "mode"), ("uid", "owner"), ("gid", "group")):
            if name in attr_diff.get("after", {}):
                value = attr_diff["after"][name]
                after_attrs[key] = int(value, 8) if key == "mode" else value
        after_content = self.content if content is None else content
        entries = [{"before": {"path": folder, "state": "absent"},
                    "after": {"path": folder, "state": "directory", "mode": "%04o" % mode}}
                   for folder, mode in folder_modes(folders, self.folder_mode)] if folders else []
        entries.append({
            "before_header": self.path if self.exists else "%s (absent)" % self.path,
            "after_header": self.path,
            "before": (before_view(before_attrs) if before_view else _text(self.content)) if self.exists else "",
            "after": after_view(after_attrs) if after_view else _text(after_content),
        })
        if not (before_view or after_view) and attr_diff:
            entries.append(dict(attr_diff, before_header=self.path, after_header=self.path))
        return entries[0] if len(entries) == 1 else entries
