"""certbot's deploy hook for the llmstack gateway: copy the new certificate into the gateway's tls/ folder, check it
with nginx -t and reload (the nginx_gateway role installs it). The logic is certbot_hook.py beside this file: the
collection's plugins/module_utils/certbot_hook.py."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import certbot_hook  # noqa: E402  pylint: disable=wrong-import-position


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tls-dir", required=True, help="the gateway's tls/ folder on the host")
    parser.add_argument("--container", required=True, help="the gateway's container")
    parser.add_argument("--conf", required=True, help="the live nginx.conf, as the container sees it")
    parser.add_argument("--lineage", default=os.environ.get("RENEWED_LINEAGE", ""),
                        help="certbot's live/<name> folder (certbot sets RENEWED_LINEAGE)")
    args = parser.parse_args(argv)
    if not args.lineage:
        print("no certificate: pass --lineage or run from certbot (RENEWED_LINEAGE)", file=sys.stderr)
        return 2
    try:
        certbot_hook.deploy(args.lineage, args.tls_dir, ["docker", "exec", args.container, "nginx"], args.conf)
    except (certbot_hook.HookError, OSError) as e:
        print(str(e), file=sys.stderr)
        return 1
    print("%s: the gateway serves the new certificate" % os.path.basename(args.lineage))
    return 0


if __name__ == "__main__":
    sys.exit(main())
