#!/bin/bash
# bench/peers-reload.sh — NEVER RUN IN CI (not part of .ci/run or go test): it takes ~10-15
# minutes, needs the peers installed and loads both cores of the machine with wrk.
#
# Failed requests while paddock reloads / upgrades under wrk load, side by side with the peers'
# reload and upgrade scenarios (nginx -s reload, gunicorn HUP/USR2, Caddy reload, HAProxy -sf/-W)
# of the shared harness ../shared/bench/reload.sh (relative to the repo root). paddock joins that
# run as four `--scenario` lines (format: ../shared/bench/reload.conf), each run by the harness
# under keep-alive and Connection: close load like every peer:
#   paddock-edit         every1s  rename-save of the config with a new hello body (sed -i) -> fsnotify reload
#   paddock-HUP          every1s  kill -HUP $SERVER_PID
#   paddock-ctl-reload   every1s  paddock ctl --socket $PEER_TMP/ctl.sock reload
#   paddock-ctl-upgrade  once     a v2 binary renamed over the started path, then paddock ctl upgrade
# The server is bench/peers/start.sh: bench/peers/hello.ini (paddock's equivalent of the
# gunicorn peers' chain.ini: urlmap -> 6 filters -> hello, 2 workers; wrk requests /app/hello).
#
# usage: bench/peers-reload.sh [reload.sh options]
#   e.g. --only paddock-HUP,paddock-ctl-upgrade   --conn close   --duration 10   --tag NAME
#   (default tag: peers-paddock-YYYYmmdd-HHMMSS; results in ../shared/bench/results/TAG.{md,jsonl},
#   server and action logs in ../shared/bench/results/logs/TAG/)
# Install the peers first (see ../shared/bench/README.md):
#   apt-get update && apt-get install -y wrk gunicorn python3-pastedeploy python3-paste \
#     python3-webob python3-gevent nginx caddy haproxy
# The only process this script starts itself is reload.sh (stopped by PID on INT/TERM); reload.sh
# stops every server, wrk and upgraded paddock master by PID (upgraded masters are `track`ed by the
# upgrade action and also found through $PEER_TMP/paddock.pid).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/../shared/bench
if [ ! -f "$BENCH/reload.sh" ] || [ ! -f "$BENCH/reload-actions.sh" ]; then
  echo "peers-reload.sh: the shared harness is absent: no $BENCH/reload.sh (expected ../shared/bench next to the repo root $ROOT); nothing to run" >&2
  exit 2
fi
BENCH=$(cd "$BENCH" && pwd)
command -v wrk > /dev/null || { echo "peers-reload.sh: wrk not found; install the peers (see the top of this script)" >&2; exit 2; }
for c in /usr/bin/gunicorn /usr/sbin/nginx /usr/bin/caddy /usr/sbin/haproxy; do
  [ -x "$c" ] || echo "peers-reload.sh: warning: $c missing; its scenarios will report 'did not start'" >&2
done

T=$(mktemp -d /tmp/paddock-peers-reload.XXXXXX)
RPID=""
cleanup() { rm -rf "$T"; }
on_signal() {
  if [ -n "$RPID" ] && kill -0 "$RPID" 2> /dev/null; then kill -TERM "$RPID"; wait "$RPID"; fi
  cleanup; exit 130
}
trap on_signal INT TERM
trap cleanup EXIT

GO=${GO:-go}
command -v "$GO" > /dev/null || GO=/usr/local/go/bin/go
echo "building paddock into $T" >&2
(cd "$ROOT" && CGO_ENABLED=0 "$GO" build -o "$T/paddock" . &&
  CGO_ENABLED=0 "$GO" build -ldflags "-X main.version=v2" -o "$T/paddock-v2" .) || exit 1

q() { printf '%q' "$1"; }
START="exec $(q "$ROOT/bench/peers/start.sh") $(q "$T/paddock")"
V2=$(q "$T/paddock-v2")
CTL='$PEER_TMP/paddock ctl --socket $PEER_TMP/ctl.sock'
# name | port | url-path | needs | command | when | action   (reload.conf's format; no '|' in
# the command; the action is eval'ed by reload.sh with SERVER_PID, PEER_TMP, track, ...)
SCEN=(
  "paddock-edit        | 18151 | /app/hello | | $START | every1s | sed -i \"s/^body = .*/body = Hello, World! \$EPOCHREALTIME/\" \$PEER_TMP/hello.ini"
  "paddock-HUP         | 18152 | /app/hello | | $START | every1s | kill -HUP \$SERVER_PID"
  "paddock-ctl-reload  | 18153 | /app/hello | | $START | every1s | $CTL reload"
  "paddock-ctl-upgrade | 18154 | /app/hello | | $START | once    | cp $V2 \$PEER_TMP/paddock.new && mv -f \$PEER_TMP/paddock.new \$PEER_TMP/paddock && $CTL upgrade && track \$(cat \$PEER_TMP/paddock.pid)"
)
ARGS=(--tag "peers-paddock-$(date +%Y%m%d-%H%M%S)")
for s in "${SCEN[@]}"; do ARGS+=(--scenario "$s"); done
ARGS+=("$@")                      # a later --tag/--only/... given by the caller wins

printf 'command: %q' "$BENCH/reload.sh" >&2; printf ' %q' "${ARGS[@]}" >&2; echo >&2
"$BENCH/reload.sh" "${ARGS[@]}" &
RPID=$!
wait "$RPID"; rc=$?
RPID=""

# what paddock actually did in each run (from the server logs the harness kept)
tag=""; prev=""
for a in "${ARGS[@]}"; do [ "$prev" = --tag ] && tag=$a; prev=$a; done
for f in "$BENCH/results/logs/$tag"/paddock-*.*.paddock-*.log; do
  [ -f "$f" ] || continue
  printf '%-60s in-place reloads=%s rolls=%s upgrades=%s errors=%s\n' "$(basename "$f")" \
    "$(grep -c 'master: reloading in place' "$f")" "$(grep -c 'rolling workers' "$f")" \
    "$(grep -c 'upgrade done' "$f")" "$(grep -c '\[ERROR\]' "$f")" >&2
done
exit "$rc"
