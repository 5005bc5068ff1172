"""Write requirements-deploy.txt: what the deploy workflow installs, every release pinned and hash-checked.

    python3.11 tests/tools/lock_deploy.py [--check]

Resolves TOP at requirements.txt's versions (requirements.txt, extras dropped, is the constraints file, so a
transitive dependency that requirements.txt pins gets the same pin) in a throwaway venv, then lists each resolved
release with the sha256 of every file PyPI has for it, so `pip install --require-hashes` accepts any wheel or the
sdist on any platform. Run it with the deploy job's Python (3.11, deploy.yml's setup-python): environment markers
decide the set. --check: exit 1 when the file differs from what would be written.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REQUIREMENTS = os.path.join(ROOT, "requirements.txt")
OUTPUT = os.path.join(ROOT, "requirements-deploy.txt")
# Deploying needs only these: ansible carries amazon.aws (the aws_ec2 inventory, the ssm_parameter lookup),
# which needs boto3/botocore. Their versions come from requirements.txt.
TOP = ("ansible", "ansible-core", "boto3", "botocore")
PIN = re.compile(r"^([A-Za-z0-9._-]+)(\[[^\]]*\])?==(\S+)\s*$")


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path=REQUIREMENTS):
    """{normalized name: version} of requirements.txt's `name[extras]==version` lines."""
    found = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            match = PIN.match(line.split("#", 1)[0].strip())
            if match:
                found[normalize(match.group(1))] = match.group(3)
    return found


def resolve(pinned):
    """[(name, version)] pip resolves for TOP under requirements.txt's pins, in a throwaway venv."""
    with tempfile.TemporaryDirectory() as tmp:
        constraints = os.path.join(tmp, "constraints.txt")
        with open(constraints, "w", encoding="utf-8") as f:
            f.writelines("%s==%s\n" % item for item in sorted(pinned.items()))
        venv = os.path.join(tmp, "venv")
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        report = os.path.join(tmp, "report.json")
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", "--dry-run", "--ignore-installed",
                        "--report", report, "-c", constraints] + list(TOP), check=True)
        with open(report, encoding="utf-8") as f:
            installs = json.load(f)["install"]
    return sorted((normalize(i["metadata"]["name"]), i["metadata"]["version"]) for i in installs)


def hashes(name, version):
    """The sha256 of every file of the release on PyPI (the project's JSON: some mirrors lack the per-version one)."""
    with urllib.request.urlopen("https://pypi.org/pypi/%s/json" % name, timeout=120) as response:
        files = json.load(response)["releases"].get(version)
    if not files:
        raise SystemExit("PyPI lists no files for %s==%s" % (name, version))
    return sorted(f["digests"]["sha256"] for f in files)


def render(pinned):
    lines = [
        "# What .github/workflows/deploy.yml installs (pip install --require-hashes --only-binary=:all: -r requirements-deploy.txt).",
        "# %s at requirements.txt's versions and all they need; each release with" % ", ".join(TOP),
        "# the sha256 of every file PyPI has for it. Resolved with Python %d.%d, the deploy job's." % sys.version_info[:2],
        "# Generated: after changing one of those pins in requirements.txt, run",
        "#   python3.11 tests/tools/lock_deploy.py",
    ]
    for name, version in resolve(pinned):
        digests = hashes(name, version)
        lines.append("%s==%s \\" % (name, version))
        lines += ["    --hash=sha256:%s%s" % (d, " \\" if i < len(digests) - 1 else "") for i, d in enumerate(digests)]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if requirements-deploy.txt is out of date")
    args = parser.parse_args(argv)
    pinned = pins()
    missing = [name for name in TOP if name not in pinned]
    if missing:
        raise SystemExit("requirements.txt pins none of: %s" % ", ".join(missing))
    text = render(pinned)
    if args.check:
        with open(OUTPUT, encoding="utf-8") as f:
            if f.read() != text:
                print("requirements-deploy.txt is out of date: run python3.11 tests/tools/lock_deploy.py")
                return 1
        return 0
    with open(OUTPUT, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
