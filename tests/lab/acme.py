"""DNS for the lab's ACME server (pebble, tests/lab/up): pebble resolves names through pebble-challtestsrv, which
knows only the records added here; a lab host resolves the name through its /etc/hosts. Both are what a user's DNS
record gives: the name, pointed at the host."""
import json
import urllib.request


def _dns(lab, path, body):
    req = urllib.request.Request(lab["LAB_ACME_DNS_API"] + path, data=json.dumps(body).encode(), method="POST")
    urllib.request.urlopen(req, timeout=10).close()


def point(lab, host, name, address):
    """A record for name -> address, for pebble and on the lab host (testinfra host)."""
    _dns(lab, "/add-a", {"host": name + ".", "addresses": [address]})
    host.run("grep -q ' %s$' /etc/hosts || echo '%s %s' >> /etc/hosts" % (name, address, name))


def unpoint(lab, host, name):
    _dns(lab, "/clear-a", {"host": name + "."})
    # /etc/hosts is Docker's bind mount: rewritten in place (sed -i would replace the file).
    host.run("grep -v ' %s$' /etc/hosts > /tmp/hosts.new; cat /tmp/hosts.new > /etc/hosts; rm -f /tmp/hosts.new" % name)
