#!/usr/bin/env bash
# Depot in two minutes: installs the dependencies, builds, starts a local cluster (2 trackers,
# 2 groups of 1 storage server, an nginx in front of each, depot-opsd, 2 depot-dhtd nodes with
# dedup on) in run/demo and walks through upload, info, metadata, download with a byte comparison,
# the file on disk, an HTTP download through nginx, delete, the ops API (login, a file kept in the
# cluster, the audit log) and dedup (the same file uploaded twice sharing one inode, an instant
# upload). Exits non-zero when any step fails; the cluster keeps running afterwards (stop it with
# scripts/cluster.sh down --dir run/demo).
#
#   scripts/demo.sh [--base-port P]   (default 21500: ports P..P+701 on 127.0.0.1 and 127.0.0.2)
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

BASE_PORT=21500
while (($# > 0)); do
  case $1 in
    --base-port) (($# >= 2)) || { echo "demo.sh: --base-port needs a value" >&2; exit 2; }
      BASE_PORT=$2; shift ;;
    --base-port=*) BASE_PORT=${1#*=} ;;
    -h | --help)
      sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
      exit 0 ;;
    *) echo "demo.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

DEMO_DIR=run/demo
FILES=$DEMO_DIR/files
DEPOT=build/bin/depot
STEP=0
CURRENT="start"

if [[ -t 1 ]]; then BOLD=$'\e[1m' GREEN=$'\e[32m' RED=$'\e[31m' RESET=$'\e[0m'; else
  BOLD="" GREEN="" RED="" RESET=""; fi

step() {
  STEP=$((STEP + 1))
  CURRENT=$*
  printf '\n%s==> %d. %s%s\n' "$BOLD" "$STEP" "$*" "$RESET"
}

# Prints a command as the user would type it, then runs it.
run() {
  printf '$ %s\n' "$*"
  "$@"
}

on_error() {
  local rc=$?
  printf '\n%sdemo.sh: FAILED at step %d (%s), exit code %d%s\n' "$RED" "$STEP" "$CURRENT" "$rc" \
    "$RESET" >&2
  if [[ -f $DEMO_DIR/cluster.env ]]; then
    echo "The cluster may still run: scripts/cluster.sh status --dir $DEMO_DIR;" \
      "stop it with scripts/cluster.sh down --dir $DEMO_DIR" >&2
  fi
  exit "$rc"
}
trap on_error ERR

ok() { printf '%sOK%s %s\n' "$GREEN" "$RESET" "$*"; }

step "Install the Debian packages Depot needs"
run scripts/install-deps.sh

step "Build (binaries in build/bin)"
# The demo needs only the daemons and the CLI; scripts/test.sh builds the tests.
echo '$ TARGETS="depot-trackerd depot-storaged depot-dhtd depot depot-opsd" scripts/build.sh'
TARGETS="depot-trackerd depot-storaged depot-dhtd depot depot-opsd" scripts/build.sh

step "Start a local cluster: 2 trackers, 2 groups of 1 storage server, opsd, 2 dht nodes, in $DEMO_DIR"
scripts/cluster.sh down --dir "$DEMO_DIR" >/dev/null 2>&1 || true
run scripts/cluster.sh up --dir "$DEMO_DIR" --base-port "$BASE_PORT" \
  --trackers 2 --groups 2 --per-group 1 --opsd --dht 2
echo "Loading $DEMO_DIR/cluster.env: the depot CLI reads DEPOT_TRACKERS from the environment."
set -a
# shellcheck source=/dev/null
. "$DEMO_DIR/cluster.env"
set +a
echo "DEPOT_TRACKERS=$DEPOT_TRACKERS"

step "Cluster status: groups, members, states, space"
run "$DEPOT" status

mkdir -p "$FILES"
BIG=$FILES/big-5mb.bin
SMALL=$FILES/hello.txt
head -c $((5 * 1024 * 1024)) /dev/urandom >"$BIG"
printf 'Hello from Depot, a FastDFS-compatible file store.\nWritten by scripts/demo.sh.\n' >"$SMALL"

step "Upload a generated 5 MB file (the tracker picks group, server and store path)"
echo "$ $DEPOT -q upload $BIG"
BIG_ID=$("$DEPOT" -q upload "$BIG")
echo "$BIG_ID"

step "Upload a small text file with metadata"
echo "$ $DEPOT -q upload $SMALL --meta author=demo --meta lang=en"
SMALL_ID=$("$DEPOT" -q upload "$SMALL" --meta author=demo --meta lang=en)
echo "$SMALL_ID"
echo "A file ID is <group>/M<store path>/<dir>/<dir>/<name>; the name encodes the source server,"
echo "the creation time, the size and the CRC32 (doc/file-id.md)."

step "File info (size, creation time, CRC32, source server)"
run "$DEPOT" info "$BIG_ID"
run "$DEPOT" info "$SMALL_ID"

step "Metadata of the text file"
run "$DEPOT" meta get "$SMALL_ID"

step "Download both files and compare them byte for byte with the originals"
run "$DEPOT" -q download "$BIG_ID" -o "$FILES/big-5mb.downloaded"
run cmp "$BIG" "$FILES/big-5mb.downloaded"
ok "5 MB file: identical bytes"
run "$DEPOT" -q download "$SMALL_ID" -o "$FILES/hello.downloaded"
run cmp "$SMALL" "$FILES/hello.downloaded"
ok "text file: identical bytes"
echo "$ $DEPOT download $SMALL_ID   (to stdout)"
"$DEPOT" download "$SMALL_ID"

step "The file on disk: <store path>/data/<XX>/<YY>/<name>, a plain file"
# group1/M00/AB/CD/name -> the store_path0 of the group's storage server.
IFS=/ read -r GROUP STORE_DIR _ <<<"$BIG_ID"
REMOTE=${BIG_ID#*/M??/}
PATH_INDEX=$((16#${STORE_DIR#M}))
FOUND=""
for conf in "$DEMO_DIR"/storage-*/storage.conf; do
  [[ $(sed -n 's/^group_name[[:space:]]*=[[:space:]]*//p' "$conf") == "$GROUP" ]] || continue
  store=$(sed -n "s/^store_path${PATH_INDEX}[[:space:]]*=[[:space:]]*//p" "$conf")
  if [[ -f $store/data/$REMOTE ]]; then
    FOUND=$store/data/$REMOTE
    echo "store_path$PATH_INDEX of $(basename "$(dirname "$conf")"): $store"
    run ls -l "$FOUND"
  fi
done
[[ -n $FOUND ]] || { echo "demo.sh: $BIG_ID not found under any store path of $GROUP" >&2; false; }
run cmp "$BIG" "$FOUND"
ok "stored as-is: a web server (nginx) can serve it straight from disk"

step "Read over HTTP through nginx (in front of every storage server) and compare"
# depot url asks a tracker for a member that has the file and prints that member's HTTP address:
# the nginx in front of it, which serves the file straight from disk (doc/nginx.md).
echo "$ $DEPOT url $BIG_ID"
BIG_URL=$("$DEPOT" url "$BIG_ID")
echo "$BIG_URL"
run curl -sS --fail -o "$FILES/big-5mb.http" -D "$FILES/big-5mb.headers" "$BIG_URL"
sed -n '1p;/^[Cc]ontent-[Tt]ype/p;/^[Cc]ontent-[Ll]ength/p;/^[Ee][Tt]ag/p;/^[Cc]ache-[Cc]ontrol/p' \
  "$FILES/big-5mb.headers"
run cmp "$BIG" "$FILES/big-5mb.http"
ok "5 MB file over HTTP: identical bytes"
echo "$ curl -sS -r 1048576-1048591 $BIG_URL | od -An -tx1   (a ranged read: 16 bytes at 1 MiB)"
curl -sS --fail -r 1048576-1048591 "$BIG_URL" -o "$FILES/range.http"
od -An -tx1 "$FILES/range.http"
dd if="$BIG" of="$FILES/range.want" bs=16 skip=65536 count=1 status=none  # 16 bytes at 1 MiB
run cmp "$FILES/range.http" "$FILES/range.want"
ok "ranged read: the exact bytes (video players seek this way)"

step "Delete the text file, then try to download it again"
run "$DEPOT" delete "$SMALL_ID"
echo "$ $DEPOT download $SMALL_ID -o $FILES/hello.again"
rc=0
"$DEPOT" download "$SMALL_ID" -o "$FILES/hello.again" 2>&1 || rc=$?
if ((rc != 3)); then
  echo "demo.sh: expected the not-found error (exit code 3), got exit code $rc" >&2
  false
fi
ok "the download failed with not found (exit code 3), as it should"

step "The ops API (depot-opsd): log in, keep a file in the cluster, read the audit log"
json_field() { /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
echo "$ curl -s -X POST $DEPOT_OPSD/api/v1/auth/login -d '{\"username\":\"$DEPOT_OPSD_USER\",\"password\":\"...\"}'"
TOKEN=$(curl -sS --fail -X POST "$DEPOT_OPSD/api/v1/auth/login" \
  -d "{\"username\":\"$DEPOT_OPSD_USER\",\"password\":\"$DEPOT_OPSD_PASSWORD\"}" | json_field '["token"]')
echo "token: ${TOKEN:0:12}... (a bearer token; opsd keeps only its SHA-256)"
echo "$ curl -s -H 'Authorization: Bearer ...' -H 'Content-Type: application/octet-stream'" \
  "--data-binary @$BIG '$DEPOT_OPSD/api/v1/files?name=big-5mb.bin'"
UPLOADED=$(curl -sS --fail -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/octet-stream' --data-binary @"$BIG" \
  "$DEPOT_OPSD/api/v1/files?name=big-5mb.bin")
echo "$UPLOADED"
OPS_ID=$(json_field '["file_id"]' <<<"$UPLOADED")
echo "$ curl -s -H 'Authorization: Bearer ...' -o $FILES/big-5mb.opsd $DEPOT_OPSD/api/v1/files/$OPS_ID"
curl -sS --fail -H "Authorization: Bearer $TOKEN" -o "$FILES/big-5mb.opsd" \
  "$DEPOT_OPSD/api/v1/files/$OPS_ID"
run cmp "$BIG" "$FILES/big-5mb.opsd"
run "$DEPOT" -q download "$OPS_ID" -o "$FILES/big-5mb.opsd-depot"
run cmp "$BIG" "$FILES/big-5mb.opsd-depot"
ok "the file went through opsd into the cluster and back: identical bytes"
echo "$ curl -s -H 'Authorization: Bearer ...' '$DEPOT_OPSD/api/v1/audit-events?size=3'"
curl -sS --fail -H "Authorization: Bearer $TOKEN" "$DEPOT_OPSD/api/v1/audit-events?size=3" |
  /usr/bin/python3 -c 'import json,sys
for e in json.load(sys.stdin)["items"]:
    e["actor"] = e["actor"] or "-"
    print("  #%(id)s %(action)-14s by %(actor)-8s %(resource)-50s %(result)s" % e)'
rc=$(curl -s -o /dev/null -w '%{http_code}' "$DEPOT_OPSD/api/v1/users")
[[ $rc == 401 ]] || { echo "demo.sh: expected 401 without a token, got $rc" >&2; false; }
ok "without a token: 401 (every endpoint checks its permission; doc/opsd-api.md)"

step "Dedup: upload the same file twice into group1 (the dht nodes index every content)"
# Dedup works within a group: both uploads go to group1 (its one storage server).
DUP=$FILES/dup-2mb.bin
head -c $((2 * 1024 * 1024)) /dev/urandom >"$DUP"
G1_CONF=$DEMO_DIR/storage-group1-1/storage.conf
G1_STORE=$(sed -n 's/^store_path0[[:space:]]*=[[:space:]]*//p' "$G1_CONF")
G1_METRICS=$(sed -n 's/^bind_addr[[:space:]]*=[[:space:]]*//p' "$G1_CONF"):$(sed -n 's/^metrics_port[[:space:]]*=[[:space:]]*//p' "$G1_CONF")
# The storage's hit counter (opsd storing the 5 MB file again above may already have been one).
dedup_hits() {
  curl -sS --fail "http://$G1_METRICS/metrics" | sed -n 's/^depot_dedup_hits_total //p'
}
HITS_BEFORE=$(dedup_hits)
echo "group1's storage server, before: depot_dedup_hits_total $HITS_BEFORE"
echo "$ $DEPOT -q upload $DUP --group group1"
DUP_ID1=$("$DEPOT" -q upload "$DUP" --group group1)
echo "$DUP_ID1"
echo "$ $DEPOT -q upload $DUP --group group1"
DUP_ID2=$("$DEPOT" -q upload "$DUP" --group group1)
echo "$DUP_ID2"
[[ $DUP_ID1 != "$DUP_ID2" ]] || { echo "demo.sh: both uploads got the same file ID" >&2; false; }
ok "two uploads, two file IDs"
DUP_PATH1=$G1_STORE/data/${DUP_ID1#*/M00/}
DUP_PATH2=$G1_STORE/data/${DUP_ID2#*/M00/}
echo "On disk (inode, hard links, path): one inode holds the bytes of both file IDs."
echo "$ stat -c '%i %h %n' $DUP_PATH1 $DUP_PATH2"
stat -c '%i %h %n' "$DUP_PATH1" "$DUP_PATH2"
[[ $(stat -c %i "$DUP_PATH1") == "$(stat -c %i "$DUP_PATH2")" ]] ||
  { echo "demo.sh: the two file IDs do not share an inode" >&2; false; }
run cmp "$DUP" "$DUP_PATH2"
ok "one inode, stored once (the third link is the hidden one under store0/dedup/, doc/dedup.md)"
echo "$ curl -s http://$G1_METRICS/metrics | grep '^depot_dedup_'"
curl -sS --fail "http://$G1_METRICS/metrics" | grep '^depot_dedup_\(hits\|misses\|bytes_saved\)_total'
(($(dedup_hits) == HITS_BEFORE + 1)) ||
  { echo "demo.sh: expected depot_dedup_hits_total $((HITS_BEFORE + 1))" >&2; false; }
ok "depot_dedup_hits_total went from $HITS_BEFORE to $((HITS_BEFORE + 1)): the second upload was a hit"
run "$DEPOT" -q download "$DUP_ID2" -o "$FILES/dup-2mb.downloaded"
run cmp "$DUP" "$FILES/dup-2mb.downloaded"
ok "the second file ID reads back the same bytes"

step "Instant upload: the client hashes the file and proves it holds the bytes; none are sent"
echo "$ $DEPOT upload $DUP --group group1 --dedup-check --json"
INSTANT=$("$DEPOT" upload "$DUP" --group group1 --dedup-check --json)
echo "$INSTANT"
[[ $(json_field '["instant"]' <<<"$INSTANT") == True ]] ||
  { echo "demo.sh: expected \"instant\": true" >&2; false; }
INSTANT_ID=$(json_field '["file_id"]' <<<"$INSTANT")
echo "$ stat -c '%i %h %n' $G1_STORE/data/${INSTANT_ID#*/M00/}"
stat -c '%i %h %n' "$G1_STORE/data/${INSTANT_ID#*/M00/}"
[[ $(stat -c %i "$G1_STORE/data/${INSTANT_ID#*/M00/}") == "$(stat -c %i "$DUP_PATH1")" ]] ||
  { echo "demo.sh: the instant upload does not share the inode" >&2; false; }
echo "$ curl -s http://$G1_METRICS/metrics | grep '^depot_dedup_'"
curl -sS --fail "http://$G1_METRICS/metrics" |
  grep '^depot_dedup_\(hits_total\|instant_uploads_total{result="granted"}\)'
ok "instant upload: a third file ID on the same inode, without sending the 2 MB"

printf '\n%sDemo complete.%s The cluster is still running in %s:\n' "$BOLD" "$RESET" "$DEMO_DIR"
echo "  scripts/cluster.sh status --dir $DEMO_DIR     # daemons and depot status"
echo "  set -a; . $DEMO_DIR/cluster.env; set +a; build/bin/depot upload FILE"
echo "Stop it with:"
echo "  scripts/cluster.sh down --dir $DEMO_DIR"
