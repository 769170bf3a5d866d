#!/bin/bash
# bench/gzip.sh — NEVER RUN IN CI. CPU per request of paddock's gzip filter
# against Caddy's `encode gzip`, both serving the same 12 KB JSON file on
# loopback under wrk (Accept-Encoding: gzip), one after the other.
# CPU is the server processes' utime+stime (/proc/PID/stat, the process
# and its children) over the wrk run, divided by the requests wrk made.
#
# usage: bash bench/gzip.sh [seconds (default 10, max 15)] [level (default 5)]
# needs: wrk, caddy, python3, curl (apt-get install -y wrk caddy); paddock
# is built here. Every process started is stopped by PID.
set -eu
DUR=${1:-10}; LEVEL=${2:-5}
[ "$DUR" -le 15 ] || { echo "seconds must be <= 15" >&2; exit 2; }
command -v wrk >/dev/null && command -v caddy >/dev/null || { echo "gzip.sh: needs wrk and caddy" >&2; exit 2; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d /tmp/paddock-gzip.XXXXXX)
SERVER=""
stop_server() {
  [ -n "$SERVER" ] || return 0
  kill "$SERVER" 2>/dev/null || true
  for _ in $(seq 30); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
  SERVER=""
}
trap 'stop_server; rm -rf "$T"' EXIT INT TERM

( cd "$ROOT" && CGO_ENABLED=0 go build -o "$T/paddock" . )
mkdir -p "$T/www"
python3 - "$T/www/data.json" <<'PY'
import json, sys
items = [{"id": i, "name": "paddock-%d" % i, "kind": "server", "tags": ["a", "b"], "ok": i % 2 == 0} for i in range(140)]
open(sys.argv[1], "w").write(json.dumps({"items": items}))
PY
SIZE=$(stat -c %s "$T/www/data.json")

ticks() { # CPU ticks of pid and its children
  local total=0 p
  for p in "$1" $(ps -o pid= --ppid "$1"); do
    [ -r /proc/$p/stat ] || continue
    total=$((total + $(awk '{print $14 + $15}' /proc/$p/stat)))
  done
  echo $total
}

measure() { # name port
  local name=$1 port=$2 t0 t1 out req
  for _ in $(seq 100); do curl -fsS -o /dev/null "http://127.0.0.1:$port/data.json" 2>/dev/null && break; sleep 0.1; done
  curl -fsS -H 'Accept-Encoding: gzip' -D "$T/$name.h" -o "$T/$name.gz" "http://127.0.0.1:$port/data.json"
  grep -qi '^content-encoding: gzip' "$T/$name.h" || { echo "$name: response is not gzip-encoded" >&2; return 1; }
  wrk -t2 -c64 -d2s -H 'Accept-Encoding: gzip' "http://127.0.0.1:$port/data.json" >/dev/null # warm up
  t0=$(ticks "$SERVER")
  out=$(wrk -t2 -c64 -d"${DUR}s" -H 'Accept-Encoding: gzip' "http://127.0.0.1:$port/data.json")
  t1=$(ticks "$SERVER")
  req=$(echo "$out" | awk '/requests in/ {print $1}')
  awk -v n="$name" -v r="$req" -v d="$DUR" -v c=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v gz="$(stat -c %s "$T/$name.gz")" \
    'BEGIN { printf "%-8s %10.0f req/s  %8.1f us CPU/request  %6d bytes gzip\n", n, r/d, c/hz*1e6/r, gz }'
}

PORT1=18091 PORT2=18092
cat > "$T/paddock.ini" <<INI
[server:main]
use = egg:paddock#http
bind = 127.0.0.1:$PORT1
workers = 1
[pipeline:main]
pipeline = gzip static
[filter:gzip]
use = egg:paddock#gzip
compress_level = $LEVEL
[app:static]
use = egg:paddock#static
document_root = $T/www
INI
cat > "$T/Caddyfile" <<CADDY
{
	admin off
	auto_https off
}
http://127.0.0.1:$PORT2 {
	root * $T/www
	encode {
		gzip $LEVEL
	}
	file_server
}
CADDY

echo "body: $SIZE bytes of JSON; gzip level $LEVEL; wrk -t2 -c64 -d${DUR}s; $(nproc) cores"
"$T/paddock" serve "$T/paddock.ini" >"$T/paddock.log" 2>&1 &
SERVER=$!
measure paddock $PORT1
stop_server
caddy run --config "$T/Caddyfile" --adapter caddyfile >"$T/caddy.log" 2>&1 &
SERVER=$!
measure caddy $PORT2
