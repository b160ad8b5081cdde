#!/usr/bin/env bash
# HTTP read benchmark (doc/http.md, doc/nginx.md): the same files served by
#   plain    a plain nginx serving a plain directory (the yardstick),
#   nginx    the nginx that scripts/cluster.sh puts in front of a storage (conf/nginx/),
#   storaged storaged's own HTTP port,
# for 4 KiB, 64 KiB and 1 MiB files, keep-alive on, 64 connections, with wrk (the figures the
# ratios are judged by), ab (apache2-utils, one URL) and siege (thread per user: it tops out near
# 10,000 req/s here). Then the cost of the anti-leech token check at nginx, a seek in a
# video file through nginx, and how many times over one storage server covers a video site's
# evening peak of 1,200 requests/s.
#
# wrk rotates over --files different files per size (a Lua script), so nginx's open_file_cache
# and the page cache see a realistic set, not one hot file. The plain nginx gets the same
# settings as the generated one (workers, sendfile, open_file_cache, keep-alive) and the files at
# the same paths. Client and servers share this 2-core machine: the absolute figures are the
# machine's, the ratios are what to read. Each wrk cell is the median of --runs runs.
#
#   scripts/bench/http.sh [--runs N] [--duration S] [--files N] [--connections C] [--quick]
#                         [--workers N] [--base-port P]
#     --runs N         wrk runs per cell (default 3)
#     --duration S     seconds per run (default 5)
#     --files N        files per size (default 200)
#     --connections C  concurrent connections (default 64)
#     --workers N      nginx worker processes, both nginx (default 1: wrk needs the other core)
#     --quick          --runs 1 --duration 2 --files 50 unless given (a smoke run)
#     --base-port P    first port of the cluster (default 27000; P..P+499 on 127.0.0.x, and P+600
#                      for the plain nginx)
# The script fails only when it cannot run, never because of a speed.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

runs="" duration="" files="" conns=64 workers=1 quick=0 base_port=27000
while (($#)); do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --files) files=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --base-port) base_port=$2; shift 2 ;;
    -h|--help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "http.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if ((quick)); then
  runs=${runs:-1} duration=${duration:-2} files=${files:-50}
fi
runs=${runs:-3} duration=${duration:-5} files=${files:-200}
for v in runs duration files conns workers base_port; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "http.sh: --${v//_/-} must be a positive number" >&2; exit 2; }
done
for tool in wrk ab siege nginx curl; do
  command -v "$tool" >/dev/null || { echo "http.sh: $tool is missing: run scripts/install-deps.sh" >&2; exit 1; }
done

TARGETS="depot depot-trackerd depot-storaged" scripts/build.sh >/dev/null
DEPOT=$ROOT/build/bin/depot
CLUSTER=$ROOT/scripts/cluster.sh
work=$(mktemp -d "${TMPDIR:-/tmp}/depot-http-bench.XXXXXX")
dir=$work/cluster
plain=$work/plain
plain_port=$((base_port + 600))
plain_pid=""
cleanup() {
  if [[ -n $plain_pid ]] && kill -0 "$plain_pid" 2>/dev/null; then kill "$plain_pid" || true; fi
  "$CLUSTER" down --dir "$dir" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
log() { echo "$(date +%T) $*" >&2; }

# up [cluster.sh options]: a fresh cluster of 1 tracker and 1 storage, nginx in front.
up() {
  "$CLUSTER" down --dir "$dir" >/dev/null 2>&1 || true
  rm -rf "$dir"
  "$CLUSTER" up --dir "$dir" --trackers 1 --groups 1 --per-group 1 --base-port "$base_port" \
    "$@" >/dev/null
  set -a
  # shellcheck disable=SC1091
  source "$dir/cluster.env"
  set +a
  NGINX_ADDR=${DEPOT_HTTP%%,*}
  STORAGED_ADDR=${DEPOT_STORAGE_HTTP%%,*}
  [[ -n $NGINX_ADDR && -n $STORAGED_ADDR ]] || { echo "http.sh: cluster.env has no HTTP addresses" >&2; exit 1; }
  if ((workers != 1)); then
    sed -i "s/^worker_processes .*/worker_processes $workers;/" "$dir/nginx-0/nginx.conf"
    nginx -p "$dir/nginx-0" -c "$dir/nginx-0/nginx.conf" -e "$dir/nginx-0/error.log" -s reload
    sleep 1
  fi
}

# upload_set SIZE N: uploads N files of SIZE random bytes; writes their paths to $work/paths-SIZE.
upload_set() {
  local size=$1 n=$2 i id src=$work/src.bin out=$work/paths-$1
  : >"$out"
  for ((i = 0; i < n; i++)); do
    head -c "$size" /dev/urandom >"$src"
    id=$("$DEPOT" upload "$src" --ext bin)
    echo "/$id" >>"$out"
  done
}

# The plain nginx: the same files at the same paths in a plain directory, the same settings.
start_plain() {
  local size p
  mkdir -p "$plain/www" "$plain/tmp"
  for size in "${SIZES[@]}"; do
    while read -r p; do
      mkdir -p "$plain/www$(dirname "$p")"
      curl -sf "http://$STORAGED_ADDR$p" -o "$plain/www$p"
    done <"$work/paths-$size"
  done
  local user_line=""
  # Started as root, nginx runs its workers as nobody, who cannot read a mktemp folder.
  [[ $(id -u) -eq 0 ]] && user_line="user $(id -un) $(id -gn);"
  cat >"$plain/nginx.conf" <<EOF
$user_line
worker_processes $workers;
pid $plain/nginx.pid;
error_log $plain/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_requests 100000; keepalive_timeout 65;
  open_file_cache max=10000 inactive=30s; open_file_cache_valid 30s; open_file_cache_errors on;
  default_type application/octet-stream;
  client_body_temp_path $plain/tmp/body; proxy_temp_path $plain/tmp/proxy;
  fastcgi_temp_path $plain/tmp/fastcgi; uwsgi_temp_path $plain/tmp/uwsgi; scgi_temp_path $plain/tmp/scgi;
  server {
    listen 127.0.0.1:$plain_port;
    root $plain/www;
    location / { add_header Cache-Control "public, max-age=31536000, immutable"; }
  }
}
EOF
  nginx -p "$plain" -c "$plain/nginx.conf" -e "$plain/error.log" -g "daemon off;" \
    >"$plain/stdout.log" 2>&1 &
  plain_pid=$!
  for _ in $(seq 50); do
    curl -sf -o /dev/null "http://127.0.0.1:$plain_port$(head -1 "$work/paths-4096")" && return 0
    sleep 0.1
  done
  echo "http.sh: the plain nginx did not start:" >&2
  cat "$plain/error.log" >&2
  exit 1
}

cat >"$work/rotate.lua" <<'EOF'
-- Rotates over the paths in the file given after "--", from a random start per thread.
local paths = {}
local idx = 0
function init(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  idx = math.random(#paths)
end
function request()
  idx = idx % #paths + 1
  return wrk.format(nil, paths[idx])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"rps":%.1f,"mbps":%.2f,"p50_ms":%.3f,"p99_ms":%.3f,"errors":%d}\n',
    summary.requests / (summary.duration / 1e6), summary.bytes / (summary.duration / 1e6) / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.connect + e.read + e.write + e.status + e.timeout))
end
EOF

cat >"$work/siegerc" <<EOF
connection = keep-alive
protocol = HTTP/1.1
logging = false
show-logfile = false
parser = false
json_output = true
EOF

results=$work/results.jsonl
: >"$results"

# record TOOL TARGET SIZE JSON
record() { echo "{\"tool\":\"$1\",\"target\":\"$2\",\"size\":$3,\"r\":$4}" >>"$results"; }

# wrk_once TARGET ADDR SIZE [PATHS]: one wrk run.
wrk_once() {
  local target=$1 addr=$2 size=$3 paths=${4:-$work/paths-$3} out j
  out=$(wrk -t 1 -c "$conns" -d "${duration}s" --latency -s "$work/rotate.lua" "http://$addr" \
    -- "$paths" 2>&1) || { log "wrk failed: $out"; return 0; }
  j=$(sed -n 's/^WRKJSON //p' <<<"$out")
  [[ -n $j ]] || { log "wrk printed no figures: $out"; return 0; }
  record wrk "$target" "$size" "$j"
  log "wrk $target $size: $j"
}

bench_ab() {
  local target=$1 addr=$2 size=$3 path n out
  path=$(head -1 "$work/paths-$size")
  n=$((size >= 1048576 ? 5000 : 30000))
  out=$(ab -q -k -c "$conns" -n "$n" "http://$addr$path" 2>&1) || { log "ab failed: $out"; return 0; }
  record ab "$target" "$size" "$(/usr/bin/python3 -c '
import json, re, sys
t = sys.stdin.read()
def num(pat, default=0.0):
    m = re.search(pat, t)
    return float(m.group(1)) if m else default
print(json.dumps({"rps": num(r"Requests per second:\s+([\d.]+)"),
                  "mbps": num(r"Transfer rate:\s+([\d.]+)") * 1024 / 1e6,
                  "p50_ms": num(r"\n\s+50%\s+(\d+)"), "p99_ms": num(r"\n\s+99%\s+(\d+)"),
                  "errors": int(num(r"Failed requests:\s+(\d+)") + num(r"Non-2xx responses:\s+(\d+)"))}))
' <<<"$out")"
}

bench_siege() {
  local target=$1 addr=$2 size=$3 out
  sed "s|^|http://$addr|" "$work/paths-$size" >"$work/urls"
  # siege can hang at the end of a keep-alive run (and ignore SIGTERM): bounded, then killed.
  out=$(timeout -k 5 $((duration + 20)) siege -R "$work/siegerc" -b -i -c "$conns" \
    -t "${duration}S" -f "$work/urls" 2>/dev/null) || log "siege $target $size did not finish cleanly"
  record siege "$target" "$size" "$(/usr/bin/python3 -c '
import json, sys
t = sys.stdin.read()
try:
    j = json.loads(t[t.index("{"):t.rindex("}") + 1])
except ValueError:
    j = {}
print(json.dumps({"rps": j.get("transaction_rate", 0), "mbps": j.get("throughput", 0) * 1.048576,
                  "p50_ms": j.get("response_time", 0) * 1000, "p99_ms": -1,
                  "errors": j.get("failed_transactions", -1)}))
' <<<"$out")"
}

SIZES=(4096 65536 1048576)
log "cluster (nginx in front, token off)"
up
for size in "${SIZES[@]}"; do
  n=$files
  ((size >= 1048576 && n > 100)) && n=100
  upload_set "$size" "$n"
done
start_plain

declare -A ADDR=([plain]=127.0.0.1:$plain_port [nginx]=$NGINX_ADDR [storaged]=$STORAGED_ADDR)
for size in "${SIZES[@]}"; do
  # The wrk runs of the three targets take turns, so that a slow moment of this shared machine
  # does not land on one target's runs only.
  for ((r = 1; r <= runs; r++)); do
    for target in plain nginx storaged; do
      wrk_once "$target" "${ADDR[$target]}" "$size"
    done
  done
  for target in plain nginx storaged; do
    bench_ab "$target" "${ADDR[$target]}" "$size"
    bench_siege "$target" "${ADDR[$target]}" "$size"
  done
done

# A video file through nginx: a ranged read in the middle returns exactly those bytes.
head -c $((48 << 20)) /dev/urandom >"$work/video.mp4"
vid=$("$DEPOT" upload "$work/video.mp4")
first=$((20 << 20)) last=$(((21 << 20) + 12345))
curl -sf -H "Range: bytes=$first-$last" "http://$NGINX_ADDR/$vid" -o "$work/seek.out"
if cmp -s "$work/seek.out" <(tail -c +$((first + 1)) "$work/video.mp4" | head -c $((last - first + 1))); then
  seek="ok: bytes $first-$last of a 48 MiB .mp4 through nginx are exactly the file's"
else
  seek="FAILED: the ranged read of the video through nginx returned other bytes"
fi
mp4type=$(curl -sfI "http://$NGINX_ADDR/$vid" | tr -d '\r' | sed -n 's/^[Cc]ontent-[Tt]ype: //p')

# The token check at nginx: the 4 KiB set again, every URL signed, against a cluster
# with --http-token.
log "cluster with --http-token"
kill "$plain_pid" 2>/dev/null || true
wait "$plain_pid" 2>/dev/null || true
plain_pid=""
up --http-token
upload_set 4096 "$files"
: >"$work/paths-signed"
while read -r p; do
  "$DEPOT" url "${p#/}" --base "http://$NGINX_ADDR" --http-secret "$DEPOT_HTTP_SECRET" |
    sed "s|^http://$NGINX_ADDR||" >>"$work/paths-signed"
done <"$work/paths-4096"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://$NGINX_ADDR$(head -1 "$work/paths-4096")")
[[ $code == 403 ]] || log "warning: an unsigned URL got $code at nginx, not 403"
for ((r = 1; r <= runs; r++)); do
  wrk_once nginx-token "$NGINX_ADDR" 4096 "$work/paths-signed"
done

/usr/bin/python3 - "$results" "$runs" "$conns" "$workers" "$duration" "$seek" "$mp4type" <<'EOF'
import json, statistics, sys
path, runs, conns, workers, duration, seek, mp4type = sys.argv[1:8]
rows = [json.loads(l) for l in open(path)]
def cell(tool, target, size):
    rs = [r["r"] for r in rows if r["tool"] == tool and r["target"] == target and r["size"] == size]
    if not rs:
        return None
    rs.sort(key=lambda r: r["rps"])
    return rs[len(rs) // 2]  # the median run by req/s
names = {4096: "4 KiB", 65536: "64 KiB", 1048576: "1 MiB"}
print()
print(f"HTTP reads, keep-alive, {conns} connections, nginx workers {workers}, {duration} s per run; "
      f"wrk: median of {runs} runs")
for tool in ("wrk", "ab", "siege"):
    print()
    print(f"{tool}:")
    print(f"| size | target | req/s | MB/s | p50 ms | p99 ms | errors | vs plain |")
    print(f"|---|---|---|---|---|---|---|---|")
    for size in (4096, 65536, 1048576):
        base = cell(tool, "plain", size)
        for target in ("plain", "nginx", "storaged"):
            c = cell(tool, target, size)
            if c is None:
                continue
            ratio = f"{c['rps'] / base['rps'] * 100:.0f}%" if base and base["rps"] else "-"
            p99 = "-" if c["p99_ms"] < 0 else f"{c['p99_ms']:.2f}"
            if c["errors"] == -1:  # siege hung and was killed: no figures
                print(f"| {names[size]} | {target} | - | - | - | - | did not finish | - |")
                continue
            print(f"| {names[size]} | {target} | {c['rps']:,.0f} | {c['mbps']:,.1f} | "
                  f"{c['p50_ms']:.2f} | {p99} | {c['errors']} | {ratio} |")
print()
goals = []
for size, goal, target in ((4096, 90, "nginx"), (65536, 90, "nginx"), (4096, 50, "storaged")):
    b, c = cell("wrk", "plain", size), cell("wrk", target, size)
    if b and c and b["rps"]:
        pct = c["rps"] / b["rps"] * 100
        goals.append(f"{target} {names[size]}: {pct:.0f}% of plain nginx (goal {goal}%: "
                     f"{'met' if pct >= goal else 'NOT met'})")
print("goals (wrk):")
for g in goals:
    print("  " + g)
t, n = cell("wrk", "nginx-token", 4096), cell("wrk", "nginx", 4096)
if t and n and n["rps"]:
    print(f"token check at nginx, 4 KiB: {t['rps']:,.0f} req/s signed vs {n['rps']:,.0f} "
          f"without a token: costs {max(0.0, (1 - t['rps'] / n['rps']) * 100):.0f}% "
          f"(errors {t['errors']})")
print(f"video seek: {seek} (Content-Type {mp4type or '?'})")
for size in (1048576, 65536, 4096):
    c = cell("wrk", "nginx", size)
    if c:
        print(f"evening peak 1,200 req/s (8 app servers): one storage server through nginx serves "
              f"{c['rps']:,.0f} req/s of {names[size]} = {c['rps'] / 1200:.1f}x the peak")
EOF
