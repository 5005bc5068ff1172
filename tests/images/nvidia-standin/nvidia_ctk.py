"""A stand-in for `nvidia-ctk` (NVIDIA Container Toolkit CLI) in the lab's nvidia-container-toolkit-base.

Implements `--version` and `runtime configure` for Docker the way the real command does it
(cmd/nvidia-ctk/runtime/configure/configure.go and pkg/config/engine/docker/ in
NVIDIA/nvidia-container-toolkit, checked at the tags v1.17.7, v1.18.0 and v1.18.1):

- load daemon.json (absent: an empty config) as a JSON object; every key is kept;
- set runtimes.<name> = {"args": [], "path": <path>} (name `nvidia`, path `nvidia-container-runtime`);
  --set-as-default also sets default-runtime; --cdi.enabled sets features = {"cdi": true} (the real
  code replaces the whole `features` object there, since a decoded object is not a map[string]bool);
- write it back as Go's json.MarshalIndent does: keys sorted, 4-space indent, HTML characters
  escaped, numbers as float64, no newline at the end; the file is truncated in place (its mode stays);
- log like logrus on stderr: `INFO[0000] ...` on a terminal, `time=... level=info msg=...` otherwise.

@VERSION@ and @COMMIT@ are filled in when tests/lab/nvidia-repo builds the package.
"""
import datetime
import decimal
import json
import math
import os
import sys
import time

VERSION = "@VERSION@"
COMMIT = "@COMMIT@"
STARTED = time.time()
DEFAULT_CONFIG = {"docker": "/etc/docker/daemon.json", "containerd": "/etc/containerd/config.toml",
                  "crio": "/etc/crio/crio.conf"}


class Logger:
    """logrus' TextFormatter: colours and elapsed seconds on a terminal, key=value lines otherwise."""
    LEVELS = {"debug": (0, 37), "info": (1, 36), "warning": (2, 33), "error": (3, 31)}

    def __init__(self):
        self.level = 1

    def log(self, level, message):
        rank, colour = self.LEVELS[level]
        if rank < self.level:
            return
        if sys.stderr.isatty():
            sys.stderr.write("\x1b[%dm%s\x1b[0m[%04d] %-44s \n" % (colour, level.upper()[:4], int(time.time() - STARTED),
                                                                   message))
        else:
            stamp = datetime.datetime.now().astimezone().isoformat(timespec="seconds").replace("+00:00", "Z")
            sys.stderr.write('time="%s" level=%s msg=%s\n' % (stamp, level, quote(message)))

    def info(self, message):
        self.log("info", message)

    def warning(self, message):
        self.log("warning", message)

    def error(self, message):
        self.log("error", message)


def quote(text):
    """logrus quotes a value unless it is made of [A-Za-z0-9-._/@^+] only (Go's %q then)."""
    if text and all(c.isascii() and (c.isalnum() or c in "-._/@^+") for c in text):
        return text
    return json.dumps(text, ensure_ascii=False)


def go_string(text):
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif code < 0x20 or ch in "<>&" or code in (0x2028, 0x2029):
            out.append("\\u%04x" % code)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def go_number(value):
    """A JSON number as Go decodes it into interface{} (float64) and encodes it again: the shortest
    digits, positional unless below 1e-6 or from 1e21 on."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("json: unsupported value: %r" % number)
    digits = decimal.Decimal(repr(number)).normalize()
    if number and (abs(number) < 1e-6 or abs(number) >= 1e21):
        return "{:e}".format(digits)
    return "{:f}".format(digits)


def go_json(value, indent=""):
    """json.MarshalIndent(value, "", "    ")."""
    inner = indent + "    "
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = ["%s%s: %s" % (inner, go_string(k), go_json(value[k], inner)) for k in sorted(value)]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        return "[\n" + ",\n".join(inner + go_json(v, inner) for v in value) + "\n" + indent + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return go_number(value)
    return go_string(value)


class Usage(Exception):
    pass


def parse_flags(args, strings, bools):
    """urfave/cli flags: -x or --x, `--x=v` or `--x v` for strings, `--x` or `--x=true|false` for booleans."""
    values, rest = {}, []
    while args:
        arg = args.pop(0)
        if arg == "--":
            rest.extend(args)
            break
        if not arg.startswith("-") or arg == "-":
            rest.append(arg)
            continue
        name, has_value, value = arg.lstrip("-").partition("=")
        if name in strings:
            if not has_value:
                if not args:
                    raise Usage("flag needs an argument: %s" % arg.split("=")[0])
                value = args.pop(0)
            values[strings[name]] = value
        elif name in bools:
            if has_value and value.lower() not in ("true", "false", "1", "0", "t", "f"):
                raise Usage('invalid boolean value "%s" for flag -%s: parse error' % (value, name))
            values[bools[name]] = not has_value or value.lower() in ("true", "1", "t")
        else:
            raise Usage("flag provided but not defined: -%s" % name)
    return values, rest


CONFIGURE_STRINGS = dict(
    [("runtime", "runtime"), ("config", "config"), ("drop-in-config", "drop_in"), ("executable-path", "executable"),
     ("config-mode", "mode"), ("config-source", "source"), ("oci-hook-path", "hook_file"),
     ("nvidia-runtime-name", "name"), ("nvidia-runtime-path", "path"), ("runtime-path", "path"),
     ("nvidia-runtime-hook-path", "hook_path")])
CONFIGURE_BOOLS = dict(
    [("dry-run", "dry_run"), ("nvidia-set-as-default", "set_as_default"), ("set-as-default", "set_as_default"),
     ("cdi.enabled", "cdi"), ("cdi.enable", "cdi"), ("enable-cdi", "cdi"), ("help", "help"), ("h", "help")])


def load(path, log):
    if os.path.isdir(path):
        raise RuntimeError("unable to load config for runtime docker: config file is a directory")
    if not os.path.exists(path):
        log.info("Config file does not exist; using empty config")
        return {}
    log.info("Loading config from %s" % path)
    with open(path, "rb") as f:
        raw = f.read().decode("utf-8", "replace")
    try:
        # Go's json.Decoder reads the first value and ignores what follows it.
        config, _end = json.JSONDecoder().raw_decode(raw.lstrip())
    except ValueError as e:
        raise RuntimeError("unable to load config for runtime docker: %s" % ("EOF" if not raw.strip() else e))
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise RuntimeError("unable to load config for runtime docker: json: cannot unmarshal %s into Go value of type "
                           "docker.Config" % type(config).__name__)
    return config


def configure(args, log):
    opts, rest = parse_flags(args, CONFIGURE_STRINGS, CONFIGURE_BOOLS)
    if opts.get("help"):
        sys.stdout.write("NAME:\n   nvidia-ctk runtime configure - Add a runtime to the specified container engine\n")
        return 0
    if rest:
        raise Usage("configure takes no arguments, got %s" % " ".join(rest))
    runtime = opts.get("runtime", "docker")
    if runtime not in DEFAULT_CONFIG:
        raise RuntimeError("unrecognized runtime '%s'" % runtime)
    if runtime != "docker":
        raise RuntimeError("the lab stand-in configures docker only, not %s" % runtime)
    if opts.get("mode") not in (None, "", "config-file", "config"):
        log.warning('Ignoring unsupported config mode for docker: "%s"' % opts["mode"])
    if opts.get("executable"):
        log.warning('Ignoring executable-path="%s" flag for docker' % opts["executable"])
    if opts.get("source", "file") == "command":
        log.warning("A command Config Source is not supported for docker; using file")
    elif opts.get("source", "file") != "file":
        raise RuntimeError("unrecognized Config Source: %s" % opts["source"])
    if opts.get("drop_in") not in (None, "RUNTIME_SPECIFIC_DEFAULT", ""):
        raise RuntimeError("runtime docker does not support drop-in configs")
    path = opts.get("config") or DEFAULT_CONFIG["docker"]

    config = load(path, log)
    runtimes = config.get("runtimes", {})
    if not isinstance(runtimes, dict):
        raise RuntimeError("unable to update config: runtimes is not an object")
    runtimes[opts.get("name", "nvidia")] = {"path": opts.get("path", "nvidia-container-runtime"), "args": []}
    config["runtimes"] = runtimes
    if opts.get("set_as_default"):
        config["default-runtime"] = opts.get("name", "nvidia")
    if opts.get("cdi"):
        config["features"] = {"cdi": True}
    output = go_json(config)

    if opts.get("dry_run"):
        sys.stdout.write(output + "\n")
        return 0
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, 0o755, exist_ok=True)
    with open(path, "w") as f:  # os.Create: truncate in place, 0666 & ~umask when new
        f.write(output)
    log.info("Wrote updated config to %s" % path)
    log.info("It is recommended that docker daemon be restarted.")
    return 0


def main(argv):
    log = Logger()
    args = list(argv)
    # Global flags come before the command.
    first = next((i for i, a in enumerate(args) if not a.startswith("-")), len(args))
    try:
        opts, _none = parse_flags(args[:first], {"config": "config"},
                                  {"debug": "debug", "d": "debug", "quiet": "quiet", "version": "version",
                                   "v": "version", "help": "help", "h": "help"})
        rest = args[first:]
        if opts.get("version"):
            sys.stdout.write("NVIDIA Container Toolkit CLI version %s\ncommit: %s\n" % (VERSION, COMMIT))
            return 0
        log.level = 3 if opts.get("quiet") else (0 if opts.get("debug") else 1)
        if not rest or opts.get("help"):
            sys.stdout.write("NAME:\n   NVIDIA Container Toolkit CLI - Tools to configure the NVIDIA Container Toolkit\n"
                             "\nUSAGE:\n   nvidia-ctk [global options] [command [command options]]\n\nVERSION:\n"
                             "   %s\ncommit: %s\n" % (VERSION, COMMIT))
            return 0
        if rest[:2] == ["runtime", "configure"]:
            return configure(rest[2:], log)
        raise RuntimeError("the lab stand-in implements `nvidia-ctk runtime configure` and --version only, not: %s"
                           % " ".join(rest))
    except (Usage, RuntimeError, OSError, ValueError) as e:
        log.error(str(e))
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
