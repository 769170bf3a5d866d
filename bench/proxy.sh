#!/bin/bash
# bench/proxy.sh — NEVER RUN IN CI (not part of .ci/run or go test): it takes a few minutes and
# loads both cores of the machine with wrk.
#
# req/s of paddock's proxy app side by side with nginx proxy_pass, HAProxy and Caddy
# reverse_proxy, all in front of the same Go backend (go-raw of ../shared/bench/peers/go) on
# loopback, with `wrk -t2 -c64` (a 2 s warm-up, then the measured run). The peers are the shared
# harness's (../shared/bench/peers/{nginx,haproxy,caddy}, their configs as documented in
# ../shared/bench/RESULTS.md: nginx 2 workers + upstream keepalive 64, HAProxy 2 threads +
# http-reuse always, Caddy keepalive_idle_conns_per_host 128); paddock is bench/proxy/start.sh
# (bench/proxy/proxy.ini, `workers` from --workers). go-bare is bench/bareproxy: net/http's
# httputil.ReverseProxy with nothing else, the floor of what Go's HTTP stack costs. The peers run in turn within each round, a
# fresh backend for each, and the table gives every round and the median.
#
# usage: bench/proxy.sh [--rounds N] [--duration S] [--conns N] [--workers N] [--only a,b]
#   --rounds N     rounds of the four servers (default 3)
#   --duration S   seconds of each measured run (default 10, at most 15)
#   --conns N      wrk connections (default 64; threads 2)
#   --workers N    paddock's worker processes (default 1: one process, GOMAXPROCS = 2)
#   --only LIST    a subset of paddock,nginx,haproxy,caddy,go-bare
# Install the peers first (see ../shared/bench/README.md):
#   apt-get update && apt-get install -y wrk nginx caddy haproxy
# Every process is started here on 127.0.0.1 and stopped by PID (lib.sh's stop_tree).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/../shared/bench
[ -f "$BENCH/lib.sh" ] || { echo "proxy.sh: the shared harness is absent: no $BENCH/lib.sh" >&2; exit 2; }
BENCH=$(cd "$BENCH" && pwd)
. "$BENCH/lib.sh"

ROUNDS=3 DUR=10 CONNS=64 WORKERS=1 ONLY=paddock,nginx,haproxy,caddy,go-bare
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=$2; shift;;
    --duration) DUR=$2; shift;;
    --conns) CONNS=$2; shift;;
    --workers) WORKERS=$2; shift;;
    --only) ONLY=$2; shift;;
    -h|--help) sed -n '2,23p' "$0"; exit 0;;
    *) echo "proxy.sh: unknown option $1" >&2; exit 2;;
  esac
  shift
done
[ "$DUR" -le 15 ] || { echo "proxy.sh: --duration must be <= 15" >&2; exit 2; }
command -v wrk > /dev/null || { echo "proxy.sh: wrk not found; install the peers (see the top of this script)" >&2; exit 2; }

RUN_TMP=$(mktemp -d /tmp/paddock-proxy-bench.XXXXXX)
cleanup() {
  local p
  for p in "${STARTED_PIDS[@]:-}"; do [ -n "$p" ] && kill -0 "$p" 2> /dev/null && stop_tree "$p"; done
  rm -rf "$RUN_TMP"
}
trap 'cleanup; exit 130' INT TERM
trap cleanup EXIT

GO=${GO:-go}
command -v "$GO" > /dev/null || GO=/usr/local/go/bin/go
log "building paddock into $RUN_TMP"
mkdir -p "$RUN_TMP/bin" && (cd "$ROOT" && CGO_ENABLED=0 "$GO" build -o "$RUN_TMP/bin/paddock" . &&
  CGO_ENABLED=0 "$GO" build -o "$RUN_TMP/bin/bareproxy" ./bench/bareproxy) || exit 1
if [ ! -x "$BENCH/bin/gobench" ] || [ "$BENCH/peers/go/main.go" -nt "$BENCH/bin/gobench" ]; then
  (cd "$BENCH/peers/go" && "$GO" build -o "$BENCH/bin/gobench" .) || exit 1
fi

q() { printf '%q' "$1"; }
# name | port | command (run from $BENCH by start_server, with PORT, BACKEND_PORT, PEER_TMP)
PEERS=(
  "paddock|18050|WORKERS=$WORKERS exec $(q "$ROOT/bench/proxy/start.sh") $(q "$RUN_TMP/bin/paddock")"
  "nginx|18021|exec peers/nginx/start.sh proxy"
  "haproxy|18040|exec peers/haproxy/start.sh"
  "caddy|18031|exec peers/caddy/start.sh proxy"
  "go-bare|18051|exec $(q "$RUN_TMP/bin/bareproxy") -addr 127.0.0.1:18051 -backend http://127.0.0.1:\$BACKEND_PORT"
)

{
  echo "# machine: $(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
  echo "# wrk -t2 -c$CONNS -d${DUR}s after a 2 s warm-up; paddock workers=$WORKERS; $ROUNDS rounds"
} >&2
RES=$RUN_TMP/results.tsv; : > "$RES"
for round in $(seq "$ROUNDS"); do
  for line in "${PEERS[@]}"; do
    IFS='|' read -r name port cmd <<< "$line"
    [[ ",$ONLY," == *",$name,"* ]] || continue
    url="http://127.0.0.1:$port/"
    wait_port_free "$port" || continue
    wait_port_free "$BACKEND_PORT" || continue
    wait_quiet 10 30 || true
    start_server backend "$BACKEND_PORT" "" "exec bin/gobench -mode raw -addr 127.0.0.1:$BACKEND_PORT"
    BPID=$SERVER_PID
    wait_ready "$BACKEND_PORT" / "$BPID" || { stop_tree "$BPID"; continue; }
    start_server "$name" "$port" "" "$cmd"
    SPID=$SERVER_PID
    if ! wait_ready "$port" / "$SPID"; then
      log "$name did not start; log tail:"; tail -5 "$RUN_TMP/$name.log" >&2
      stop_tree "$SPID"; stop_tree "$BPID"
      printf '%s\t%s\tnull\n' "$round" "$name" >> "$RES"
      continue
    fi
    sleep 0.5
    run_wrk "" 2 "$CONNS" 2s "$url" > /dev/null
    c0=$(tree_cpu_ticks "$SPID")
    hot=$(run_wrk "" 2 "$CONNS" "${DUR}s" "$url")
    c1=$(tree_cpu_ticks "$SPID")
    stop_tree "$SPID"; stop_tree "$BPID"
    rec=$(printf '{"round":%d,"name":"%s","c64":%s,"cpu_ticks":%d}' "$round" "$name" "${hot:-null}" $((c1 - c0)))
    printf '%s\n' "$rec" >> "$RES"
    $PY - "$rec" <<'EOF' >&2
import json, sys
r = json.loads(sys.argv[1]); h = r["c64"] or {}
n = h.get("requests", 0); s = h.get("duration_us", 1) / 1e6
err = sum(h.get(k, 0) for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
cpu = r["cpu_ticks"] * 1e4 / n if n else 0
print(f'  round {r["round"]} {r["name"]:<8} {n/s:>9.0f} req/s  p50 {h.get("p50_us",0)/1000:.2f} ms  p99 {h.get("p99_us",0)/1000:.2f} ms  errors {err}  server CPU {cpu:.1f} us/req')
EOF
  done
done

$PY - "$RES" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
names = []
for r in rows:
    if r["name"] not in names:
        names.append(r["name"])
def rps(r):
    h = r["c64"] or {}
    return h.get("requests", 0) / (h.get("duration_us", 1) / 1e6)
med = {}
print("| server | req/s (median) | rounds | p99 ms (median) | errors | server CPU µs/req |")
print("|---|---:|---|---:|---:|---:|")
for n in names:
    rs = [r for r in rows if r["name"] == n and r["c64"]]
    if not rs:
        print(f"| {n} | did not start | | | | |"); continue
    med[n] = statistics.median(rps(r) for r in rs)
    p99 = statistics.median(r["c64"].get("p99_us", 0) / 1000 for r in rs)
    errs = sum(sum(r["c64"].get(k, 0) for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout")) for r in rs)
    cpu = statistics.median(r["cpu_ticks"] * 1e4 / r["c64"]["requests"] for r in rs)
    print(f"| {n} | {med[n]:,.0f} | {'/'.join(f'{rps(r):.0f}' for r in rs)} | {p99:.2f} | {errs} | {cpu:.1f} |")
if "paddock" in med:
    print()
    for n in names:
        if n != "paddock" and n in med and med[n]:
            print(f"paddock / {n}: {med['paddock'] / med[n]:.2f}x")
EOF
