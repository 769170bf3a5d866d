#!/bin/bash
# usage: start.sh PADDOCK_BINARY [extra serve flags]   env: PORT, PEER_TMP (state dir)
# Used by bench/peers-reload.sh's scenarios (never by CI). Copies the binary to $PEER_TMP/paddock
# (the upgrade scenario replaces that file; paddock upgrades to the file at the path it was
# started from) and hello.ini to $PEER_TMP/hello.ini (the edit scenario rewrites that copy),
# then execs the master: 2 workers, control socket $PEER_TMP/ctl.sock, pid file
# $PEER_TMP/paddock.pid (reload.sh stops any *.pid process whose command line names $PEER_TMP).
set -e
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:?usage: start.sh PADDOCK_BINARY [serve flags]}; shift
d=${PEER_TMP:?}; mkdir -p "$d"
cp "$bin" "$d/paddock"
cp "$here/hello.ini" "$d/hello.ini"
exec "$d/paddock" serve --bind "127.0.0.1:${PORT:?}" --ctl-socket "$d/ctl.sock" \
  --pidfile "$d/paddock.pid" "$@" "$d/hello.ini"
