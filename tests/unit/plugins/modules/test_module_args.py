"""Each module's main() with module args as a task would pass them, stopped once AnsibleModule has validated them:
bad input fails there, with a message naming the option, before the module does anything; every task in the
module's EXAMPLES passes. The arguments are built from each module's own argument spec (as module_harness.py
captures it), so these tests hold for any module in plugins/modules/ without a list of its options here."""
import copy

import pytest
import yaml

from module_harness import MODULES, load, validate

# A value of each type that AnsibleModule accepts, for options a test has to give but does not test.
PLACEHOLDER = {"str": "x", "path": "/nonexistent/llmstack-test", "raw": "x", "int": 1, "float": 1.5, "bool": False,
               "list": [], "dict": {}, "json": "{}", "jsonarg": "{}", "bytes": "1K", "bits": "1K"}
# A value of each type that AnsibleModule can't convert to it.
WRONG = {"int": "not-a-number", "float": "not-a-number", "bool": "not-a-bool", "list": {"not": "a list"},
         "dict": ["not", "a dict"]}
UNKNOWN = "llmstack_no_such_option"


def placeholder(option):
    """A valid value for `option`: its first choice, the sub-options a dict needs, else PLACEHOLDER of its type."""
    kind = option.get("type", "str")
    if option.get("choices"):
        first = list(option["choices"])[0]
        return [first] if kind == "list" else first
    if kind == "dict" and option.get("options"):
        return minimal_args(option["options"], option)
    if callable(kind):
        return "x"
    return copy.deepcopy(PLACEHOLDER[kind])


def minimal_args(spec, rules):
    """Arguments that pass `spec` with the constraints in `rules` (AnsibleModule's keyword arguments, or a dict
    option's own): every required option, plus what required_if, required_one_of and required_by then ask for."""
    args = dict((name, placeholder(o)) for name, o in spec.items() if o.get("required"))

    def value(name):
        return args.get(name, spec[name].get("default"))

    for _pass in range(len(spec) + 1):  # until nothing more is needed: one rule's option can trigger another
        before = dict(args)
        for rule in rules.get("required_if") or []:
            key, wanted, needed = rule[:3]
            any_one = len(rule) > 3 and rule[3]
            if value(key) == wanted and not (any_one and any(value(n) is not None for n in needed)):
                for name in (needed[:1] if any_one else needed):
                    if value(name) is None:
                        args[name] = placeholder(spec[name])
        for group in rules.get("required_one_of") or []:
            if all(value(n) is None for n in group):
                args[group[0]] = placeholder(spec[group[0]])
        for key, needed in (rules.get("required_by") or {}).items():
            if value(key) is not None:
                for name in [needed] if isinstance(needed, str) else needed:
                    if value(name) is None:
                        args[name] = placeholder(spec[name])
        if args == before:
            return args
    raise AssertionError("required_if/required_by rules that never settle: %s" % rules)


def option_named(spec, name):
    """The option `name` is (its own name or an alias), or None."""
    for option_name, option in spec.items():
        if name == option_name or name in (option.get("aliases") or []):
            return option
    return None


def is_template(value):
    return isinstance(value, str) and value.strip().startswith("{{") and value.strip().endswith("}}")


@pytest.mark.parametrize("module", MODULES)
def test_the_minimal_arguments_pass(module, module_specs, capsys):
    """The baseline of the tests below: the required options (and what the spec's rules then require) alone
    pass validation, and AnsibleModule fills in every other option."""
    spec, rules = module_specs[module]
    rc, result = validate(module, minimal_args(spec, rules), capsys)
    assert rc is None, result
    assert set(result) >= set(spec), sorted(set(spec) - set(result))


@pytest.mark.parametrize("module", MODULES)
def test_missing_required_options_are_named(module, module_specs, capsys):
    spec, _rules = module_specs[module]
    required = sorted(name for name, option in spec.items() if option.get("required"))
    if not required:
        pytest.skip("%s has no required option" % module)
    rc, result = validate(module, {}, capsys)
    assert rc == 1 and result.get("failed") is True, result
    assert result["msg"] == "missing required arguments: %s" % ", ".join(required), result["msg"]


@pytest.mark.parametrize("module", MODULES)
def test_an_unknown_option_is_refused(module, module_specs, capsys):
    spec, rules = module_specs[module]
    args = dict(minimal_args(spec, rules), **{UNKNOWN: "x"})
    rc, result = validate(module, args, capsys)
    assert rc == 1 and result.get("failed") is True, result
    assert result["msg"].startswith("Unsupported parameters for") and UNKNOWN in result["msg"], result["msg"]


@pytest.mark.parametrize("module", MODULES)
def test_a_value_of_the_wrong_type_or_outside_the_choices_is_refused(module, module_specs, capsys):
    """Every int, float, bool, list and dict option given a value that can't be converted, and every option with
    choices given one outside them, fails with a message naming the option (for a dict with sub-options
    ansible-core says only "dictionary requested, ...": that one must fail)."""
    spec, rules = module_specs[module]
    base = minimal_args(spec, rules)
    cases = []
    for name, option in sorted(spec.items()):
        kind = option.get("type", "str")
        if not callable(kind) and kind in WRONG:
            cases.append((name, WRONG[kind]))
        if option.get("choices"):
            cases.append((name, ["not-a-choice"] if kind == "list" else "not-a-choice"))
    if not cases:
        pytest.skip("%s has no typed option and no choices" % module)
    problems = []
    for name, bad in cases:
        rc, result = validate(module, dict(base, **{name: bad}), capsys)
        named = name in (result.get("msg") or "") or (spec[name].get("options") and bad == WRONG["dict"])
        if rc != 1 or not named:
            problems.append("%s=%r: exit %s, %s" % (name, bad, rc, result.get("msg") if rc else "accepted"))
    assert problems == []


def example_problems(module, module_specs, capsys):
    """What fails validation among the tasks of `module`'s EXAMPLES that call a module of this collection, with
    their arguments as written (a value that is one whole template, `{{ var }}`, stands in as a placeholder of the
    option's type)."""
    tasks = yaml.safe_load(load(module).EXAMPLES) or []
    calls = [(key[len("llmstack.deploy."):], args) for task in tasks for key, args in task.items()
             if key.startswith("llmstack.deploy.") and key[len("llmstack.deploy."):] in MODULES]
    if not calls:
        return ["%s: EXAMPLES calls no module of the collection" % module]
    problems = []
    for called, args in calls:
        spec, _rules = module_specs[called]
        args = dict((name, placeholder(option_named(spec, name) or {}) if is_template(value) else value)
                    for name, value in (args or {}).items())
        rc, result = validate(called, args, capsys)
        if rc is not None:
            problems.append("%s example: %s" % (called, result.get("msg")))
    return problems


@pytest.mark.parametrize("module", MODULES)
def test_every_example_passes_validation(module, module_specs, capsys):
    assert example_problems(module, module_specs, capsys) == []


def test_an_example_with_a_misspelt_option_is_caught(module_specs, capsys, monkeypatch):
    code = load("ssm_file")
    tasks = yaml.safe_load(code.EXAMPLES)
    call = next(task for task in tasks if "llmstack.deploy.ssm_file" in task)["llmstack.deploy.ssm_file"]
    call["pathh"] = call.pop("path")
    monkeypatch.setattr(code, "EXAMPLES", yaml.safe_dump(tasks))
    problems = example_problems("ssm_file", module_specs, capsys)
    assert len(problems) == 1 and problems[0].startswith("ssm_file example: missing required arguments: path"), problems
