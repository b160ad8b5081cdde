#!/usr/bin/env bash
# Protocol benchmark: upload, download and delete of 4 KiB, 64 KiB and 1 MiB files at 1 and 8
# connections against a fresh local cluster (1 tracker, 1 storage), with durable writes off and
# on. Every operation is what a real client does: a tracker query, then the storage operation,
# on pooled connections (`depot bench`). Each cell is the median of --runs runs.
#
# The store lives on a fresh loop-mounted, journaled ext4 image when run as root (as the FastDFS
# reference figures were taken), else on a fresh directory under $TMPDIR. The table is printed last.
#
#   scripts/bench/protocol.sh [--duration S] [--runs N] [--sizes "4096 65536 1048576"]
#                             [--conns "1 8"] [--modes "off on"] [--base-port P] [--no-loop]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

duration=5 runs=3 sizes="4096 65536 1048576" conns="1 8" modes="off on" base_port=43000 loop=1
while (($#)); do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --sizes) sizes=$2; shift 2 ;;
    --conns) conns=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    --base-port) base_port=$2; shift 2 ;;
    --no-loop) loop=0; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "protocol.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

TARGETS="depot depot-trackerd depot-storaged" scripts/build.sh >/dev/null
DEPOT=$ROOT/build/bin/depot

work=$(mktemp -d "${TMPDIR:-/tmp}/depot-bench.XXXXXX")
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

cleanup() {
  "$ROOT/scripts/cluster.sh" down --dir "$mnt/cluster" >/dev/null 2>&1 || true
  if ((mounted)); then umount "$mnt" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

storaged_rss() {
  local pid
  pid=$(cat "$1/storage-group1-1/pid")
  awk '/VmHWM/ {print $2}' "/proc/$pid/status"
}

# Every cell (mode, size, connections) gets a fresh cluster on an empty store: no run pays for
# files or dirty pages another left behind.
for mode in $modes; do
  durable_flag=()
  [[ $mode == on ]] && durable_flag=(--durable)
  peak_rss=0
  for size in $sizes; do
    # A download working set, and enough files to delete for the whole run.
    dl_files=$((256 * 1024 * 1024 / size)); ((dl_files > 2000)) && dl_files=2000
    del_files=$((512 * 1024 * 1024 / size)); ((del_files > 20000)) && del_files=20000
    [[ $mode == on ]] && ((del_files > 6000)) && del_files=6000
    for c in $conns; do
      dir=$mnt/cluster
      rm -rf "$dir"
      sync
      "$ROOT/scripts/cluster.sh" up --dir "$dir" --trackers 1 --groups 1 --per-group 1 \
        --base-port "$base_port" "${durable_flag[@]}" --no-nginx >/dev/null
      # shellcheck disable=SC1091
      source "$dir/cluster.env"
      export DEPOT_TRACKERS
      for op in upload download delete; do
        for ((r = 1; r <= runs; r++)); do
          files=$dl_files
          [[ $op == delete ]] && files=$del_files
          if ! out=$("$DEPOT" --json bench --op "$op" --size "$size" -c "$c" -d "$duration" --files "$files"); then
            echo "protocol.sh: depot bench failed: $op size=$size c=$c durable=$mode" >&2
            continue
          fi
          echo "{\"durable\":\"$mode\",\"run\":$r,\"bench\":$out}" >>"$results"
          echo "durable=$mode $(echo "$out" | /usr/bin/python3 -c 'import json,sys; j=json.load(sys.stdin); print("%s size=%d c=%d %.0f ops/s %.1f MB/s p50 %.3f ms p99 %.3f ms errors %d" % (j["op"], j["size"], j["connections"], j["ops_per_s"], j["mb_per_s"], j["p50_ms"], j["p99_ms"], j["errors"]))')" >&2
        done
      done
      rss=$(storaged_rss "$dir")
      ((rss > peak_rss)) && peak_rss=$rss
      "$ROOT/scripts/cluster.sh" down --dir "$dir" >/dev/null
    done
  done
  echo "{\"durable\":\"$mode\",\"storaged_peak_rss_kb\":$peak_rss}" >>"$results"
done
rm -rf "$mnt/cluster"

/usr/bin/python3 - "$results" "$fs_desc" "$runs" "$duration" <<'PY'
import json, statistics, sys
path, fs, runs, duration = sys.argv[1:5]
rows, rss = {}, {}
for line in open(path):
    j = json.loads(line)
    if "storaged_peak_rss_kb" in j:
        rss[j["durable"]] = j["storaged_peak_rss_kb"]
        continue
    b = j["bench"]
    rows.setdefault((b["op"], b["size"], b["connections"], j["durable"]), []).append(b)
def med(bs, k):
    return statistics.median(x[k] for x in bs)
print()
print(f"Depot protocol benchmark: median of {runs} runs of {duration}s; store on a {fs}")
print("each op = tracker query + storage operation on pooled connections; client and servers share the machine")
print()
hdr = f"{'op':<9}{'size':>8}{'conns':>6} | {'ops/s':>9}{'MB/s':>9}{'p50 ms':>8}{'p99 ms':>8} | {'durable ops/s':>13}{'MB/s':>9}{'p50 ms':>8}{'p99 ms':>8}"
print(hdr)
print("-" * len(hdr))
keys = sorted({(op, size, c) for (op, size, c, _) in rows}, key=lambda k: (k[1], ["upload", "download", "delete"].index(k[0]), k[2]))
for op, size, c in keys:
    line = f"{op:<9}{size:>8}{c:>6} |"
    for mode in ("off", "on"):
        bs = rows.get((op, size, c, mode))
        if not bs:
            line += f"{'-':>9}{'':>9}{'':>8}{'':>8} |" if mode == "off" else f"{'-':>13}"
            continue
        w = 9 if mode == "off" else 13
        line += f"{med(bs,'ops_per_s'):>{w}.0f}{med(bs,'mb_per_s'):>9.1f}{med(bs,'p50_ms'):>8.3f}{med(bs,'p99_ms'):>8.3f}"
        if mode == "off":
            line += " |"
    print(line)
errs = [(k, sum(b["errors"] for b in bs)) for k, bs in rows.items()]
errs = [(k, e) for k, e in errs if e]
print()
print("errors: " + (", ".join(f"{k[0]} {k[1]} c={k[2]} durable={k[3]}: {e}" for k, e in errs) if errs else "none"))
for mode, kb in sorted(rss.items()):
    print(f"depot-storaged peak RSS (durable {mode}): {kb/1024:.1f} MiB")
PY
