#!/usr/bin/env bash
# A local multi-node Depot cluster on loopback addresses (DESIGN.md section 10). `--help` says
# everything. Trackers listen on 127.0.0.1; storage n (counting every group, from 0) listens on
# and advertises 127.0.0.(1+n), because replication and read routing tell a file's source member
# by the IPv4 address in its file ID (doc/replication.md).
#
# Each daemon gets a folder DIR/<role>-<n>/ with its generated config, its data, its log, the
# stdout/stderr of the process, the ready file the daemon writes once it serves, and a `pid` file.
# `down` stops exactly the processes named by those pid files (after checking that the pid still
# runs that folder's config), never anything found by name.
#
# In front of every storage n runs an nginx (unless --no-nginx) on the storage's address, port
# base+300+n, folder DIR/nginx-<n>/: its config is written by scripts/nginx-conf.sh from the
# storage's storage.conf (doc/nginx.md), and nginx itself writes DIR/nginx-<n>/nginx.pid (the
# master's pid), which `down` uses as it uses the daemons' pid files.
#
# With --opsd, depot-opsd (the ops API) runs in DIR/opsd-1/ on $HOST, port base+500, once every
# storage is ACTIVE: its files go to the cluster through the trackers. Its superuser `admin` gets a
# password generated here, kept in opsd.conf (mode 600) and in cluster.env for scripts and tests.
#
# With --dht N, N depot-dhtd nodes (the dedup index, doc/dht.md) run in DIR/dht-<n>/ on $HOST,
# port base+599+n, metrics base+699+n. They start first, one after the other, each with the nodes
# started before it as peers (it joins them and pulls its share); once all run, every dht.conf is
# rewritten with peers = all the other nodes, so that a node restarted later catches up from the
# rest. Every storage then gets dedup = on and dht_servers = every node (doc/dedup.md).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN_DIR=$(realpath -m "${DEPOT_BIN_DIR:-$ROOT/build/bin}")
READY_TIMEOUT_MS=20000  # for the ready files, then again for every storage to be ACTIVE
STOP_TIMEOUT_MS=10000   # SIGTERM grace before SIGKILL
ADD_TIMEOUT_MS=600000   # add-storage: for the new member to catch up and be ACTIVE
HOST=127.0.0.1          # the trackers' address; storage n gets 127.0.0.(1+n), see storage_ip

usage() {
  cat <<EOF
usage: scripts/cluster.sh up|down|status|restart|add-storage [options]

A local Depot cluster on loopback addresses: trackers on $HOST, storage n (counting every group,
from 0) on 127.0.0.(1+n) as bind_addr and advertise_address, since replication tells a file's
source member by the IPv4 address in its file ID. Each daemon has its own folder
DIR/<role>-<n>/ (tracker-1, storage-group1-2, opsd-1) with its config, data, log and a pid
file. In front of storage n runs an nginx (DIR/nginx-<n>/, on the storage's address): it serves
the storage's files straight from disk over HTTP and falls back to the storage's own HTTP port
for a file not there yet (doc/nginx.md). Each storage's http_advertise_port is its nginx's port,
so redirects between members and \`depot url\` lead to nginx. With --opsd, depot-opsd (the ops
API, DIR/opsd-1/) runs on $HOST and keeps its files in the cluster. With --dht N, N depot-dhtd
nodes (the dedup index, DIR/dht-1/..) run on $HOST and every storage has dedup = on.

commands:
  up       generate configs and start a fresh cluster; returns when every daemon is ready, every
           storage is ACTIVE on every tracker and the members of each group have their push
           sessions to each other connected; writes DIR/cluster.env. Refuses when DIR has running
           daemons; the folders of a stopped cluster in DIR are removed first (use restart to keep
           them). With --dht, the dht nodes start first, one after the other; with --opsd, opsd
           starts last, once every storage is ACTIVE.
  down     stop the daemons and nginx of DIR (SIGTERM, SIGKILL after $((STOP_TIMEOUT_MS / 1000)) s) and remove
           their pid files; data and logs stay.
  status   show which daemons and nginx run, then \`depot status\`. Exit 0 when all run, 1
           otherwise.
  restart  start every daemon and nginx of DIR that is not running, with its existing config and
           data (dht nodes first, one after the other, each catching up from the other nodes;
           opsd last, once every storage is ACTIVE).
  add-storage
           add one fresh member to group --group G of the running cluster in DIR (the next
           storage number, address and ports; the trackers and secret of DIR). It starts empty,
           copies the group's files from an ACTIVE member (WAIT_SYNC, SYNCING) and becomes
           ACTIVE. Returns once it is ACTIVE on every tracker and replicating (up to $((ADD_TIMEOUT_MS / 1000)) s), or,
           with --no-wait, as soon as it serves. An nginx is started in front of it when the
           cluster has nginx. Rewrites DIR/cluster.env.

options:
  --dir DIR         cluster folder (default: run/cluster in the repository); a relative DIR is
                    relative to the current directory
  --trackers N      trackers (default 2)                          [up]
  --groups G        storage groups group1..groupG (default 2)     [up]
  --per-group M     storage servers per group (default 1)         [up]
  --base-port P     first port (default 21000)                    [up]
                      trackers P+0.., storages P+100.., metrics P+200..,
                      nginx P+300.. (storage n: P+300+n on the storage's address),
                      storages' own HTTP ports P+400.. (storage n: P+400+n),
                      opsd P+500 (its API, /healthz and /metrics),
                      dht nodes P+600.. (dht-n: P+599+n), their metrics P+700.. (P+699+n)
                    add-storage takes P, the trackers and the secret from DIR's configs, and
                    durable_writes, replication, write_quorum and the trunk settings from an
                    existing member of the group unless given; the HTTP token settings always
                    from an existing member.
  --durable         durable_writes = true on every storage (and dht node)
                                                                  [up, add-storage]
  --replication async|sync
                    replication mode of every storage (default async)  [up, add-storage]
  --write-quorum W  members that must hold an upload before it is acknowledged with
                    --replication sync, the receiving one included (default 2)
                                                                  [up, add-storage]
  --group G         the group to add a member to: a number (2) or a name (group2) [add-storage]
  --no-wait         return once the new member serves, before it is ACTIVE   [add-storage]
  --http-token      every storage requires the anti-leech token on HTTP reads (http_token =
                    true), with a generated http_secret (DEPOT_HTTP_SECRET in cluster.env); its
                    nginx checks it too                           [up]
  --trunk           use_trunk_file = true on every storage: small files go into trunk files
                    (doc/trunk.md)                                [up, add-storage]
  --trunk-file-size SIZE
                    trunk_file_size (implies --trunk; default 64M) [up, add-storage]
  --no-nginx        no nginx in front of the storages; with restart and add-storage: do not
                    start any                                     [up, restart, add-storage]
  --dht N           start N depot-dhtd nodes (the dedup index, doc/dht.md) in DIR/dht-<n>/ on
                    $HOST before the storages, and set dedup = on and dht_servers = every
                    node in every storage.conf (default 0: no dht, dedup off). add-storage
                    copies dedup and dht_servers from the group's members  [up]
  --opsd            start depot-opsd, the ops API, in DIR/opsd-1/ on $HOST:P+500, with
                    superuser admin and a generated password (in cluster.env)  [up]
  -h, --help        this help

environment:
  DEPOT_BIN_DIR     where the binaries are (default: build/bin in the repository)
  DEPOT_NGINX       the nginx binary (default: nginx on PATH, then /usr/sbin/nginx)
  DEPOT_NJS_MODULE  nginx's njs module (default:
                    /usr/lib/nginx/modules/ngx_http_js_module.so, libnginx-mod-http-js)
  DEPOT_TOKEN_CHECK, DEPOT_LUA_MODULE
                    read by scripts/nginx-conf.sh: what checks the query at nginx (auto: Lua,
                    libnginx-mod-http-lua, when installed, else njs)

files in DIR:
  cluster.env       DEPOT_TRACKERS=$HOST:port,...  DEPOT_STORAGES=127.0.0.N:port,... (every
                    storage's address), DEPOT_CLUSTER_SECRET= (the generated cluster secret, read
                    by depot fsck), DEPOT_HTTP=127.0.0.N:port,... (every nginx, in storage
                    order; empty with --no-nginx), DEPOT_STORAGE_HTTP=127.0.0.N:port,... (every
                    storage's own HTTP address) and DEPOT_HTTP_SECRET= (the http_secret with
                    --http-token, else empty); with opsd also DEPOT_OPSD=http://$HOST:port,
                    DEPOT_OPSD_USER=admin and DEPOT_OPSD_PASSWORD= (its first password, from
                    opsd-1/opsd.conf); DEPOT_DHT=$HOST:port,... (every dht node; empty without
                    --dht); mode 600;
                    load it with: set -a; . DIR/cluster.env; set +a
  <role>-<n>/       <role>.conf, <role>.log (daemon log), stdout.log, ready.json, pid, data
                    (dht-<n>/: dht.conf, dht.log, data/ (its LevelDB), ...)
  nginx-<n>/        nginx.conf (mode 600), types.conf, depot.js, error.log, stdout.log,
                    nginx.pid, tmp/ (n: the storage's number, from 0)
  opsd-1/           opsd.conf (mode 600: it holds the admin password), opsd.log, stdout.log,
                    ready.json, pid, db/ (LevelDB), secret.key

examples:
  scripts/cluster.sh up --trackers 2 --groups 2 --per-group 1
  build/bin/depot --trackers \$(sed -n 's/^DEPOT_TRACKERS=//p' run/cluster/cluster.env) status
  scripts/cluster.sh up --groups 1 --per-group 2 --replication sync --write-quorum 2
  scripts/cluster.sh add-storage --group 1
  scripts/cluster.sh up --opsd; (set -a; . run/cluster/cluster.env; curl -s \$DEPOT_OPSD/healthz)
  scripts/cluster.sh up --groups 1 --per-group 2 --dht 2; build/bin/depot upload FILE --dedup-check
  (set -a; . run/cluster/cluster.env; build/bin/depot fsck)
  curl -sI http://\$(sed -n 's/^DEPOT_HTTP=\([^,]*\).*/\1/p' run/cluster/cluster.env)/<file ID>
  scripts/cluster.sh down
EOF
}

die() {
  echo "cluster.sh: error: $*" >&2
  exit 1
}

note() { echo "cluster.sh: $*"; }

now_ms() {
  local t=${EPOCHREALTIME//[.,]/}
  echo $((t / 1000))
}

# ---- argument parsing -------------------------------------------------------------------------

CMD=""
DIR_ARG=""
TRACKERS=2
GROUPS_N=2
PER_GROUP=1
DHT=0
OPSD=0
BASE_PORT=21000
DURABLE=false
REPLICATION=async
WRITE_QUORUM=2
ADD_GROUP=""
NO_WAIT=0
NGINX=1
HTTP_TOKEN=false
HTTP_SECRET=""
TRUNK=false
TRUNK_FILE_SIZE=
NGINX_BIN=${DEPOT_NGINX:-}
NGINX_DIR=""  # set by write_nginx_conf
NJS_MODULE=${DEPOT_NJS_MODULE:-/usr/lib/nginx/modules/ngx_http_js_module.so}
DEDUP=off       # dedup in every storage.conf written: on with --dht (add-storage: as the group)
DHT_SERVERS=""  # dht_servers of every storage.conf written (host:port,...)
declare -A GIVEN=()  # options given on the command line (add-storage copies the others)

need_value() {
  (($# >= 2)) || die "$1 needs a value (see --help)"
}

need_int() {
  local name=$1 value=$2 min=$3 max=$4
  [[ $value =~ ^[0-9]+$ ]] || die "$name must be a number, got '$value'"
  ((10#$value >= min && 10#$value <= max)) || die "$name must be in $min..$max, got $value"
}

while (($# > 0)); do
  case $1 in
    up | down | status | restart | add-storage)
      [[ -z $CMD ]] || die "two commands given: $CMD and $1"
      CMD=$1
      ;;
    --dir) need_value "$@"; DIR_ARG=$2; shift ;;
    --dir=*) DIR_ARG=${1#*=} ;;
    --trackers) need_value "$@"; TRACKERS=$2; shift ;;
    --trackers=*) TRACKERS=${1#*=} ;;
    --groups) need_value "$@"; GROUPS_N=$2; shift ;;
    --groups=*) GROUPS_N=${1#*=} ;;
    --per-group) need_value "$@"; PER_GROUP=$2; shift ;;
    --per-group=*) PER_GROUP=${1#*=} ;;
    --dht) need_value "$@"; DHT=$2; shift ;;
    --dht=*) DHT=${1#*=} ;;
    --base-port) need_value "$@"; BASE_PORT=$2; shift ;;
    --base-port=*) BASE_PORT=${1#*=} ;;
    --durable) DURABLE=true; GIVEN[durable]=1 ;;
    --replication) need_value "$@"; REPLICATION=$2; GIVEN[replication]=1; shift ;;
    --replication=*) REPLICATION=${1#*=}; GIVEN[replication]=1 ;;
    --write-quorum) need_value "$@"; WRITE_QUORUM=$2; GIVEN[write_quorum]=1; shift ;;
    --write-quorum=*) WRITE_QUORUM=${1#*=}; GIVEN[write_quorum]=1 ;;
    --group) need_value "$@"; ADD_GROUP=$2; shift ;;
    --group=*) ADD_GROUP=${1#*=} ;;
    --no-wait) NO_WAIT=1 ;;
    --opsd) OPSD=1 ;;
    --no-nginx) NGINX=0 ;;
    --http-token) HTTP_TOKEN=true ;;
    --trunk) TRUNK=true; GIVEN[trunk]=1 ;;
    --trunk-file-size) need_value "$@"; TRUNK=true; TRUNK_FILE_SIZE=$2; GIVEN[trunk]=1; shift ;;
    --trunk-file-size=*) TRUNK=true; TRUNK_FILE_SIZE=${1#*=}; GIVEN[trunk]=1 ;;
    -h | --help | help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done

[[ -n $CMD ]] || { usage >&2; exit 2; }
need_int --trackers "$TRACKERS" 1 100
need_int --groups "$GROUPS_N" 1 100
need_int --per-group "$PER_GROUP" 1 100
need_int --dht "$DHT" 0 100
# The highest port used is base + 500 (opsd), with --dht N base + 699 + N (the last dht metrics).
need_int --base-port "$BASE_PORT" 1024 $((DHT > 0 ? 65535 - 699 - 10#$DHT : 65035))
need_int --write-quorum "$WRITE_QUORUM" 1 64
[[ -z $TRUNK_FILE_SIZE || $TRUNK_FILE_SIZE =~ ^[0-9]+[KMG]?$ ]] ||
  die "--trunk-file-size must be a size like 64M, got '$TRUNK_FILE_SIZE'"
[[ $REPLICATION == async || $REPLICATION == sync ]] ||
  die "--replication must be async or sync, got '$REPLICATION'"
WRITE_QUORUM=$((10#$WRITE_QUORUM))
TRACKERS=$((10#$TRACKERS)) GROUPS_N=$((10#$GROUPS_N)) PER_GROUP=$((10#$PER_GROUP))
DHT=$((10#$DHT)) BASE_PORT=$((10#$BASE_PORT))
STORAGES=$((GROUPS_N * PER_GROUP))
((STORAGES <= 100)) || die "--groups times --per-group must be at most 100 (ports P+100..P+199)"
((TRACKERS + STORAGES <= 100)) || die "trackers + storages must be at most 100 (metrics ports P+200..P+299)"

DIR=$(realpath -m "${DIR_ARG:-$ROOT/run/cluster}")

# ---- daemon folders ---------------------------------------------------------------------------

# Sets DIRS to the daemon folders of DIR (those holding their config), dht nodes first, then
# trackers, then storages, then nginx, then opsd, in numeric order. `if`, not `[[ ]] && echo`: a
# loop whose last test fails (no nginx-* with --no-nginx) would end the subshell under set -e and
# pipefail, and the roles after it would be lost.
load_dirs() {
  local d role
  DIRS=()
  [[ -d $DIR ]] || return 0
  mapfile -t DIRS < <(
    for role in dht tracker storage nginx opsd; do
      for d in "$DIR/$role"-*; do
        if [[ -f $d/$role.conf ]]; then echo "$d"; fi
      done | sort -V
    done
  )
}

role_of() {
  case ${1##*/} in
    dht-*) echo dht ;;
    tracker-*) echo tracker ;;
    storage-*) echo storage ;;
    nginx-*) echo nginx ;;
    opsd-*) echo opsd ;;
    *) echo unknown ;;
  esac
}

conf_of() { echo "$1/$(role_of "$1").conf"; }

# The binary of a daemon folder: depot-trackerd, depot-storaged, depot-dhtd, but depot-opsd (no
# "d" added).
bin_of() {
  local role
  role=$(role_of "$1")
  if [[ $role == opsd ]]; then echo "$BIN_DIR/depot-opsd"; else echo "$BIN_DIR/depot-${role}d"; fi
}

# The first value of `key` in a conf file.
conf_value() {
  sed -n "s/^[[:space:]]*$2[[:space:]]*=[[:space:]]*//p" "$1" | head -n 1
}

# The command line of process $1, one argument per line; fails when the process is gone. The
# kernel can answer an empty read while the process is busy (seen during a daemon's start-up,
# under load): an empty answer is asked again a few times before it is believed.
cmdline_of() {
  local args i
  for i in 1 2 3 4 5; do
    args=$(tr '\0' '\n' 2>/dev/null <"/proc/$1/cmdline") || return 1
    [[ -n $args ]] && break
    sleep 0.02
  done
  printf '%s\n' "$args"
}

# The state letter of process $1 (R, S, D, Z...); fails when the process is gone.
proc_state() {
  local state
  state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
  [[ -n $state ]] || return 1
  echo "$state"
}

# The pid file of a daemon folder: `pid`, written by this script, or for nginx `nginx.pid`,
# written by the nginx master itself (and removed by it when it exits).
pid_file_of() {
  if [[ $(role_of "$1") == nginx ]]; then echo "$1/nginx.pid"; else echo "$1/pid"; fi
}

# Prints the pid of the daemon of folder $1 and succeeds when it is running: the pid file names a
# live (not zombie) process whose command line carries this folder's config.
daemon_pid() {
  local d=$1 pid state args pid_file
  pid_file=$(pid_file_of "$d")
  [[ -f $pid_file ]] || return 1
  pid=$(<"$pid_file")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  args=$(cmdline_of "$pid") || return 1
  if [[ $(role_of "$d") == nginx ]]; then
    # The nginx master rewrites its command line into one string:
    # "nginx: master process /usr/sbin/nginx -p DIR -c DIR/nginx.conf -e DIR/error.log".
    [[ $args == "nginx: master process "* ]] || return 1
    grep -qF -- " -c $(conf_of "$d") " <<<"$args " || return 1
  else
    grep -qxF -- "$(conf_of "$d")" <<<"$args" || return 1
  fi
  state=$(proc_state "$pid") || return 1
  [[ $state != Z ]] || return 1
  echo "$pid"
}

# True while the process named by $1/pid exists and is not a zombie: right after start_daemon
# it may still be the launching subshell, or setsid, or nohup, before it is the daemon.
launched_alive() {
  local pid state
  pid=$(<"$1/pid") || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  state=$(proc_state "$pid") || return 1
  [[ $state != Z ]]
}

# A field of the daemon's ready file ({"pid":N,"port":P,"metrics_port":M}).
ready_field() {
  [[ -f $1/ready.json ]] || return 0
  grep -o "\"$2\":[0-9-]*" "$1/ready.json" | head -n 1 | cut -d: -f2
}

# The address of storage number $1 (0, 1, ... counting every group): 127.0.0.(1+n).
storage_ip() { echo "127.0.0.$((1 + $1))"; }

# The address a storage folder's daemon listens on and advertises (its storage.conf).
storage_addr() {
  local ip
  ip=$(conf_value "$1/storage.conf" advertise_address)
  echo "${ip:-$HOST}"
}

# The storages of DIR as ip:port,...
storage_list() {
  local d list=""
  load_dirs
  for d in "${DIRS[@]+"${DIRS[@]}"}"; do
    [[ $(role_of "$d") == storage ]] || continue
    list+="${list:+,}$(storage_addr "$d"):$(conf_value "$d/storage.conf" port)"
  done
  echo "$list"
}

tracker_list() {
  local d list=""
  load_dirs
  for d in "${DIRS[@]+"${DIRS[@]}"}"; do
    [[ $(role_of "$d") == tracker ]] || continue
    list+="${list:+,}$HOST:$(conf_value "$d/tracker.conf" port)"
  done
  echo "$list"
}

# The dht nodes of DIR as host:port,... (their advertise_address, their id on the ring), or with
# an argument, every node but the one of that folder.
dht_list() {
  local d list="" skip=${1:-}
  load_dirs
  for d in "${DIRS[@]+"${DIRS[@]}"}"; do
    [[ $(role_of "$d") == dht && $d != "$skip" ]] || continue
    list+="${list:+,}$(conf_value "$d/dht.conf" advertise_address)"
  done
  echo "$list"
}

# port_in_use HOST PORT
port_in_use() {
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

show_log_tail() {
  local d=$1 f
  for f in "$d/stdout.log" "$d/$(role_of "$d").log" "$d/error.log"; do
    [[ -s $f ]] || continue
    echo "---- last lines of $f" >&2
    tail -n 20 "$f" >&2
  done
}

# ---- starting and stopping --------------------------------------------------------------------

declare -A START_SEC=()  # daemon folder -> unix time this run started it

start_daemon() {
  local d=$1 conf bin
  conf=$(conf_of "$d")
  bin=$(bin_of "$d")
  rm -f "$d/ready.json"
  START_SEC[$d]=${EPOCHSECONDS}
  # setsid: the daemon gets its own session, so a Ctrl-C in this terminal does not reach it.
  # The subshell is not a process-group leader, so setsid execs in place and $! is the daemon.
  # fd 8 (the DIR lock) must not leak into the daemon.
  (
    cd "$d"
    exec 8>&-
    exec setsid nohup "$bin" --config "$conf" --ready-file "$d/ready.json" \
      </dev/null >>"$d/stdout.log" 2>&1
  ) &
  echo $! >"$d/pid"
}

# Waits (deadline loop) until every folder in $@ has its ready file; fails when a daemon exits or
# the deadline passes. Then trusts the pid in the ready file.
wait_ready() {
  local deadline pending still d pid
  deadline=$(($(now_ms) + READY_TIMEOUT_MS))
  pending=("$@")
  while ((${#pending[@]} > 0)); do
    still=()
    for d in "${pending[@]}"; do
      [[ -s $d/ready.json ]] && continue
      if ! launched_alive "$d"; then
        show_log_tail "$d"
        die "${d##*/} exited before it was ready (logs above, folder $d)"
      fi
      still+=("$d")
    done
    pending=("${still[@]+"${still[@]}"}")
    ((${#pending[@]} > 0)) || break
    if (($(now_ms) > deadline)); then
      for d in "${pending[@]}"; do show_log_tail "$d"; done
      die "not ready after $((READY_TIMEOUT_MS / 1000)) s: ${pending[*]##*/}"
    fi
    sleep 0.1
  done
  for d in "$@"; do
    pid=$(ready_field "$d" pid)
    [[ -n $pid ]] && echo "$pid" >"$d/pid"
  done
  return 0
}

# Lists "tracker storage" pairs where a storage is not ACTIVE yet, and trackers that do not see
# every push session of the groups' members connected yet (empty: all ACTIVE and replicating).
not_active() {
  local t d g ip port out members member heartbeat sessions=0 connected
  local -a storages=()
  local -A group_size=()
  load_dirs
  for d in "${DIRS[@]+"${DIRS[@]}"}"; do
    [[ $(role_of "$d") == storage ]] || continue
    storages+=("$d")
    g=$(conf_value "$d/storage.conf" group_name)
    group_size[$g]=$((${group_size[$g]:-0} + 1))
  done
  # Each member of a group of n pushes to its n-1 peers; with replication = sync an upload is
  # refused until those sessions are up, so `up` waits for them too.
  for g in "${!group_size[@]}"; do
    sessions=$((sessions + group_size[$g] * (group_size[$g] - 1)))
  done
  for t in ${1//,/ }; do
    if ! out=$("$BIN_DIR/depot" --trackers "$t" --json status 2>/dev/null); then
      echo "tracker $t: no answer"
      continue
    fi
    # Member objects are the {...} objects of the reply once their "pushing_to" arrays (one
    # flat object per peer, no brackets inside) are emptied.
    # shellcheck disable=SC2001  # a regular expression, not a glob
    members=$(sed 's/"pushing_to":\[[^]]*\]/"pushing_to":[]/g' <<<"$out" | grep -o '{[^{}]*}' || true)
    for d in "${storages[@]+"${storages[@]}"}"; do
      port=$(conf_value "$d/storage.conf" port)
      ip=$(storage_addr "$d")
      member=$(grep -F "\"port\":$port," <<<"$members" | grep -F "\"ip\":\"$ip\"" || true)
      if ! grep -qF '"state":"ACTIVE"' <<<"$member"; then
        echo "tracker $t: ${d##*/} ($ip:$port) not ACTIVE"
        continue
      fi
      # A storage started by this run must have heartbeated since: a tracker still shows a
      # storage that died a moment ago as ACTIVE until storage_timeout.
      heartbeat=$(grep -o '"last_heartbeat":[0-9]*' <<<"$member" | cut -d: -f2)
      if [[ -n ${START_SEC[$d]:-} ]] && ((${heartbeat:-0} < START_SEC[$d])); then
        echo "tracker $t: ${d##*/} ($ip:$port) has not heartbeated since it started"
      fi
    done
    connected=$(grep -o '"connected":true' <<<"$out" | wc -l)
    if ((connected < sessions)); then
      echo "tracker $t: $connected of $sessions push sessions between group members connected"
    fi
  done
}

# wait_active [TIMEOUT_MS]
wait_active() {
  local trackers deadline missing timeout=${1:-$READY_TIMEOUT_MS}
  trackers=$(tracker_list)
  deadline=$(($(now_ms) + timeout))
  while :; do
    missing=$(not_active "$trackers")
    [[ -z $missing ]] && return 0
    if (($(now_ms) > deadline)); then
      echo "$missing" >&2
      "$BIN_DIR/depot" --trackers "$trackers" status >&2 || true
      die "storages not ACTIVE after $((timeout / 1000)) s"
    fi
    sleep 0.1
  done
}

# SIGKILL to the child processes of process $1 (found by parent pid, not by name).
kill_children() {
  local kids
  kids=$(cat /proc/"$1"/task/*/children 2>/dev/null || true)
  # shellcheck disable=SC2086  # a list of pids
  [[ -n ${kids// /} ]] && kill -KILL $kids 2>/dev/null
  return 0
}

# Stops every running daemon and nginx of DIR: SIGTERM (for nginx a fast shutdown), then SIGKILL
# after the grace time. Removes pid files.
stop_all() {
  local d i pid deadline
  local -a dirs=() pids=() alive=()
  load_dirs
  for d in "${DIRS[@]+"${DIRS[@]}"}"; do
    if pid=$(daemon_pid "$d"); then
      kill -TERM "$pid" 2>/dev/null || true
      dirs+=("$d")
      pids+=("$pid")
    elif [[ -f $(pid_file_of "$d") ]]; then
      note "${d##*/}: not running (stale pid file removed)"
      rm -f "$(pid_file_of "$d")"
    fi
  done
  deadline=$(($(now_ms) + STOP_TIMEOUT_MS))
  while :; do
    alive=()
    for i in "${!dirs[@]}"; do
      still_running "${dirs[i]}" "${pids[i]}" && alive+=("$i")
    done
    ((${#alive[@]} == 0)) && break
    if (($(now_ms) > deadline)); then
      for i in "${alive[@]}"; do
        d=${dirs[i]} pid=${pids[i]}
        note "${d##*/}: still running after $((STOP_TIMEOUT_MS / 1000)) s: SIGKILL $pid"
        # An nginx master's workers outlive a SIGKILL of the master: they go too (its children,
        # by pid, taken before the master is gone).
        [[ $(role_of "$d") == nginx ]] && kill_children "$pid"
        kill -KILL "$pid" 2>/dev/null || true
      done
      deadline=$(($(now_ms) + STOP_TIMEOUT_MS))
    fi
    sleep 0.1
  done
  for d in "${dirs[@]+"${dirs[@]}"}"; do rm -f "$(pid_file_of "$d")" "$d/ready.json"; done
  STOPPED=${#pids[@]}
}

# still_running FOLDER PID: the daemon of FOLDER, stopped as PID, has not exited yet. An nginx
# master removes its pid file before it closes its ports and exits: until then it is still the
# process PID with a master's command line.
still_running() {
  local state args
  daemon_pid "$1" >/dev/null && return 0
  [[ $(role_of "$1") == nginx ]] || return 1
  state=$(proc_state "$2") || return 1
  [[ $state != Z ]] || return 1
  args=$(cmdline_of "$2") || return 1
  [[ $args == "nginx: master process "* ]]
}

# ---- nginx ------------------------------------------------------------------------------------

# Finds nginx; dies with what to do when it is missing.
check_nginx() {
  if [[ -z $NGINX_BIN ]]; then
    NGINX_BIN=$(command -v nginx 2>/dev/null || true)
    [[ -z $NGINX_BIN && -x /usr/sbin/nginx ]] && NGINX_BIN=/usr/sbin/nginx
  fi
  [[ -n $NGINX_BIN && -x $NGINX_BIN ]] ||
    die "nginx not found (scripts/install-deps.sh installs it; DEPOT_NGINX names another);" \
      "or run without nginx: --no-nginx"
  # The query check module (Lua, else njs) is the generator's choice: it says what is missing.
}

# The address an nginx folder's nginx listens on (the listen line of its nginx.conf).
nginx_listen() {
  sed -n 's/^[[:space:]]*listen[[:space:]]\{1,\}\([^[:space:];]*\).*/\1/p' "$1/nginx.conf" |
    head -n 1
}

# The storaged an nginx folder's nginx falls back to (its upstream server line).
nginx_fallback() {
  local re='^[[:space:]]*server[[:space:]]\{1,\}\([0-9.:]*\)[[:space:]].*max_fails=0;.*'
  sed -n "s/$re/\\1/p" "$1/nginx.conf" | head -n 1
}

# The number of a storage folder (0, 1, ... counting every group): its port - base - 100.
storage_number() {
  echo $(($(conf_value "$1/storage.conf" port) - $2 - 100))
}

# write_nginx_conf STORAGE_FOLDER BASE_PORT: writes DIR/nginx-<n>/ for storage n with
# scripts/nginx-conf.sh (its output goes to DIR/nginx-<n>/generate.log) and sets NGINX_DIR to it.
write_nginx_conf() {
  local sd=$1 base=$2 n d
  n=$(storage_number "$sd" "$base")
  d=$DIR/nginx-$n
  NGINX_DIR=$d
  mkdir -p "$d"
  if ! "$ROOT/scripts/nginx-conf.sh" storage --storage-conf "$sd/storage.conf" \
    --listen "$(storage_addr "$sd"):$((base + 300 + n))" --out "$d" --workers 1 \
    --nginx "$NGINX_BIN" --njs-module "$NJS_MODULE" >"$d/generate.log" 2>&1 </dev/null; then
    cat "$d/generate.log" >&2
    die "could not write the nginx config of ${sd##*/} (above; folder $d)"
  fi
}

# Starts the nginx of folder $1 and waits (deadline loop) until its master has written its pid
# file. nginx daemonizes itself (and calls setsid); the command returns once it has bound its
# port and forked, with a non-zero status when the config or the port is refused.
start_nginx() {
  local d=$1 rc=0 deadline
  rm -f "$d/nginx.pid"
  # fd 8 (the DIR lock) must not leak into nginx.
  (
    cd "$d"
    exec 8>&-
    exec "$NGINX_BIN" -p "$d" -c "$d/nginx.conf" -e "$d/error.log"
  ) </dev/null >>"$d/stdout.log" 2>&1 || rc=$?
  if ((rc != 0)); then
    show_log_tail "$d"
    die "${d##*/} did not start (nginx exit status $rc; logs above, folder $d)"
  fi
  deadline=$(($(now_ms) + READY_TIMEOUT_MS))
  until daemon_pid "$d" >/dev/null; do
    if (($(now_ms) > deadline)); then
      show_log_tail "$d"
      die "${d##*/} has no running master after $((READY_TIMEOUT_MS / 1000)) s (logs above, folder $d)"
    fi
    sleep 0.05
  done
}

# ---- configs ----------------------------------------------------------------------------------

write_tracker_conf() {
  local d=$1 port=$2 metrics=$3 secret=$4
  cat >"$d/tracker.conf" <<EOF
# Generated by scripts/cluster.sh up on $(date -u +%Y-%m-%dT%H:%M:%SZ); restart reuses it.
# Every key is documented in conf/tracker.conf.
bind_addr = $HOST
port = $port
metrics_port = $metrics
base_path = $d
log_file = $d/tracker.log
log_level = info
storage_timeout = 10
cluster_secret = $secret
EOF
}

# write_storage_conf DIR GROUP IP PORT HTTP_PORT METRICS_PORT SECRET TRACKERS NGINX_PORT;
# durable_writes, replication and write_quorum come from DURABLE, REPLICATION and WRITE_QUORUM,
# the HTTP token from HTTP_TOKEN and HTTP_SECRET, dedup from DEDUP and DHT_SERVERS. NGINX_PORT
# (0: no nginx) becomes http_advertise_port: where other members redirect HTTP reads to and what
# `depot url` prints.
write_storage_conf() {
  local d=$1 group=$2 ip=$3 port=$4 http=$5 metrics=$6 secret=$7 trackers=$8 nginx_port=$9 t
  {
    cat <<EOF
# Generated by scripts/cluster.sh $CMD on $(date -u +%Y-%m-%dT%H:%M:%SZ); restart reuses it.
# Every key is documented in conf/storage.conf. Each storage has its own loopback address: the
# file IDs it creates carry it, and replication tells a file's source member by it.
group_name = $group
bind_addr = $ip
port = $port
advertise_address = $ip
http_port = $http
http_mime_types = $ROOT/conf/mime.types
metrics_port = $metrics
base_path = $d
store_path0 = $d/store0
heartbeat_interval = 2
durable_writes = $DURABLE
replication = $REPLICATION
write_quorum = $WRITE_QUORUM
reserved_space = 64M
log_file = $d/storage.log
log_level = info
cluster_secret = $secret
EOF
    if ((nginx_port > 0)); then echo "http_advertise_port = $nginx_port"; fi
    if [[ $DEDUP == on ]]; then
      echo "dedup = on"
      echo "dht_servers = $DHT_SERVERS"
    fi
    if [[ $TRUNK == true ]]; then
      echo "use_trunk_file = true"
      [[ -z $TRUNK_FILE_SIZE ]] || echo "trunk_file_size = $TRUNK_FILE_SIZE"
    fi
    if [[ $HTTP_TOKEN == true ]]; then
      echo "http_token = true"
      echo "http_secret = $HTTP_SECRET"
    fi
    for t in ${trackers//,/ }; do echo "tracker_server = $t"; done
  } >"$d/storage.conf"
}

# write_dht_conf DIR PORT METRICS_PORT SECRET PEERS: a dht node on $HOST:PORT, whose id (its
# advertise_address) is $HOST:PORT. PEERS (host:port,...): the nodes it joins at its first start.
write_dht_conf() {
  local d=$1 port=$2 metrics=$3 secret=$4 peers=$5
  cat >"$d/dht.conf" <<EOF
# Generated by scripts/cluster.sh up on $(date -u +%Y-%m-%dT%H:%M:%SZ); restart reuses it.
# Every key is documented in conf/dht.conf. advertise_address is the node's id on the ring: it
# must never change. peers: once every node runs, all the other nodes (a restarted node catches
# up from them).
bind_addr = $HOST
port = $port
advertise_address = $HOST:$port
peers = $peers
metrics_port = $metrics
data_path = $d/data
durable_writes = $DURABLE
log_file = $d/dht.log
log_level = info
cluster_secret = $secret
EOF
}

# set_dht_peers DIR PEERS: rewrites the peers line of a dht node's config (for its next start).
set_dht_peers() {
  sed -i "s/^peers = .*/peers = $2/" "$1/dht.conf"
}

# write_opsd_conf DIR PORT TRACKERS PASSWORD: opsd's config, mode 600 from the start (umask in a
# subshell) since it holds the superuser's first password. admin_password only counts at the
# first start (an empty store); write_env reads it back for cluster.env.
write_opsd_conf() {
  local d=$1 port=$2 trackers=$3 password=$4 t
  (
    umask 077
    {
      cat <<EOF
# Generated by scripts/cluster.sh up on $(date -u +%Y-%m-%dT%H:%M:%SZ); restart reuses it.
# Every key is documented in conf/opsd.conf. admin_password is the superuser's first password,
# used only when the store has no user yet (cluster.env carries it as DEPOT_OPSD_PASSWORD).
bind_addr = $HOST
port = $port
base_path = $d
log_file = $d/opsd.log
log_level = info
durable_writes = true
admin_user = admin
admin_password = $password
EOF
      for t in ${trackers//,/ }; do echo "tracker_server = $t"; done
    } >"$d/opsd.conf"
  )
}

# ---- commands ---------------------------------------------------------------------------------

# check_binaries [EXTRA...]: the binaries every command needs, plus EXTRA (depot-opsd when the
# cluster has or gets an opsd, depot-dhtd when it has or gets dht nodes: a cluster without them
# must not need them built).
check_binaries() {
  local b
  for b in depot-trackerd depot-storaged depot "$@"; do
    [[ -x $BIN_DIR/$b ]] || die "$BIN_DIR/$b is missing: build first (scripts/build.sh)"
  done
}

lock_dir() {
  mkdir -p "$DIR"
  exec 8>"$DIR/.lock"
  flock -n 8 || die "another scripts/cluster.sh is working on $DIR"
}

running_daemons() {
  local d
  load_dirs
  for d in "${DIRS[@]+"${DIRS[@]}"}"; do
    daemon_pid "$d" >/dev/null && echo "${d##*/}"
  done
  return 0
}

print_summary() {
  local d pid addr port metrics extra conf
  echo "Depot cluster in $DIR:"
  load_dirs
  for d in "${DIRS[@]+"${DIRS[@]}"}"; do
    conf=$(conf_of "$d")
    extra=""
    if [[ $(role_of "$d") == nginx ]]; then
      addr=$(nginx_listen "$d")
      metrics=-
      extra="http, falls back to $(nginx_fallback "$d")"
    else
      port=$(conf_value "$conf" port)
      addr=$(conf_value "$conf" bind_addr):$port
      metrics=$(conf_value "$conf" metrics_port)
    fi
    if [[ $(role_of "$d") == opsd ]]; then
      # opsd has no metrics_port: it serves /metrics on its API port.
      metrics=$port
      extra="api"
    fi
    if [[ $(role_of "$d") == storage ]]; then
      extra="$(conf_value "$conf" group_name) $(conf_value "$conf" replication)"
      extra+="  store $(conf_value "$conf" store_path0)  http $(conf_value "$conf" http_port)"
      if [[ $(conf_value "$conf" dedup) == on ]]; then extra+="  dedup"; fi
    fi
    if [[ $(role_of "$d") == dht ]]; then
      extra="dedup index, data $(conf_value "$conf" data_path)"
    fi
    if pid=$(daemon_pid "$d"); then
      printf '  %-20s running  pid %-8s %-21s metrics %-6s %s\n' "${d##*/}" "$pid" "$addr" \
        "$metrics" "$extra"
    else
      printf '  %-20s STOPPED  %-12s %-21s metrics %-6s %s\n' "${d##*/}" "" "$addr" "$metrics" \
        "$extra"
    fi
  done
}

write_env() {
  local trackers=$1 d secret="" base http="" storage_http="" http_secret="" nd od=$DIR/opsd-1
  local dht
  load_dirs
  for d in "${DIRS[@]+"${DIRS[@]}"}"; do
    secret=$(conf_value "$(conf_of "$d")" cluster_secret)
    break
  done
  base=$(conf_value "$DIR/tracker-1/tracker.conf" port)
  # In storage order: each storage's own HTTP address and the nginx in front of it.
  for d in "${DIRS[@]+"${DIRS[@]}"}"; do
    [[ $(role_of "$d") == storage ]] || continue
    storage_http+="${storage_http:+,}$(storage_addr "$d"):$(conf_value "$d/storage.conf" http_port)"
    nd=$DIR/nginx-$(storage_number "$d" "$base")
    [[ -f $nd/nginx.conf ]] && http+="${http:+,}$(nginx_listen "$nd")"
    if [[ $(conf_value "$d/storage.conf" http_token) == true ]]; then
      http_secret=$(conf_value "$d/storage.conf" http_secret)
    fi
  done
  dht=$(dht_list)
  # Mode 600 before anything secret is in it (cat > keeps the mode of an existing file).
  rm -f "$DIR/cluster.env.tmp"
  (umask 077 && : >"$DIR/cluster.env.tmp")
  cat >"$DIR/cluster.env.tmp" <<EOF
DEPOT_TRACKERS=$trackers
DEPOT_STORAGES=$(storage_list)
DEPOT_CLUSTER_SECRET=$secret
DEPOT_HTTP=$http
DEPOT_STORAGE_HTTP=$storage_http
DEPOT_HTTP_SECRET=$http_secret
DEPOT_DHT=$dht
EOF
  # opsd's address and superuser, read back from its config so that restart and add-storage
  # keep writing them. The password is the first one: a change through the API is not seen here.
  if [[ -f $od/opsd.conf ]]; then
    cat >>"$DIR/cluster.env.tmp" <<EOF
DEPOT_OPSD=http://$(conf_value "$od/opsd.conf" bind_addr):$(conf_value "$od/opsd.conf" port)
DEPOT_OPSD_USER=$(conf_value "$od/opsd.conf" admin_user)
DEPOT_OPSD_PASSWORD=$(conf_value "$od/opsd.conf" admin_password)
EOF
  fi
  chmod 600 "$DIR/cluster.env.tmp"
  mv "$DIR/cluster.env.tmp" "$DIR/cluster.env"
}

UP_STARTED=0
on_exit() {
  local rc=$?
  if ((rc != 0 && UP_STARTED == 1)); then
    echo "cluster.sh: up failed: stopping the daemons it started (logs stay in $DIR)" >&2
    stop_all >/dev/null 2>&1 || true
  fi
}

cmd_up() {
  local running i g m k d port metrics trackers="" secret dht=""
  local -a tracker_dirs=() storage_dirs=() nginx_dirs=() dht_dirs=() ports=() extra_bins=()
  ((OPSD == 1)) && extra_bins+=(depot-opsd)
  ((DHT > 0)) && extra_bins+=(depot-dhtd)
  check_binaries "${extra_bins[@]+"${extra_bins[@]}"}"
  ((NGINX == 1)) && check_nginx
  lock_dir
  running=$(running_daemons)
  if [[ -n $running ]]; then
    die "$DIR already has running daemons ($(echo "$running" | paste -sd' ')):" \
      "run 'scripts/cluster.sh down --dir $(printf '%q' "$DIR")' first"
  fi

  # seq with a last below its first prints nothing: no dht ports without --dht.
  for port in $(seq "$BASE_PORT" $((BASE_PORT + TRACKERS - 1))) \
    $(seq $((BASE_PORT + 200)) $((BASE_PORT + 199 + TRACKERS))) \
    $(seq $((BASE_PORT + 600)) $((BASE_PORT + 599 + DHT))) \
    $(seq $((BASE_PORT + 700)) $((BASE_PORT + 699 + DHT))); do
    if port_in_use "$HOST" "$port"; then
      die "port $port on $HOST is already in use (another cluster? pick another --base-port)"
    fi
  done
  for ((k = 0; k < STORAGES; k++)); do
    ports=($((BASE_PORT + 100 + k)) $((BASE_PORT + 200 + TRACKERS + k)) $((BASE_PORT + 400 + k)))
    ((NGINX == 1)) && ports+=($((BASE_PORT + 300 + k)))
    for port in "${ports[@]}"; do
      if port_in_use "$(storage_ip "$k")" "$port"; then
        die "port $port on $(storage_ip "$k") is already in use (another cluster? pick another --base-port)"
      fi
    done
  done
  if ((OPSD == 1)) && port_in_use "$HOST" $((BASE_PORT + 500)); then
    die "port $((BASE_PORT + 500)) on $HOST is already in use (another cluster? pick another --base-port)"
  fi
  if [[ $REPLICATION == sync ]] && ((WRITE_QUORUM > PER_GROUP)); then
    note "--replication sync with --write-quorum $WRITE_QUORUM and $PER_GROUP members per group:" \
      "uploads fail (status 11) until a group has $WRITE_QUORUM ACTIVE members"
  fi

  # A stopped cluster's folders go: `up` always starts a fresh cluster of the requested shape.
  local old
  for old in "$DIR"/tracker-* "$DIR"/storage-* "$DIR"/dht-* "$DIR"/nginx-* "$DIR"/opsd-*; do
    [[ -d $old ]] && rm -rf -- "$old"
  done
  rm -f "$DIR/cluster.env"

  secret=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
  [[ $HTTP_TOKEN == true ]] && HTTP_SECRET=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
  trap on_exit EXIT
  trap 'exit 130' INT TERM
  UP_STARTED=1

  # The dht nodes first (the storages look up every upload in them), one after the other: each
  # joins the nodes started before it (its peers) and is ready once it has pulled its share.
  for ((i = 1; i <= DHT; i++)); do
    d=$DIR/dht-$i
    port=$((BASE_PORT + 599 + i))
    mkdir -p "$d"
    write_dht_conf "$d" "$port" $((BASE_PORT + 699 + i)) "$secret" "$dht"
    start_daemon "$d"
    wait_ready "$d"
    dht+="${dht:+,}$HOST:$port"
    dht_dirs+=("$d")
  done
  # From now on (restart) each node's peers are all the other nodes.
  for d in "${dht_dirs[@]+"${dht_dirs[@]}"}"; do set_dht_peers "$d" "$(dht_list "$d")"; done
  if ((DHT > 0)); then
    DEDUP=on
    DHT_SERVERS=$dht
  fi

  for ((i = 1; i <= TRACKERS; i++)); do
    d=$DIR/tracker-$i
    port=$((BASE_PORT + i - 1))
    metrics=$((BASE_PORT + 200 + i - 1))
    mkdir -p "$d"
    write_tracker_conf "$d" "$port" "$metrics" "$secret"
    trackers+="${trackers:+,}$HOST:$port"
    tracker_dirs+=("$d")
  done
  for d in "${tracker_dirs[@]}"; do start_daemon "$d"; done
  wait_ready "${tracker_dirs[@]}"

  k=0
  for ((g = 1; g <= GROUPS_N; g++)); do
    for ((m = 1; m <= PER_GROUP; m++)); do
      d=$DIR/storage-group$g-$m
      mkdir -p "$d"
      write_storage_conf "$d" "group$g" "$(storage_ip "$k")" $((BASE_PORT + 100 + k)) \
        $((BASE_PORT + 400 + k)) $((BASE_PORT + 200 + TRACKERS + k)) "$secret" "$trackers" \
        $((NGINX == 1 ? BASE_PORT + 300 + k : 0))
      storage_dirs+=("$d")
      k=$((k + 1))
    done
  done
  for d in "${storage_dirs[@]}"; do start_daemon "$d"; done
  wait_ready "${storage_dirs[@]}"
  if ((NGINX == 1)); then
    for d in "${storage_dirs[@]}"; do
      write_nginx_conf "$d" "$BASE_PORT"
      nginx_dirs+=("$NGINX_DIR")
    done
    for d in "${nginx_dirs[@]}"; do start_nginx "$d"; done
  fi
  wait_active
  # opsd last: it stores its files in the cluster, which now takes uploads.
  if ((OPSD == 1)); then
    d=$DIR/opsd-1
    mkdir -p "$d"
    write_opsd_conf "$d" $((BASE_PORT + 500)) "$trackers" \
      "$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')"
    start_daemon "$d"
    wait_ready "$d"
  fi
  write_env "$trackers"
  UP_STARTED=0

  print_summary
  echo "Every storage is ACTIVE on every tracker."
  echo "Environment: $DIR/cluster.env"
  echo "  DEPOT_TRACKERS=$trackers"
  ((DHT > 0)) && echo "  DEPOT_DHT=$dht (every storage has dedup = on)"
  ((NGINX == 1)) && echo "  DEPOT_HTTP=$(sed -n 's/^DEPOT_HTTP=//p' "$DIR/cluster.env")"
  if ((OPSD == 1)); then
    echo "  DEPOT_OPSD=$(sed -n 's/^DEPOT_OPSD=//p' "$DIR/cluster.env")"
    echo "  DEPOT_OPSD_USER=$(sed -n 's/^DEPOT_OPSD_USER=//p' "$DIR/cluster.env")" \
      "(its password: DEPOT_OPSD_PASSWORD in cluster.env)"
  fi
  echo "Try:  $BIN_DIR/depot --trackers $trackers status"
  echo "Stop: scripts/cluster.sh down --dir $(printf '%q' "$DIR")"
}

cmd_down() {
  load_dirs
  if ((${#DIRS[@]} == 0)); then
    note "no cluster in $DIR: nothing to stop"
    return 0
  fi
  lock_dir
  STOPPED=0
  stop_all
  note "stopped $STOPPED daemons in $DIR (data and logs kept)"
}

cmd_status() {
  local d trackers all_up=0
  load_dirs
  ((${#DIRS[@]} > 0)) || die "no cluster in $DIR (start one with: scripts/cluster.sh up --dir $DIR)"
  print_summary
  for d in "${DIRS[@]+"${DIRS[@]}"}"; do
    daemon_pid "$d" >/dev/null || all_up=1
  done
  trackers=$(tracker_list)
  echo
  echo "depot --trackers $trackers status:"
  if [[ -n $(running_daemons) ]]; then
    "$BIN_DIR/depot" --trackers "$trackers" status || true
  else
    echo "  (no daemon running)"
  fi
  return "$all_up"
}

cmd_restart() {
  local trackers
  local -a extra_bins=()
  # depot-opsd and depot-dhtd are needed only when the cluster has an opsd, dht nodes.
  compgen -G "$DIR/opsd-*/opsd.conf" >/dev/null && extra_bins+=(depot-opsd)
  compgen -G "$DIR/dht-*/dht.conf" >/dev/null && extra_bins+=(depot-dhtd)
  check_binaries "${extra_bins[@]+"${extra_bins[@]}"}"
  load_dirs
  ((${#DIRS[@]} > 0)) || die "no cluster in $DIR (start one with: scripts/cluster.sh up --dir $DIR)"
  lock_dir
  # dht nodes first, as in up, one after the other: each catches up from the nodes running (its
  # peers are all the other nodes) before the next starts. Then trackers, so that restarted
  # storages join at once; nginx after them (its fallback); opsd last, as in up, once the
  # storages it stores its files on are ACTIVE.
  restart_dht
  restart_daemons tracker
  restart_daemons storage
  restart_nginx
  wait_active
  restart_daemons opsd
  trackers=$(tracker_list)
  write_env "$trackers"
  print_summary
  echo "Every storage is ACTIVE on every tracker. Environment: $DIR/cluster.env"
}

# restart_daemons ROLE: starts the daemons of DIR of that role that do not run, with their
# existing configs, and waits until they are ready.
restart_daemons() {
  local role=$1 d
  local -a started=()
  load_dirs
  for d in "${DIRS[@]+"${DIRS[@]}"}"; do
    [[ $(role_of "$d") == "$role" ]] || continue
    daemon_pid "$d" >/dev/null && continue
    rm -f "$d/pid"
    start_daemon "$d"
    started+=("$d")
    note "${d##*/}: starting"
  done
  ((${#started[@]} > 0)) && wait_ready "${started[@]}"
  return 0
}

# restart: the dht nodes of DIR that do not run, with their existing configs, one after the other
# (a node is ready once it has pulled its share from the nodes that run).
restart_dht() {
  local d
  load_dirs
  for d in "${DIRS[@]+"${DIRS[@]}"}"; do
    [[ $(role_of "$d") == dht ]] || continue
    daemon_pid "$d" >/dev/null && continue
    rm -f "$d/pid"
    note "${d##*/}: starting"
    start_daemon "$d"
    wait_ready "$d"
  done
}

# restart: the nginx of DIR that do not run, with their existing configs (none with --no-nginx).
restart_nginx() {
  local d
  local -a stopped=()
  load_dirs
  for d in "${DIRS[@]+"${DIRS[@]}"}"; do
    [[ $(role_of "$d") == nginx ]] || continue
    daemon_pid "$d" >/dev/null && continue
    stopped+=("$d")
  done
  ((${#stopped[@]} > 0)) || return 0
  if ((NGINX == 0)); then
    note "--no-nginx: not starting ${stopped[*]##*/}"
    return 0
  fi
  check_nginx
  for d in "${stopped[@]}"; do
    note "${d##*/}: starting"
    start_nginx "$d"
  done
}

cmd_add_storage() {
  local d n max_n=-1 m max_m=0 group base trackers secret ref="" ip port metrics http running p
  local with_nginx nd
  local -a tracker_dirs=() ports=()
  check_binaries
  [[ -n $ADD_GROUP ]] || die "add-storage needs --group G (a number or a group name)"
  if [[ $ADD_GROUP =~ ^[0-9]+$ ]]; then
    group=group$((10#$ADD_GROUP))
  else
    group=$ADD_GROUP
  fi
  [[ $group =~ ^[A-Za-z0-9_-]{1,16}$ ]] || die "--group: not a valid group name: '$group'"
  load_dirs
  ((${#DIRS[@]} > 0)) || die "no cluster in $DIR (start one with: scripts/cluster.sh up --dir $DIR)"
  lock_dir
  running=$(running_daemons)
  [[ -n $running ]] || die "the cluster in $DIR is not running (scripts/cluster.sh restart --dir $DIR)"
  for d in "${DIRS[@]}"; do
    [[ $(role_of "$d") == tracker ]] && tracker_dirs+=("$d")
  done
  ((${#tracker_dirs[@]} > 0)) || die "no tracker in $DIR"
  # The layout of `up`: tracker-1 listens on the base port.
  base=$(conf_value "$DIR/tracker-1/tracker.conf" port)
  [[ $base =~ ^[0-9]+$ ]] || die "cannot read the base port from $DIR/tracker-1/tracker.conf"
  TRACKERS=${#tracker_dirs[@]}
  secret=$(conf_value "$DIR/tracker-1/tracker.conf" cluster_secret)
  trackers=$(tracker_list)
  for d in "${DIRS[@]}"; do
    [[ $(role_of "$d") == storage ]] || continue
    n=$(($(conf_value "$d/storage.conf" port) - base - 100))
    ((n > max_n)) && max_n=$n
    if [[ $(conf_value "$d/storage.conf" group_name) == "$group" ]]; then
      [[ -z $ref ]] && ref=$d/storage.conf
      m=${d##*-}
      [[ $m =~ ^[0-9]+$ ]] && ((10#$m > max_m)) && max_m=$((10#$m))
    fi
  done
  if [[ -z $ref ]]; then
    note "$group has no member yet: the new storage starts it"
    for d in "${DIRS[@]}"; do
      [[ $(role_of "$d") == storage ]] && { ref=$d/storage.conf; break; }
    done
  fi
  # Settings not given on the command line follow the group's existing members.
  if [[ -n $ref ]]; then
    # The HTTP token is the cluster's: always as the other members (cluster.env has one secret).
    HTTP_TOKEN=$(conf_value "$ref" http_token)
    HTTP_TOKEN=${HTTP_TOKEN:-false}
    HTTP_SECRET=$(conf_value "$ref" http_secret)
    [[ -n ${GIVEN[durable]:-} ]] || DURABLE=$(conf_value "$ref" durable_writes)
    [[ -n ${GIVEN[replication]:-} ]] || REPLICATION=$(conf_value "$ref" replication)
    [[ -n ${GIVEN[write_quorum]:-} ]] || WRITE_QUORUM=$(conf_value "$ref" write_quorum)
    if [[ -z ${GIVEN[trunk]:-} ]]; then
      TRUNK=$(conf_value "$ref" use_trunk_file)
      TRUNK=${TRUNK:-false}
      TRUNK_FILE_SIZE=$(conf_value "$ref" trunk_file_size)
    fi
    # Dedup is the group's (every member or none, doc/dedup.md), with the same dht nodes.
    DEDUP=$(conf_value "$ref" dedup)
    DEDUP=${DEDUP:-off}
    DHT_SERVERS=$(conf_value "$ref" dht_servers)
    DURABLE=${DURABLE:-false} REPLICATION=${REPLICATION:-async} WRITE_QUORUM=${WRITE_QUORUM:-2}
  fi
  n=$((max_n + 1))
  ((n <= 99 && TRACKERS + n <= 99)) ||
    die "no room for another storage (ports P+100..P+199, metrics P+200..P+299)"
  ip=$(storage_ip "$n")
  port=$((base + 100 + n))
  http=$((base + 400 + n))
  metrics=$((base + 200 + TRACKERS + n))
  # nginx in front of the new member when the cluster has nginx (and --no-nginx is not given).
  with_nginx=0
  if ((NGINX == 1)) && compgen -G "$DIR/nginx-*/nginx.conf" >/dev/null; then
    with_nginx=1
    check_nginx
  fi
  ports=("$port" "$metrics" "$http")
  ((with_nginx == 1)) && ports+=($((base + 300 + n)))
  for p in "${ports[@]}"; do
    port_in_use "$ip" "$p" && die "port $p on $ip is already in use"
  done
  d=$DIR/storage-$group-$((max_m + 1))
  [[ -e $d ]] && die "$d already exists"
  mkdir -p "$d"
  write_storage_conf "$d" "$group" "$ip" "$port" "$http" "$metrics" "$secret" "$trackers" \
    $((with_nginx == 1 ? base + 300 + n : 0))
  start_daemon "$d"
  note "${d##*/} ($ip:$port): starting"
  wait_ready "$d"
  if ((with_nginx == 1)); then
    write_nginx_conf "$d" "$base"
    nd=$NGINX_DIR
    start_nginx "$nd"
    note "${nd##*/} ($(nginx_listen "$nd")): serving ${d##*/} over HTTP"
  fi
  write_env "$trackers"
  if ((NO_WAIT == 1)); then
    note "${d##*/} serves; not waiting for it to catch up (see: scripts/cluster.sh status --dir $(printf '%q' "$DIR"))"
    return 0
  fi
  wait_active "$ADD_TIMEOUT_MS"
  print_summary
  echo "Every storage is ACTIVE on every tracker. Environment: $DIR/cluster.env"
}

case $CMD in
  up) cmd_up ;;
  add-storage) cmd_add_storage ;;
  down) cmd_down ;;
  status) cmd_status ;;
  restart) cmd_restart ;;
esac
