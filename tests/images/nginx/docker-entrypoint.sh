#!/bin/sh
# After the official nginx image's /docker-entrypoint.sh: when the command is nginx, run the executable
# /docker-entrypoint.d/*.sh first (that image's hook for config templates), then the command.
set -e
if [ "$1" = nginx ]; then
  for f in /docker-entrypoint.d/*.sh; do
    if [ -x "$f" ]; then echo "$0: Launching $f"; "$f"; fi
  done
fi
exec "$@"
