"""The harness of the module tests here: each module's argument spec as its main() hands it to AnsibleModule,
and main() run in-process with given module args (ansible-core's patch_module_args, or the same by hand on cores
before 2.19) up to AnsibleModule's validation. Modules are found by listing plugins/modules/, so a new module or
option is covered unchanged."""
import contextlib
import copy
import importlib
import json
import os
from unittest import mock

import pytest

from ansible.module_utils import basic

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core < 2.19
    @contextlib.contextmanager
    def patch_module_args(args=None):
        """What 2.19's ansible.module_utils.testing.patch_module_args does, for older cores."""
        with mock.patch.object(basic, "_ANSIBLE_ARGS", json.dumps({"ANSIBLE_MODULE_ARGS": args or {}}).encode()):
            yield

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
MODULES = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "plugins", "modules"))
                 if f.endswith(".py") and not f.startswith("_"))
PACKAGE = "ansible_collections.llmstack.deploy.plugins.modules."


class _SpecCaptured(BaseException):
    """Raised in place of AnsibleModule.__init__ once the module's arguments are recorded (a BaseException, so a
    module's own `except Exception` can't swallow it)."""


def load(module):
    """The module's Python code, imported as the collection's (tests/conftest.py makes that importable)."""
    return importlib.import_module(PACKAGE + module)


def argument_spec(module):
    """(argument_spec, the other AnsibleModule keyword arguments) that main() of `module` constructs its
    AnsibleModule with; with add_file_common_args, the spec holds FILE_COMMON_ARGUMENTS as AnsibleModule adds them.
    main() stops at the constructor: nothing after it runs."""
    code = load(module)
    seen = {}

    def record(_self, *args, **kwargs):
        seen["args"], seen["kwargs"] = args, kwargs
        raise _SpecCaptured()

    with mock.patch.object(basic.AnsibleModule, "__init__", record):
        with pytest.raises(_SpecCaptured):
            code.main()
    kwargs = copy.deepcopy(seen["kwargs"])
    spec = seen["args"][0] if seen["args"] else kwargs.pop("argument_spec")
    if kwargs.get("add_file_common_args"):
        for name, option in basic.FILE_COMMON_ARGUMENTS.items():
            spec.setdefault(name, copy.deepcopy(option))
    return spec, kwargs


class ValidationPassed(BaseException):
    """Raised right after AnsibleModule.__init__ accepted the module args, so nothing of the module runs."""

    def __init__(self, params):
        super().__init__("the module args passed validation")
        self.params = params


def validate(module, args, capsys):
    """main() of `module` with `args` as its module args, stopped as soon as AnsibleModule has validated them:
    (None, the validated params) when they pass, else (exit code, the JSON result main() printed). A module's
    body never runs, so nothing here touches Docker, AWS or the file system."""
    code = load(module)
    original = basic.AnsibleModule.__init__

    def init_then_stop(self, *a, **kw):
        original(self, *a, **kw)
        raise ValidationPassed(self.params)

    capsys.readouterr()
    with patch_module_args(args), mock.patch.object(basic.AnsibleModule, "__init__", init_then_stop):
        try:
            code.main()
        except ValidationPassed as passed:
            return None, passed.params
        except SystemExit as exited:
            out = capsys.readouterr().out
            return exited.code, json.loads(out.strip().splitlines()[-1])
    raise AssertionError("%s: main() neither failed nor built its AnsibleModule" % module)
