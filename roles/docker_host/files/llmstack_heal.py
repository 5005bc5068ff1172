"""Restart the llmstack containers that Docker's health check found unhealthy N times in a row (the docker_host
role's timer runs it). The logic is heal.py beside this file: the collection's plugins/module_utils/heal.py."""
import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import heal  # noqa: E402  pylint: disable=wrong-import-position


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--state-dir", default="/var/lib/llmstack")
    parser.add_argument("--failing-streak", type=int, default=3,
                        help="failed health checks in a row before a restart (Docker's FailingStreak)")
    parser.add_argument("--log-lines", type=int, default=20)
    args = parser.parse_args(argv)
    try:
        restarted = heal.heal(args.state_dir, max(1, args.failing_streak), args.log_lines, out=print)
    except subprocess.CalledProcessError as e:
        print("docker %s failed: %s" % (e.cmd[1], (e.stderr or e.stdout or "").strip()), file=sys.stderr)
        return 1
    print("%d container(s) restarted" % len(restarted))
    return 0


if __name__ == "__main__":
    sys.exit(main())
