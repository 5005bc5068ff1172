# shellcheck shell=bash disable=SC2034
# Shared by the lab scripts. Sourced, not run (SC2034: the variables are used by them).
# State (CA, registry credentials and storage, pid files) lives outside the checkout so
# fresh clones and CI reuse it.
LAB_DIR=${LLMSTACK_LAB_DIR:-/var/lib/llmstack-lab}
LAB_BASE_IMAGE=llmstack-lab/debian:bookworm
LAB_HOST_IMAGE=llmstack-lab/host:bookworm
LAB_REGISTRY_PORT=5443
LAB_MOTO_PORT=5500
LAB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

log() { echo "lab: $*" >&2; }
die() { echo "lab: ERROR: $*" >&2; exit 1; }

# Wait until "$@" succeeds, or fail after $timeout seconds.
wait_for() {
  local timeout=$1 what=$2; shift 2
  local end=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || die "timed out after ${timeout}s waiting for $what"
    sleep 0.5
  done
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pid() {
  if pid_alive "$1"; then
    kill "$(cat "$1")" 2>/dev/null || true
    for _ in $(seq 20); do pid_alive "$1" || break; sleep 0.25; done
  fi
  rm -f "$1"
}
