# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    # The folder option of every module that writes a file through module_utils.managed_file; the file's own
    # mode, owner and group each module documents itself (their defaults differ), the rest comes from
    # ansible.builtin.files.
    DOCUMENTATION = r"""
options:
  folder_mode:
    description:
      - Mode of the file's folder when the module creates it because it is missing, in octal (a string such as
        C('0700')). Missing folders above that one are created 0750. Folders that exist are left as they are.
      - The folders are owned by root when the module runs as root, else by the user running it. Check mode
        creates none and reports them in the diff.
    type: raw
    default: '0750'
"""
