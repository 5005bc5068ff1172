"""Stand-in for ansible-test's downloaded get-pip.py (its host is out of reach here).

ansible-test runs it as `python get-pip.py <pip install args>` in a fresh venv. ensurepip runs in a
child process because it sets PIP_CONFIG_FILE=/dev/null in its own process, and pip would then
lose the machine's pip settings (CA bundle, index)."""
import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"])
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
if args:
    subprocess.check_call([sys.executable, "-m", "pip", "install"] + args)
