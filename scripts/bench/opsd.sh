#!/usr/bin/env bash
# opsd API benchmark (issue 6): a fresh local cluster with opsd (scripts/cluster.sh --opsd), 1,000
# users created through the API, then two authenticated endpoints under load from 64 concurrent
# clients with keep-alive, each the median of --runs runs:
#   list   GET /api/v1/users?page=N&size=20   (a page of the 1,000 users: filter, sort, page)
#   get    GET /api/v1/users/{id}             (ab: one id; siege: all 1,000 ids from a URL file)
# with ApacheBench (ab: req/s, latency percentiles) and siege (transactions/s, mean and longest;
# siege's threads need most of a core themselves, so its ceiling on GET /healthz is printed too).
# Also opsd's peak RSS after the runs. Client and server share the machine's 2 cores, so the
# client's CPU is part of every figure. The figures are printed last; the script fails only when
# it cannot run, never because of a speed.
#
#   scripts/bench/opsd.sh [--runs N] [--requests N] [--duration S] [--concurrency C]
#                         [--base-port P] [--quick]
#     --runs N         runs per cell (default 3)
#     --requests N     ab requests per run (default 50000)
#     --duration S     siege seconds per run (default 10)
#     --concurrency C  concurrent clients (default 64)
#     --base-port P    first port of the cluster (default 27000; uses P..P+599 on 127.0.0.x)
#     --quick          --runs 1 --requests 5000 --duration 3 (a smoke run)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

runs=3 requests=50000 duration=10 conc=64 base_port=27000
while (($#)); do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --requests) requests=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --concurrency) conc=$2; shift 2 ;;
    --base-port) base_port=$2; shift 2 ;;
    --quick) runs=1 requests=5000 duration=3; shift ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "opsd.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
for v in runs requests duration conc; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "opsd.sh: --$v must be a positive number" >&2; exit 2; }
done
command -v ab >/dev/null && command -v siege >/dev/null || scripts/install-deps.sh

TARGETS="depot depot-trackerd depot-storaged depot-opsd" scripts/build.sh >/dev/null
DIR=$(mktemp -d "${TMPDIR:-/tmp}/depot-bench-opsd.XXXXXX")
WORK=$DIR/work
mkdir -p "$WORK"
cleanup() {
  scripts/cluster.sh down --dir "$DIR" >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT

echo "== cluster with opsd in $DIR"
scripts/cluster.sh up --dir "$DIR" --base-port "$base_port" --trackers 1 --groups 1 \
  --per-group 1 --no-nginx --opsd >/dev/null
# shellcheck disable=SC1091
source "$DIR/cluster.env"
API=$DEPOT_OPSD/api/v1
TOKEN=$(curl -sf -X POST "$API/auth/login" \
  -d "{\"username\":\"$DEPOT_OPSD_USER\",\"password\":\"$DEPOT_OPSD_PASSWORD\"}" |
  /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
AUTH="Authorization: Bearer $TOKEN"

echo "== creating 1,000 users"
# Accounts without passwords (no KDF per user): what is measured is reading them.
/usr/bin/python3 - "$API" "$TOKEN" "$WORK/urls.txt" <<'EOF'
import http.client, json, sys, urllib.parse
api, token, urls = sys.argv[1:4]
u = urllib.parse.urlparse(api)
c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
ids = []
for i in range(1000):
    body = json.dumps({"username": f"bench{i:04d}", "name": f"Bench User {i}",
                       "email": f"bench{i}@example.com", "department_ids": [], "role_ids": []})
    c.request("POST", u.path + "/users", body=body,
              headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    r = c.getresponse()
    out = json.loads(r.read())
    if r.status != 201:
        sys.exit(f"creating user {i}: {r.status} {out}")
    ids.append(out["id"])
with open(urls, "w") as f:
    for i in ids:
        f.write(f"{api}/users/{i}\n")
EOF
FIRST_ID=$(head -n 1 "$WORK/urls.txt" | sed 's#.*/##')
LIST_URL="$API/users?page=7&size=20&sort=username"
GET_URL="$API/users/$FIRST_ID"
# Sanity: both answer 200 with the token, 401 without.
[[ $(curl -s -o /dev/null -w '%{http_code}' -H "$AUTH" "$LIST_URL") == 200 ]]
[[ $(curl -s -o /dev/null -w '%{http_code}' "$LIST_URL") == 401 ]]

median() { sort -g | awk '{v[NR]=$1} END {if (NR == 0) print "-"; else print v[int((NR + 1) / 2)]}'; }

# ab: "Requests per second" and the percentile table (ms).
run_ab() {
  local url=$1 out
  out=$(ab -q -k -n "$requests" -c "$conc" -H "$AUTH" "$url" 2>&1) || { echo "$out" >&2; return 1; }
  local failed non2xx
  failed=$(sed -n 's/^Failed requests: *//p' <<<"$out")
  non2xx=$(sed -n 's/^Non-2xx responses: *//p' <<<"$out")
  printf '%s %s %s %s %s\n' \
    "$(sed -n 's/^Requests per second: *\([0-9.]*\).*/\1/p' <<<"$out")" \
    "$(awk '$1 == "50%" {print $2}' <<<"$out")" \
    "$(awk '$1 == "90%" {print $2}' <<<"$out")" \
    "$(awk '$1 == "99%" {print $2}' <<<"$out")" \
    "$((${failed:-0} + ${non2xx:-0}))"
}

# siege: transaction rate, mean and longest response (s -> ms), failed transactions.
run_siege() {
  local out
  # siege 4.0.7 sometimes leaves threads waiting on connections the server closed: a run that
  # outlives its duration by 30 s is stopped and reported as 0.
  out=$(timeout -s KILL $((duration + 30)) siege -q -j -b -c "$conc" -t "${duration}S" \
    -H "$AUTH" --rc=/dev/null "$@" 2>&1 || true)
  /usr/bin/python3 -c '
import json, re, sys
text = sys.stdin.read()
m = re.search(r"\{.*\}", text, re.S)
if m:
    j = json.loads(m.group(0))
    print(j["transaction_rate"], j["response_time"] * 1000, j["longest_transaction"] * 1000,
          j["failed_transactions"])
else:
    def f(k):
        m = re.search(k + r":\s*([0-9.]+)", text)
        return float(m.group(1)) if m else 0.0
    print(f("Transaction rate"), f("Response time") * 1000, f("Longest transaction") * 1000,
          int(f("Failed transactions")))
' <<<"$out"
}

declare -A AB SIEGE
for cell in list get; do
  url=$LIST_URL
  [[ $cell == get ]] && url=$GET_URL
  rates=() p50=() p90=() p99=() errs=0
  for ((r = 1; r <= runs; r++)); do
    read -r rate a b c e < <(run_ab "$url")
    echo "ab $cell run $r: $rate req/s, p50 $a ms, p90 $b ms, p99 $c ms, errors $e"
    rates+=("$rate") p50+=("$a") p90+=("$b") p99+=("$c")
    errs=$((errs + e))
  done
  AB[$cell]="$(printf '%s\n' "${rates[@]}" | median) $(printf '%s\n' "${p50[@]}" | median) \
$(printf '%s\n' "${p90[@]}" | median) $(printf '%s\n' "${p99[@]}" | median) $errs"
  rates=() means=() longest=() errs=0
  for ((r = 1; r <= runs; r++)); do
    if [[ $cell == get ]]; then
      read -r rate mean longst e < <(run_siege -f "$WORK/urls.txt")
    else
      read -r rate mean longst e < <(run_siege "$url")
    fi
    echo "siege $cell run $r: $rate trans/s, mean $mean ms, longest $longst ms, failed $e"
    rates+=("$rate") means+=("$mean") longest+=("$longst")
    errs=$((errs + ${e%.*}))
  done
  SIEGE[$cell]="$(printf '%s\n' "${rates[@]}" | median) $(printf '%s\n' "${means[@]}" | median) \
$(printf '%s\n' "${longest[@]}" | median) $errs"
done

# siege's own ceiling on this machine: GET /healthz does no work, so its rate is what siege's
# threads can drive at all while sharing the 2 cores (ab drives ten times more).
ceil=()
for ((r = 1; r <= runs; r++)); do
  read -r rate _ _ _ < <(run_siege "$DEPOT_OPSD/healthz")
  echo "siege healthz run $r: $rate trans/s"
  ceil+=("$rate")
done
CEILING=$(printf '%s\n' "${ceil[@]}" | median)

pid=$(cat "$DIR/opsd-1/pid")
rss=$(awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status")

echo
echo "opsd, 1,000 users, $conc concurrent keep-alive clients, median of $runs runs"
echo "(client and server on the same 2 cores)"
printf '%-6s %-6s %10s %9s %9s %9s %8s\n' tool cell "req/s" "p50 ms" "p90 ms" "p99 ms" errors
for cell in list get; do
  read -r rate a b c e <<<"${AB[$cell]}"
  printf '%-6s %-6s %10.0f %9s %9s %9s %8s\n' ab "$cell" "$rate" "$a" "$b" "$c" "$e"
done
printf '%-6s %-6s %10s %9s %9s %9s %8s\n' tool cell "trans/s" "mean ms" "" "max ms" failed
for cell in list get; do
  read -r rate mean longst e <<<"${SIEGE[$cell]}"
  printf '%-6s %-6s %10.0f %9.1f %9s %9.0f %8s\n' siege "$cell" "$rate" "$mean" "" "$longst" "$e"
done
printf '%-6s %-6s %10.0f   (siege alone: GET /healthz, no work; the client is the limit)\n' \
  siege healthz "$CEILING"
echo "opsd peak RSS: $rss MiB"
