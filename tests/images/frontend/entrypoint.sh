#!/bin/sh
# Start nginx on $PORT (default 8080) in the foreground. SIGTERM (docker stop, Kubernetes) and SIGQUIT both
# become nginx's graceful quit, so requests in flight finish; nginx itself would treat SIGTERM as a fast stop.
set -eu
port=${PORT:-8080}
case $port in
  '' | *[!0-9]*) echo "frontend: PORT must be a port number, not '$port'" >&2; exit 2 ;;
esac
if [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
  echo "frontend: PORT must be between 1 and 65535, not $port" >&2
  exit 2
fi
conf=/tmp/nginx.conf
sed "s/@PORT@/$port/" /etc/frontend/nginx.conf > "$conf"
# -e stderr: the error log before the config is read (Debian's default file is root's).
nginx -c "$conf" -e stderr -g 'daemon off;' &
pid=$!
trap 'kill -QUIT "$pid" 2>/dev/null || true' TERM QUIT INT
# wait returns early when a trapped signal arrives: wait again until nginx itself has exited.
while :; do
  status=0
  wait "$pid" || status=$?
  kill -0 "$pid" 2>/dev/null || break
done
exit "$status"
