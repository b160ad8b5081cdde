#!/usr/bin/env bash
# Dedup benchmark (doc/dedup.md) against fresh local clusters of one tracker and one group of one
# storage (a 1-member group: these are upload rates, replication plays no part), without dedup
# (no dht) and with dedup (dedup = on, 2 depot-dhtd nodes, scripts/cluster.sh --dht 2):
#   (a) upload rate of unique files (every upload a new content: with dedup on, every one a dht
#       miss registered as canonical) and of duplicates (the same content again and again: with
#       dedup on, a hit after the first, compared byte for byte and stored as a hard link), of
#       1 MiB and 64 KiB, at --connections connections: files/s and MB/s, the median of --runs
#       runs. Goals: dedup costs < 15% on unique uploads; with dedup on, duplicates are not
#       slower than unique files;
#   (b) a 256 MiB file already stored: an instant upload (`depot upload --dedup-check`: the
#       client hashes the file and proves it holds sampled ranges, no bytes sent) against a
#       full upload of it (`depot upload`, every byte sent), median of --runs runs each, and the
#       ratio. Goal: instant < 5% of a full upload.
# Also depot-storaged's and depot-dhtd's peak RSS (VmHWM) after the runs.
#
# Each file size gets two fresh clusters side by side, one without and one with dedup, warmed up
# by 1 s of uploads each (not counted); their runs alternate (off, on, off, on...) and so do
# unique and duplicate cells, so that other load on the machine weighs on all alike. Before every
# run (and every timed upload of (b)) `sync` writes out the dirty pages, untimed.
#
# The uploads of (a) come from a small Python client that speaks the protocol itself: a tracker
# query (101) then the upload (11), on pooled connections, one process per connection, as
# `depot bench --op upload` does; unique files differ in their first 16 bytes (a per-process
# nonce and a counter). `depot bench` uploads one payload again and again (duplicates only), so
# it cannot measure unique files; its duplicate figures are printed beside for reference. When
# `depot bench --help` lists `--unique`, every cell goes through `depot bench` instead.
#
# The stores live in a fresh directory under $TMPDIR; with --loop (as root) on a fresh
# loop-mounted ext4 image instead. Client and servers share the machine. The figures are printed
# last; the script fails only when it cannot run, never because of a speed.
#
#   scripts/bench/dedup.sh [--runs N] [--quick] [--duration S] [--connections C]
#                          [--instant-size MiB] [--base-port P] [--loop]
#     --runs N          runs per cell (default 3)
#     --quick           --runs 1 --duration 2 unless given (a smoke run)
#     --duration S      seconds per upload run (default 5)
#     --connections C   concurrent uploads in (a) (default 8)
#     --instant-size M  the file of (b), in MiB (default 256)
#     --base-port P     first port of the clusters (default 23000; the cluster without dedup
#                       uses P..P+401, the one with dedup P+1000..P+1701, on 127.0.0.1)
#     --loop            the stores on a fresh loop-mounted ext4 image (root only)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

runs="" quick=0 duration="" conns=8 instant_mib=256 base_port=23000 loop=0
while (($#)); do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --duration) duration=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --instant-size) instant_mib=$2; shift 2 ;;
    --base-port) base_port=$2; shift 2 ;;
    --loop) loop=1; shift ;;
    -h|--help) sed -n '2,42p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "dedup.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
if ((quick)); then
  runs=${runs:-1}
  duration=${duration:-2}
fi
runs=${runs:-3}
duration=${duration:-5}
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "dedup.sh: --runs must be a positive number" >&2; exit 2; }
[[ $conns =~ ^[1-9][0-9]*$ ]] || { echo "dedup.sh: --connections must be a positive number" >&2; exit 2; }
[[ $instant_mib =~ ^[1-9][0-9]*$ ]] || { echo "dedup.sh: --instant-size must be a positive number" >&2; exit 2; }
if ! [[ $base_port =~ ^[0-9]+$ ]] || ((base_port < 1024 || base_port > 65535 - 1701)); then
  echo "dedup.sh: --base-port must be in 1024..$((65535 - 1701))" >&2; exit 2
fi
[[ $duration =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "dedup.sh: --duration must be a number of seconds" >&2; exit 2; }
SIZES="1048576 65536"
# Every command below runs under `timeout`: a hung daemon costs at most this much per step.
RUN_TIMEOUT=$(awk -v d="$duration" 'BEGIN { printf "%d", d + 60 }')
UPLOAD_TIMEOUT=300

TARGETS="depot depot-trackerd depot-storaged depot-dhtd" scripts/build.sh >/dev/null
DEPOT=$ROOT/build/bin/depot
CLUSTER=$ROOT/scripts/cluster.sh
bench_unique=0
"$DEPOT" bench --help 2>/dev/null | grep -q -- '--unique' && bench_unique=1

work=$(mktemp -d "${TMPDIR:-/tmp}/depot-dedup-bench.XXXXXX")
mnt=$work/mnt
mkdir -p "$mnt"
fs_desc="fresh directory on $(df --output=fstype "$work" | tail -1) ($work)"
mounted=0
if ((loop)) && [[ $(id -u) -eq 0 ]]; then
  truncate -s 32G "$work/fs.img"
  if mkfs.ext4 -q -F "$work/fs.img" && mount -o loop,discard "$work/fs.img" "$mnt"; then
    mounted=1
    fs_desc="fresh loop-mounted ext4 image (journaled, 32 GiB sparse)"
  fi
fi
results=$work/results.jsonl
: >"$results"
dir_off=$mnt/cluster-off
dir_on=$mnt/cluster-on
dir_of() { if [[ $1 == on ]]; then echo "$dir_on"; else echo "$dir_off"; fi; }

cleanup() {
  "$CLUSTER" down --dir "$dir_off" >/dev/null 2>&1 || true
  "$CLUSTER" down --dir "$dir_on" >/dev/null 2>&1 || true
  if ((mounted)); then umount "$mnt" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

log() { echo "$(date +%T) $*" >&2; }

# up DIR PORT [cluster.sh options...]: a fresh cluster of 1 tracker and 1 storage in DIR, base
# port PORT (three attempts: a port can be held for a moment by another program).
up() {
  local dir=$1 port=$2 attempt
  shift 2
  for attempt in 1 2 3; do
    "$CLUSTER" down --dir "$dir" >/dev/null 2>&1 || true
    rm -rf "$dir"
    sync
    if timeout 120 "$CLUSTER" up --dir "$dir" --trackers 1 --groups 1 --per-group 1 \
      --base-port "$port" --no-nginx "$@" >/dev/null; then
      break
    fi
    ((attempt < 3)) || { echo "dedup.sh: cannot start a cluster" >&2; exit 1; }
    log "cluster.sh up failed; trying again"
    sleep 2
  done
}

down() { "$CLUSTER" down --dir "$1" >/dev/null; }

# The trackers of the cluster in DIR (its cluster.env).
trackers_of() { sed -n 's/^DEPOT_TRACKERS=//p' "$1/cluster.env"; }

summary() {
  /usr/bin/python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.0f files/s %.1f MB/s p50 %.3f ms p99 %.3f ms errors %d" % (j["ops_per_s"], j["mb_per_s"], j["p50_ms"], j["p99_ms"], j["errors"]))'
}

# Peak RSS (VmHWM, KiB) of the daemon of folder $1, or 0.
peak_rss() {
  local pid
  pid=$(cat "$1/pid" 2>/dev/null) || { echo 0; return; }
  awk '/^VmHWM:/ {print $2; found = 1} END {if (!found) print 0}' "/proc/$pid/status" 2>/dev/null || echo 0
}

# loader TRACKERS SIZE CONTENT(unique|duplicate) [SECONDS]: $conns processes upload for SECONDS
# (default $duration) through the first of TRACKERS; prints one JSON object with the fields of
# `depot --json bench`.
loader() {
  timeout "$RUN_TIMEOUT" /usr/bin/python3 - "$1" "$2" "$3" "$conns" "${4:-$duration}" <<'PY'
import json, multiprocessing as mp, os, socket, struct, sys, time
trackers, size, content, conns, duration = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
host, port = trackers.split(",")[0].rsplit(":", 1)
tracker = (host, int(port))
unique = content == "unique"
# One payload for every process: duplicates upload it as it is, unique files put a per-process
# nonce and a counter in its first 16 bytes.
payload = bytearray(os.urandom(size))

def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return bytes(buf)

def reply(s):
    length, _, status = struct.unpack(">QBB", recv_exact(s, 10))
    return status, recv_exact(s, length)

def connect(addr):
    s = socket.create_connection(addr, timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s

def worker(start, q):
    nonce = struct.unpack(">Q", os.urandom(8))[0]
    data = bytearray(payload)
    view = memoryview(data)
    conns, lat, errors, first, seq = {}, [], 0, "", 0
    while time.monotonic() < start:
        time.sleep(0.001)
    deadline = start + duration
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        try:
            if tracker not in conns:
                conns[tracker] = connect(tracker)
            t = conns[tracker]
            t.sendall(struct.pack(">QBB", 0, 101, 0))
            status, body = reply(t)
            if status != 0 or len(body) != 40:
                raise RuntimeError("tracker query: status %d" % status)
            addr = (body[16:31].rstrip(b"\0").decode(), struct.unpack(">Q", body[31:39])[0])
            if addr not in conns:
                conns[addr] = connect(addr)
            s = conns[addr]
            if unique:
                seq += 1
                data[0:16] = struct.pack(">QQ", nonce, seq)
            s.sendall(struct.pack(">QBB", 15 + size, 11, 0) + struct.pack(">BQ", body[39], size) + b"bin\0\0\0")
            s.sendall(view)
            status, body = reply(s)
            if status != 0:
                raise RuntimeError("upload: status %d" % status)
            lat.append(time.monotonic() - t0)
        except Exception as e:  # counted; the connections start again
            errors += 1
            first = first or str(e)
            for c in conns.values():
                c.close()
            conns = {}
            time.sleep(0.01)
    q.put((lat, errors, first))

q = mp.Queue()
start = time.monotonic() + 0.5
procs = [mp.Process(target=worker, args=(start, q)) for _ in range(conns)]
for p in procs:
    p.start()
got = [q.get() for _ in procs]
for p in procs:
    p.join()
secs = duration
lat = sorted(x for g in got for x in g[0])
errors = sum(g[1] for g in got)
first = next((g[2] for g in got if g[2]), "")
def pct(p):
    return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else 0.0
ops = len(lat) / secs
print(json.dumps({"op": "upload", "size": size, "connections": conns, "seconds": secs,
                  "ops": len(lat), "errors": errors, "ops_per_s": ops,
                  "mb_per_s": ops * size / 1e6, "p50_ms": pct(0.5), "p99_ms": pct(0.99),
                  "first_error": first}))
PY
}

# One block per file size, each on two fresh clusters running side by side: without dedup
# ($dir_off, base port P) and with dedup ($dir_on, P+1000, --dht 2). Within a block the runs of
# the two alternate (off, on, off, on...), so that whatever else the machine does weighs on both
# alike; before every run the page cache's dirty pages are written out (sync, not timed), so that
# no run pays for the writeback of the one before. (b) runs on the last block's dedup cluster.
for size in $SIZES; do
  up "$dir_off" "$base_port"
  up "$dir_on" $((base_port + 1000)) --dht 2
  # Warm-up, not counted: the first uploads into a fresh store are slower (new directories).
  for dedup in off on; do
    loader "$(trackers_of "$(dir_of "$dedup")")" "$size" unique 1 >/dev/null ||
      log "warm-up failed: size=$size dedup=$dedup"
  done
  for ((r = 1; r <= runs; r++)); do
    for content in unique duplicate; do
      for dedup in off on; do
        trackers=$(trackers_of "$(dir_of "$dedup")")
        sync
        if ((bench_unique)); then
          uflag=()
          [[ $content == unique ]] && uflag=(--unique)
          out=$(timeout "$RUN_TIMEOUT" "$DEPOT" --trackers "$trackers" --json bench --op upload \
            --size "$size" -c "$conns" -d "$duration" "${uflag[@]}") || out=""
        else
          out=$(loader "$trackers" "$size" "$content") || out=""
        fi
        if [[ -z $out ]]; then
          echo "dedup.sh: upload run failed: $content size=$size dedup=$dedup" >&2
          continue
        fi
        echo "{\"kind\":\"rate\",\"dedup\":\"$dedup\",\"content\":\"$content\",\"size\":$size,\"run\":$r,\"bench\":$out}" >>"$results"
        log "$content size=$size dedup=$dedup run $r: $(summary <<<"$out")"
      done
    done
  done
  # depot bench uploads one payload again and again: duplicates, for reference.
  if ((!bench_unique)); then
    for ((r = 1; r <= runs; r++)); do
      for dedup in off on; do
        sync
        if ! out=$(timeout "$RUN_TIMEOUT" "$DEPOT" --trackers "$(trackers_of "$(dir_of "$dedup")")" \
          --json bench --op upload --size "$size" -c "$conns" -d "$duration"); then
          echo "dedup.sh: depot bench failed: size=$size dedup=$dedup" >&2
          continue
        fi
        echo "{\"kind\":\"depot_bench\",\"dedup\":\"$dedup\",\"size\":$size,\"run\":$r,\"bench\":$out}" >>"$results"
        log "depot bench (duplicates) size=$size dedup=$dedup run $r: $(summary <<<"$out")"
      done
    done
  fi

  if [[ $size == "${SIZES##* }" ]]; then
    trackers=$(trackers_of "$dir_on")
    big=$work/instant.bin
    log "instant upload: writing a $instant_mib MiB file"
    head -c $((instant_mib * 1024 * 1024)) /dev/urandom >"$big"
    for ((r = 1; r <= runs; r++)); do
      # A full upload (the first one stores the content, the later ones are hits that still send
      # and compare every byte), then an instant one of the content now stored.
      sync
      t0=$EPOCHREALTIME
      if ! timeout "$UPLOAD_TIMEOUT" "$DEPOT" --trackers "$trackers" -q upload "$big" >/dev/null; then
        echo "dedup.sh: full upload failed" >&2
        continue
      fi
      t1=$EPOCHREALTIME
      sync
      t2=$EPOCHREALTIME
      if ! out=$(timeout "$UPLOAD_TIMEOUT" "$DEPOT" --trackers "$trackers" --json upload "$big" \
        --dedup-check); then
        echo "dedup.sh: instant upload failed" >&2
        continue
      fi
      t3=$EPOCHREALTIME
      instant=$(/usr/bin/python3 -c 'import json,sys; print("true" if json.load(sys.stdin).get("instant") else "false")' <<<"$out")
      full_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')
      instant_s=$(awk -v a="$t2" -v b="$t3" 'BEGIN { printf "%.4f", b - a }')
      echo "{\"kind\":\"instant\",\"run\":$r,\"full_s\":$full_s,\"instant_s\":$instant_s,\"instant\":$instant}" >>"$results"
      log "$instant_mib MiB run $r: full upload ${full_s}s, --dedup-check ${instant_s}s (instant: $instant)"
    done
    rm -f "$big"
  fi

  for dedup in off on; do
    d=$(dir_of "$dedup")
    echo "{\"kind\":\"rss\",\"dedup\":\"$dedup\",\"storaged_kb\":$(peak_rss "$d/storage-group1-1"),\"dhtd_kb\":[$(
      for n in "$d"/dht-*; do [[ -d $n ]] && peak_rss "$n"; done | paste -sd,)]}" >>"$results"
  done
  down "$dir_off"
  down "$dir_on"
  rm -rf "$dir_off" "$dir_on"
done

/usr/bin/python3 - "$results" "$fs_desc" "$runs" "$duration" "$conns" "$instant_mib" "$bench_unique" <<'PY'
import json, statistics, sys
path, fs, runs, duration, conns, instant_mib, bench_unique = sys.argv[1:8]
rates, ref, instant, rss = {}, {}, [], {}
for line in open(path):
    j = json.loads(line)
    if j["kind"] == "rate":
        rates.setdefault((j["dedup"], j["content"], j["size"]), []).append(j["bench"])
    elif j["kind"] == "depot_bench":
        ref.setdefault((j["dedup"], j["size"]), []).append(j["bench"])
    elif j["kind"] == "instant":
        instant.append(j)
    else:
        # The peak over the blocks (each block has fresh clusters).
        r = rss.setdefault(j["dedup"], {"storaged_kb": 0, "dhtd_kb": [0] * len(j["dhtd_kb"])})
        r["storaged_kb"] = max(r["storaged_kb"], j["storaged_kb"])
        r["dhtd_kb"] = [max(a, b) for a, b in zip(r["dhtd_kb"], j["dhtd_kb"])]
def med(bs, k):
    return statistics.median(x[k] for x in bs) if bs else None
def fmt(v, f):
    return "-" if v is None else format(v, f)
def label(size):
    return "1 MiB" if size == 1048576 else "64 KiB"
def verdict(ok):
    return "met" if ok else "NOT met"
sizes = (1048576, 65536)
print()
print(f"Depot dedup benchmark: 1 tracker, 1 group of 1 storage (a 1-member group: upload rates "
      f"only), {conns} connections; median of {runs} runs ({duration}s each)")
print("dedup on: dedup = on and 2 depot-dhtd nodes (--dht 2); dedup off: no dht")
print(f"store on a {fs}; client and servers share the machine")
if bench_unique == "1":
    print("uploads: depot bench --op upload (--unique for unique files)")
else:
    print("uploads: a Python protocol client (tracker query + upload on pooled connections, one "
          "process per connection)")
print()
hdr = f"{'content':<11}{'size':<8}{'dedup':<7}{'files/s':>9}{'MB/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
print(hdr)
print("-" * len(hdr))
for size in sizes:
    for content in ("unique", "duplicate"):
        for dedup in ("off", "on"):
            bs = rates.get((dedup, content, size), [])
            errs = sum(b["errors"] for b in bs) if bs else None
            print(f"{content:<11}{label(size):<8}{dedup:<7}{fmt(med(bs,'ops_per_s'),'.0f'):>9}"
                  f"{fmt(med(bs,'mb_per_s'),'.1f'):>8}{fmt(med(bs,'p50_ms'),'.3f'):>9}"
                  f"{fmt(med(bs,'p99_ms'),'.3f'):>9}{fmt(errs,'d'):>8}")
if ref:
    print()
    print("for reference, depot bench --op upload (one payload again and again: duplicates)")
    for size in sizes:
        for dedup in ("off", "on"):
            bs = ref.get((dedup, size), [])
            errs = sum(b["errors"] for b in bs) if bs else None
            print(f"{'duplicate':<11}{label(size):<8}{dedup:<7}{fmt(med(bs,'ops_per_s'),'.0f'):>9}"
                  f"{fmt(med(bs,'mb_per_s'),'.1f'):>8}{fmt(med(bs,'p50_ms'),'.3f'):>9}"
                  f"{fmt(med(bs,'p99_ms'),'.3f'):>9}{fmt(errs,'d'):>8}")
print()
print("goals:")
for size in sizes:
    off = med(rates.get(("off", "unique", size), []), "ops_per_s")
    on = med(rates.get(("on", "unique", size), []), "ops_per_s")
    if off and on is not None:
        cost = 1 - on / off
        print(f"  dedup cost on unique {label(size)} uploads: {cost * 100:.1f}% "
              f"(on / off {on / off:.2f}; goal < 15%: {verdict(cost < 0.15)})")
for size in sizes:
    u = med(rates.get(("on", "unique", size), []), "ops_per_s")
    d = med(rates.get(("on", "duplicate", size), []), "ops_per_s")
    if u and d is not None:
        print(f"  dedup on, duplicate / unique {label(size)} uploads: {d / u:.2f} "
              f"(goal >= 1: {verdict(d >= u)})")
if instant:
    full = statistics.median(j["full_s"] for j in instant)
    inst = statistics.median(j["instant_s"] for j in instant)
    granted = sum(1 for j in instant if j["instant"])
    print(f"  instant upload of a {instant_mib} MiB file already stored: {inst * 1000:.0f} ms vs a "
          f"full upload {full * 1000:.0f} ms: {inst / full * 100:.1f}% (goal < 5%: "
          f"{verdict(inst / full < 0.05)}); instant in {granted} of {len(instant)} runs")
    print("    (each time includes the CLI's start and tracker query; the instant one hashes the "
          "whole file on the client)")
else:
    print("  instant upload: no run finished")
print()
for dedup in ("off", "on"):
    j = rss.get(dedup)
    if j is None:
        continue
    line = f"depot-storaged peak RSS, dedup {dedup}: {j['storaged_kb'] / 1024:.1f} MiB"
    if j["dhtd_kb"]:
        line += "; depot-dhtd: " + ", ".join(f"{kb / 1024:.1f} MiB" for kb in j["dhtd_kb"])
    print(line)
errs = sum(b["errors"] for bs in list(rates.values()) + list(ref.values()) for b in bs)
print(f"upload errors: {errs if errs else 'none'}")
PY
