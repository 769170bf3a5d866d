#!/bin/bash
# usage: start.sh PADDOCK_BINARY   env: PORT, BACKEND_PORT, PEER_TMP (state dir), WORKERS (default 1)
# Used by bench/proxy.sh (never by CI): renders proxy.ini for $BACKEND_PORT into $PEER_TMP and
# execs the master (its pid is the server's), listening on 127.0.0.1:$PORT.
set -e
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:?usage: start.sh PADDOCK_BINARY}
d=${PEER_TMP:?}; mkdir -p "$d"
sed -e "s#@BACKEND@#${BACKEND_PORT:?}#g" "$here/proxy.ini" > "$d/proxy.ini"
exec "$bin" serve --bind "127.0.0.1:${PORT:?}" --workers "${WORKERS:-1}" --ctl-socket "$d/ctl.sock" \
  --pidfile "$d/paddock.pid" "$d/proxy.ini"
