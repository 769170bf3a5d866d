#!/usr/bin/env bash
# bench/workers.sh: req/s and p99 latency of a bare net/http hello, and of
# paddock serving the same body through examples/site.ini's /api pipeline
# (bench/workers.ini) with workers = 0, 1 and 2; plus the RSS of the
# master and of each worker. Loopback only. Needs wrk (apt-get install
# wrk); not part of .ci/run.
#
#   bench/workers.sh [DURATION_S] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
CONNS=${2:-64}
command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 2; }
tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
CGO_ENABLED=0 go build -o "$tmp/paddock" .
CGO_ENABLED=0 go build -o "$tmp/barehello" ./bench/barehello

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
waitup() { for _ in $(seq 1 200); do curl -sf -o /dev/null "$1" && return 0; sleep 0.05; done; echo "not up: $1" >&2; exit 1; }
rss() { awk '/VmRSS/{print $2}' "/proc/$1/status" 2>/dev/null || echo "?"; }

bench() { # name url mainpid
	local out rps p99 mem
	out=$(wrk -t2 -c"$CONNS" -d"${DUR}s" --latency "$2")
	rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
	p99=$(awk '$1=="99%"{print $2}' <<<"$out")
	mem="master $(rss "$3") kB"
	local kids
	kids=$(pgrep -P "$3" || true)
	for k in $kids; do mem="$mem, worker $(rss "$k") kB"; done
	printf '| %-18s | %10s | %8s | %s |\n' "$1" "$rps" "$p99" "$mem"
}

echo "wrk -t2 -c$CONNS -d${DUR}s, $(nproc) CPUs, $(go version | awk '{print $3}')"
echo
echo "| server             |      req/s |      p99 | RSS |"
echo "| ---                | ---:       | ---:     | --- |"
port=$(freeport)
"$tmp/barehello" -addr "127.0.0.1:$port" & pids+=($!)
waitup "http://127.0.0.1:$port/api/v1/hello"
bench "bare net/http" "http://127.0.0.1:$port/api/v1/hello" "${pids[-1]}"
kill "${pids[-1]}"

for w in 0 1 2; do
	port=$(freeport)
	"$tmp/paddock" serve --workers "$w" --bind "127.0.0.1:$port" --log-level warning bench/workers.ini 2>/dev/null & pids+=($!)
	waitup "http://127.0.0.1:$port/api/v1/hello"
	bench "paddock workers=$w" "http://127.0.0.1:$port/api/v1/hello" "${pids[-1]}"
	kill -TERM "${pids[-1]}"
	wait "${pids[-1]}" 2>/dev/null || true
done
