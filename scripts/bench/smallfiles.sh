#!/usr/bin/env bash
# Small-file benchmark (doc/trunk.md), 4 KiB files, against fresh local clusters of one tracker
# and one storage:
#   (a) upload and download rates at 8 connections, with and without trunk storage
#       (use_trunk_file), with durable writes off and on: four cells, each on a fresh cluster,
#       the median of --runs runs;
#   (b) files on disk per 100,000 uploads (durable writes off), with and without trunk storage:
#       every regular file under the store path (data/ and trunk/) after --count uploads, scaled
#       to 100,000;
#   (c) what a sync costs on the store's filesystem: 4 KiB written into a preallocated file, then
#       fdatasync, and the same with syncfs (what trunk storage's group commit does), median of
#       2,000 each.
# Uploads and downloads go through `depot bench` (a tracker query, then the request, on pooled
# connections; download first uploads --files files to read).
#
# The stores live in a fresh directory under $TMPDIR (on this machine: the host's journaled ext4,
# where an fdatasync of a preallocated file costs about 0.2 ms); with --loop (as root) on a fresh
# loop-mounted ext4 image instead, whose syncs go through a second filesystem and cost several
# times more. Client and servers share the machine. The figures are printed last; the script fails
# only when it cannot run, never because of a speed.
#
#   scripts/bench/smallfiles.sh [--runs N] [--quick] [--duration S] [--count N] [--base-port P]
#                               [--loop]
#     --runs N      runs per cell (default 3)
#     --quick       --runs 1 --duration 2 --count 10000 unless given (a smoke run)
#     --duration S  seconds per upload and per download run (default 5)
#     --count N     uploads for the files-on-disk count (default 100000)
#     --base-port P first port of the clusters (default 26500; uses P..P+499 on 127.0.0.x)
#     --loop        the stores on a fresh loop-mounted ext4 image (root only)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

runs="" quick=0 duration="" count="" base_port=26500 loop=0
while (($#)); do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --duration) duration=$2; shift 2 ;;
    --count) count=$2; shift 2 ;;
    --base-port) base_port=$2; shift 2 ;;
    --loop) loop=1; shift ;;
    -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "smallfiles.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
if ((quick)); then
  runs=${runs:-1}
  duration=${duration:-2}
  count=${count:-10000}
fi
runs=${runs:-3}
duration=${duration:-5}
count=${count:-100000}
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "smallfiles.sh: --runs must be a positive number" >&2; exit 2; }
[[ $count =~ ^[1-9][0-9]*$ ]] || { echo "smallfiles.sh: --count must be a positive number" >&2; exit 2; }
SIZE=4096

TARGETS="depot depot-trackerd depot-storaged" scripts/build.sh >/dev/null
DEPOT=$ROOT/build/bin/depot
CLUSTER=$ROOT/scripts/cluster.sh

work=$(mktemp -d "${TMPDIR:-/tmp}/depot-smallfiles-bench.XXXXXX")
mnt=$work/mnt
mkdir -p "$mnt"
fs_desc="fresh directory on $(df --output=fstype "$work" | tail -1) ($work)"
mounted=0
if ((loop)) && [[ $(id -u) -eq 0 ]]; then
  truncate -s 16G "$work/fs.img"
  if mkfs.ext4 -q -F "$work/fs.img" && mount -o loop,discard "$work/fs.img" "$mnt"; then
    mounted=1
    fs_desc="fresh loop-mounted ext4 image (journaled, 16 GiB sparse)"
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

log() { echo "$(date +%T) $*" >&2; }

# up [cluster.sh options...]: a fresh cluster of 1 tracker and 1 storage in $dir.
up() {
  local attempt
  for attempt in 1 2 3; do
    "$CLUSTER" down --dir "$dir" >/dev/null 2>&1 || true
    rm -rf "$dir"
    sync
    if "$CLUSTER" up --dir "$dir" --trackers 1 --groups 1 --per-group 1 \
      --base-port "$base_port" --no-nginx "$@" >/dev/null; then
      break
    fi
    ((attempt < 3)) || { echo "smallfiles.sh: cannot start a cluster" >&2; exit 1; }
    log "cluster.sh up failed; trying again"
    sleep 2
  done
  set -a
  # shellcheck disable=SC1091
  source "$dir/cluster.env"
  set +a
}

down() { "$CLUSTER" down --dir "$dir" >/dev/null; }

summary() {
  /usr/bin/python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.0f ops/s %.1f MB/s p50 %.3f ms p99 %.3f ms errors %d" % (j["ops_per_s"], j["mb_per_s"], j["p50_ms"], j["p99_ms"], j["errors"]))'
}

# (a) rates.
for trunk in off on; do
  for durable in off on; do
    flags=()
    [[ $trunk == on ]] && flags+=(--trunk)
    [[ $durable == on ]] && flags+=(--durable)
    up "${flags[@]}"
    for ((r = 1; r <= runs; r++)); do
      for op in upload download; do
        if ! out=$("$DEPOT" --json bench --op "$op" --size "$SIZE" -c 8 -d "$duration" --files 4000); then
          echo "smallfiles.sh: depot bench failed: $op trunk=$trunk durable=$durable" >&2
          continue
        fi
        echo "{\"kind\":\"rate\",\"op\":\"$op\",\"trunk\":\"$trunk\",\"durable\":\"$durable\",\"run\":$r,\"bench\":$out}" >>"$results"
        log "$op trunk=$trunk durable=$durable run $r: $(summary <<<"$out")"
      done
    done
    down
  done
done

# (c) the cost of a sync where the stores live.
/usr/bin/python3 - "$mnt/sync-probe" >>"$results" <<'PY'
import ctypes, json, os, statistics, sys, time
path = sys.argv[1]
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
size = 64 << 20
os.pwrite(fd, b"\0" * size, 0)
os.fsync(fd)
out = {"kind": "sync"}
for mode in ("fdatasync", "syncfs"):
    times = []
    for i in range(2000):
        os.pwrite(fd, b"x" * 4096, (i * 4096) % size)
        t = time.perf_counter()
        if mode == "fdatasync":
            os.fdatasync(fd)
        elif libc.syncfs(fd) != 0:
            sys.exit("syncfs failed")
        times.append(time.perf_counter() - t)
    out[mode + "_us"] = statistics.median(times) * 1e6
os.close(fd)
os.unlink(path)
print(json.dumps(out))
PY

# (b) files on disk.
for trunk in off on; do
  flags=()
  [[ $trunk == on ]] && flags+=(--trunk)
  up "${flags[@]}"
  log "files on disk, trunk=$trunk: uploading $count files"
  # `bench --op download` first uploads --files files (8 connections), then reads for a moment.
  if ! "$DEPOT" --json bench --op download --size "$SIZE" -c 8 -d 0.1 --files "$count" >/dev/null; then
    echo "smallfiles.sh: uploading $count files failed" >&2
    down
    continue
  fi
  store=$dir/storage-group1-1/store0
  n=$(find "$store/data" "$store/trunk" -type f 2>/dev/null | wc -l)
  bytes=$(du -sb "$store" | cut -f1)
  echo "{\"kind\":\"files\",\"trunk\":\"$trunk\",\"uploads\":$count,\"files\":$n,\"bytes\":$bytes}" >>"$results"
  log "trunk=$trunk: $n files on disk for $count uploads ($bytes bytes)"
  down
done
rm -rf "$dir"

/usr/bin/python3 - "$results" "$fs_desc" "$runs" "$duration" <<'PY'
import json, statistics, sys
path, fs, runs, duration = sys.argv[1:5]
rates, files, sync = {}, {}, None
for line in open(path):
    j = json.loads(line)
    if j["kind"] == "rate":
        rates.setdefault((j["trunk"], j["durable"], j["op"]), []).append(j["bench"])
    elif j["kind"] == "sync":
        sync = j
    else:
        files[j["trunk"]] = j
def med(bs, k):
    return statistics.median(x[k] for x in bs) if bs else None
def fmt(v, f):
    return "-" if v is None else format(v, f)
print()
print(f"Depot small-file benchmark: 4 KiB files, 1 tracker, 1 storage, 8 connections; median of "
      f"{runs} runs ({duration}s each)")
print(f"store on a {fs}; client and servers share the machine")
print()
hdr = (f"{'trunk':<7}{'durable':<9}{'op':<10}{'ops/s':>9}{'MB/s':>8}{'p50 ms':>9}{'p99 ms':>9}"
       f"{'errors':>8}")
print(hdr)
print("-" * len(hdr))
for trunk in ("off", "on"):
    for durable in ("off", "on"):
        for op in ("upload", "download"):
            bs = rates.get((trunk, durable, op), [])
            errs = sum(b["errors"] for b in bs) if bs else None
            print(f"{trunk:<7}{durable:<9}{op:<10}{fmt(med(bs,'ops_per_s'),'.0f'):>9}"
                  f"{fmt(med(bs,'mb_per_s'),'.1f'):>8}{fmt(med(bs,'p50_ms'),'.3f'):>9}"
                  f"{fmt(med(bs,'p99_ms'),'.3f'):>9}{fmt(errs,'d'):>8}")
print()
for durable in ("off", "on"):
    a = med(rates.get(("off", durable, "upload"), []), "ops_per_s")
    b = med(rates.get(("on", durable, "upload"), []), "ops_per_s")
    if a and b:
        print(f"uploads with trunk / without, durable writes {durable}: {b / a:.2f}")
if sync:
    print(f"one sync after a 4 KiB write into a preallocated file here (median of 2,000): "
          f"fdatasync {sync['fdatasync_us']:.0f} us, syncfs {sync['syncfs_us']:.0f} us")
print()
for trunk in ("off", "on"):
    j = files.get(trunk)
    if j is None:
        print(f"trunk {trunk}: no count")
        continue
    per100k = j["files"] * 100000 / j["uploads"]
    print(f"files on disk per 100,000 uploads, trunk {trunk}: {per100k:,.0f} "
          f"({per100k / 100:.2f} per 1,000; {j['files']} files for {j['uploads']:,} uploads, "
          f"{j['bytes'] / 2**20:,.0f} MiB)")
PY
