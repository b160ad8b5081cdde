#!/usr/bin/env bash
# Replication benchmark (doc/replication.md), 64 KiB files, against fresh local clusters of one
# tracker and one group:
#   (a) upload rate at 8 connections into a 2-member group with replication = async and with
#       replication = sync, write_quorum = 2, and the ratio sync / async;
#   (b) the single-stream upload rate (1 connection), async and sync;
#   (c) catch-up: a 1-member group holding --files files gets a second member (cluster.sh
#       add-storage); the time from its start until `depot status` shows it ACTIVE and in sync,
#       as files/s and MB/s and as a ratio to the single-stream async upload rate. Then
#       `depot fsck` must find nothing.
# Uploads go through `depot bench --op upload` (a tracker query, then the upload, on pooled
# connections). Every (a)/(b) cell gets a fresh cluster and reports the median of --runs runs;
# every catch-up run gets its own fresh cluster. Durable writes are off unless --durable.
#
# The stores live on a fresh loop-mounted, journaled ext4 image when run as root, else on a fresh
# directory under $TMPDIR. Client and servers share the machine. The figures are printed last;
# the script fails only when it cannot run, never because of a speed.
#
#   scripts/bench/replication.sh [--runs N] [--quick] [--durable] [--duration S] [--files N]
#                                [--base-port P] [--no-loop]
#     --runs N      runs per cell and catch-up runs (default 3)
#     --quick       --duration 2 --files 2000 unless given (a smoke run)
#     --durable     durable_writes = true on every storage
#     --duration S  seconds per upload run (default 5)
#     --files N     files held by the first member before the second joins (default 10000)
#     --base-port P first port of the clusters (default 26000; uses P..P+499 on 127.0.0.x).
#                   Below the kernel's ephemeral range (32768..), where a busy machine's
#                   outgoing connections can hold a port and make a daemon fail to bind.
#     --no-loop     no loop-mounted image even as root
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

runs=3 quick=0 durable=0 duration="" files="" base_port=26000 loop=1
while (($#)); do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --durable) durable=1; shift ;;
    --duration) duration=$2; shift 2 ;;
    --files) files=$2; shift 2 ;;
    --base-port) base_port=$2; shift 2 ;;
    --no-loop) loop=0; shift ;;
    -h|--help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "replication.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
if ((quick)); then
  duration=${duration:-2}
  files=${files:-2000}
fi
duration=${duration:-5}
files=${files:-10000}
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "replication.sh: --runs must be a positive number" >&2; exit 2; }
[[ $files =~ ^[1-9][0-9]*$ ]] || { echo "replication.sh: --files must be a positive number" >&2; exit 2; }
SIZE=65536
CATCHUP_TIMEOUT=900  # seconds for one catch-up before the run is given up

TARGETS="depot depot-trackerd depot-storaged" scripts/build.sh >/dev/null
DEPOT=$ROOT/build/bin/depot
CLUSTER=$ROOT/scripts/cluster.sh

work=$(mktemp -d "${TMPDIR:-/tmp}/depot-repl-bench.XXXXXX")
mnt=$work/mnt
mkdir -p "$mnt"
fs_desc="fresh directory on $(df --output=fstype "$work" | tail -1) ($work)"
mounted=0
if ((loop)) && [[ $(id -u) -eq 0 ]]; then
  # Sparse, and mounted with discard so that deleted files give their space back to the host.
  truncate -s 32G "$work/fs.img"
  if mkfs.ext4 -q -F "$work/fs.img" && mount -o loop,discard "$work/fs.img" "$mnt"; then
    mounted=1
    fs_desc="fresh loop-mounted ext4 image (journaled, 32 GiB sparse)"
  fi
fi
results=$work/results.jsonl
: >"$results"
dir=$mnt/cluster

cleanup() {
  "$CLUSTER" down --dir "$dir" >/dev/null 2>&1 || true
  if ((mounted)); then umount "$mnt" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

durable_flag=()
((durable)) && durable_flag=(--durable)

log() { echo "$(date +%T) $*" >&2; }

# up MEMBERS [cluster.sh options...]: a fresh cluster of 1 tracker and 1 group in $dir (three
# attempts: a port can be held for a moment by another program).
up() {
  local members=$1 attempt
  shift
  for attempt in 1 2 3; do
    "$CLUSTER" down --dir "$dir" >/dev/null 2>&1 || true
    rm -rf "$dir"
    sync
    if "$CLUSTER" up --dir "$dir" --trackers 1 --groups 1 --per-group "$members" \
      --base-port "$base_port" "${durable_flag[@]}" --no-nginx "$@" >/dev/null; then
      break
    fi
    ((attempt < 3)) || { echo "replication.sh: cannot start a cluster" >&2; exit 1; }
    log "cluster.sh up failed; trying again"
    sleep 2
  done
  set -a
  # shellcheck disable=SC1091
  source "$dir/cluster.env"
  set +a
}

down() {
  "$CLUSTER" down --dir "$dir" >/dev/null
}

summary() {
  /usr/bin/python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.0f ops/s %.1f MB/s p50 %.3f ms p99 %.3f ms errors %d" % (j["ops_per_s"], j["mb_per_s"], j["p50_ms"], j["p99_ms"], j["errors"]))'
}

# (a) and (b): upload cells.
for mode in async sync; do
  for c in 8 1; do
    up 2 --replication "$mode" --write-quorum 2
    for ((r = 1; r <= runs; r++)); do
      if ! out=$("$DEPOT" --json bench --op upload --size "$SIZE" -c "$c" -d "$duration"); then
        echo "replication.sh: depot bench failed: upload replication=$mode c=$c" >&2
        continue
      fi
      echo "{\"kind\":\"upload\",\"mode\":\"$mode\",\"run\":$r,\"bench\":$out}" >>"$results"
      log "upload replication=$mode c=$c run $r: $(summary <<<"$out")"
    done
    down
  done
done

# Polls until the member at $1 (ip:port) is ACTIVE with repl_state active and no peer reports a
# lag for it; also watches its own depot_replication_state (metrics at $2, host:port). Prints
# {"self_active_s":..,"in_sync_s":..} in seconds since $3 (EPOCHREALTIME), or fails on timeout.
wait_caught_up() {
  /usr/bin/python3 - "$1" "$2" "$3" "$CATCHUP_TIMEOUT" "$DEPOT" <<'PY'
import json, subprocess, sys, time, urllib.request
member, metrics, t0, timeout, depot = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
self_active = None
while True:
    now = time.time()
    if now - t0 > timeout:
        sys.exit("catch-up not done after %.0f s" % timeout)
    if self_active is None:
        try:
            text = urllib.request.urlopen("http://%s/metrics" % metrics, timeout=1).read().decode()
            for line in text.splitlines():
                if line.startswith("depot_replication_state") and float(line.split()[-1]) == 2:
                    self_active = now - t0
        except Exception:
            pass
    p = subprocess.run([depot, "--json", "status"], capture_output=True, text=True)
    if p.returncode == 0:
        for g in json.loads(p.stdout).get("groups", []):
            for m in g.get("members", []):
                if m.get("id") == member and m.get("state") == "ACTIVE" and \
                        m.get("repl_state") == "active" and m.get("sync_lag_records") == 0:
                    done = time.time() - t0
                    print(json.dumps({"self_active_s": self_active if self_active is not None else done,
                                      "in_sync_s": done}))
                    sys.exit(0)
    time.sleep(0.1)
PY
}

# (c) catch-up.
for ((r = 1; r <= runs; r++)); do
  up 1
  log "catch-up run $r: uploading $files files"
  # `bench --op download` first uploads --files files (8 connections), then reads for a moment.
  if ! "$DEPOT" --json bench --op download --size "$SIZE" -c 8 -d 0.1 --files "$files" >/dev/null; then
    echo "replication.sh: preparing $files files failed" >&2
    down
    continue
  fi
  seq=$("$DEPOT" --json status | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["groups"][0]["members"][0]["binlog_seq"])')
  sync
  log "catch-up run $r: adding a member"
  t0=$EPOCHREALTIME
  if ! "$CLUSTER" add-storage --dir "$dir" --group 1 --no-wait >/dev/null; then
    echo "replication.sh: add-storage failed" >&2
    down
    continue
  fi
  new=$(ls -d "$dir"/storage-group1-2)
  ip=$(sed -n 's/^bind_addr = //p' "$new/storage.conf")
  port=$(sed -n 's/^port = //p' "$new/storage.conf")
  mport=$(sed -n 's/^metrics_port = //p' "$new/storage.conf")
  if ! out=$(wait_caught_up "$ip:$port" "$ip:$mport" "$t0"); then
    echo "replication.sh: catch-up run $r did not finish" >&2
    down
    continue
  fi
  fsck_rc=0
  fsck_t0=$EPOCHREALTIME
  "$DEPOT" fsck >/dev/null || fsck_rc=$?
  fsck_s=$(/usr/bin/python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$fsck_t0" "$EPOCHREALTIME")
  new_seq=$("$DEPOT" --json status | /usr/bin/python3 -c 'import json,sys; print([m for m in json.load(sys.stdin)["groups"][0]["members"] if m["id"] == sys.argv[1]][0]["binlog_seq"])' "$ip:$port")
  echo "{\"kind\":\"catchup\",\"run\":$r,\"files\":$files,\"source_binlog_seq\":$seq,\"new_binlog_seq\":$new_seq,\"fsck_rc\":$fsck_rc,\"fsck_s\":$fsck_s,\"t\":$out}" >>"$results"
  log "catch-up run $r: $out fsck exit $fsck_rc in ${fsck_s}s (new member binlog $new_seq records)"
  down
done
rm -rf "$dir"

/usr/bin/python3 - "$results" "$fs_desc" "$runs" "$duration" "$durable" "$files" <<'PY'
import json, statistics, sys
path, fs, runs, duration, durable, files = sys.argv[1:7]
up, cu = {}, []
for line in open(path):
    j = json.loads(line)
    if j["kind"] == "upload":
        b = j["bench"]
        up.setdefault((j["mode"], b["connections"]), []).append(b)
    else:
        cu.append(j)
def med(bs, k):
    return statistics.median(x[k] for x in bs) if bs else None
def fmt(v, f):
    return "-" if v is None else format(v, f)
print()
print(f"Depot replication benchmark: 64 KiB files, 1 tracker, 1 group; median of {runs} runs"
      f" ({duration}s per upload run); durable writes {'on' if durable == '1' else 'off'}")
print(f"store on a {fs}; client and servers share the machine")
print()
print("(a, b) uploads into a 2-member group (depot bench --op upload)")
hdr = f"{'replication':<22}{'conns':>6}{'ops/s':>10}{'MB/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
print(hdr)
print("-" * len(hdr))
for mode, label in (("async", "async"), ("sync", "sync, write_quorum 2")):
    for c in (8, 1):
        bs = up.get((mode, c), [])
        errs = sum(b["errors"] for b in bs) if bs else None
        print(f"{label:<22}{c:>6}{fmt(med(bs,'ops_per_s'),'.0f'):>10}{fmt(med(bs,'mb_per_s'),'.1f'):>9}"
              f"{fmt(med(bs,'p50_ms'),'.3f'):>9}{fmt(med(bs,'p99_ms'),'.3f'):>9}{fmt(errs,'d'):>8}")
print()
for c in (8, 1):
    a, s = med(up.get(("async", c), []), "ops_per_s"), med(up.get(("sync", c), []), "ops_per_s")
    if a and s is not None:
        print(f"sync / async at {c} connection{'s' if c > 1 else ''}: {s / a:.2f}")
single = med(up.get(("async", 1), []), "ops_per_s")
print()
print(f"(c) catch-up: a second member joins a 1-member group holding {files} files of 64 KiB")
if not cu:
    print("no catch-up run finished")
else:
    t = statistics.median(j["t"]["in_sync_s"] for j in cu)
    ts = statistics.median(j["t"]["self_active_s"] for j in cu)
    n = int(files)
    fps = n / t
    print(f"until ACTIVE and in sync in depot status: {t:.1f} s = {fps:.0f} files/s, "
          f"{fps * 65536 / 1e6:.1f} MB/s (median of {len(cu)} runs)")
    print(f"until the member itself reported active (its metrics): {ts:.1f} s = {n / ts:.0f} files/s, "
          f"{n / ts * 65536 / 1e6:.1f} MB/s")
    if single:
        print(f"catch-up rate / single-stream async upload rate: {fps / single:.2f}"
              f" (member-reported: {n / ts / single:.2f})")
    print("times run from starting the new storage; depot status follows heartbeats (every 2 s)")
    bad = [j for j in cu if j["fsck_rc"] != 0]
    print("fsck after catch-up: " + ("clean in every run" if not bad else
          ", ".join(f"run {j['run']} exit {j['fsck_rc']}" for j in bad)) +
          f" (median {statistics.median(j['fsck_s'] for j in cu):.1f} s)")
    short = [j for j in cu if j["new_binlog_seq"] < j["source_binlog_seq"]]
    if short:
        print("new member's binlog shorter than the source's in runs " + ", ".join(str(j["run"]) for j in short))
errs = sum(b["errors"] for bs in up.values() for b in bs)
print(f"upload errors: {errs if errs else 'none'}")
PY
