#!/usr/bin/env bash
# Writes the nginx configs of Depot from the templates in conf/nginx/ (doc/nginx.md). `--help`
# says everything.
#
#   storage   one member's nginx: its store paths straight from disk, the anti-leech token and
#             ?filename= through Lua (conf/nginx/depot.lua) or njs (conf/nginx/depot.js), and a
#             fallback to its own storaged for a file not on disk (yet). Everything is read from
#             the member's storage.conf.
#   upstream  an nginx that balances reads over the members of one or more groups.
#
# A template is plain text: @NAME@ is replaced by a value, and the lines between the marker
# lines "# @BEGIN_X@" and "# @END_X@" are repeated (one copy per store path, group or member) or
# kept or dropped (FALLBACK). A placeholder the generator has no value for is an error.
set -euo pipefail
shopt -u patsub_replacement 2>/dev/null || true  # bash 5.2: '&' in ${v//p/r} is literal

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TEMPLATES=$ROOT/conf/nginx
NJS_MODULE_DEFAULT=/usr/lib/nginx/modules/ngx_http_js_module.so
LUA_MODULE_DEFAULT=/usr/lib/nginx/modules/ngx_http_lua_module.so

usage() {
  cat <<EOF
usage: scripts/nginx-conf.sh storage --storage-conf PATH --listen IP:PORT --out DIR [options]
       scripts/nginx-conf.sh upstream --group G --member IP:PORT [--member ...]
                                      [--group G2 --member ...] --listen IP:PORT --out DIR [options]

Writes a complete nginx.conf into DIR (made mode 600: it may hold the anti-leech secret), then
checks it with \`nginx -t\`. Start it with
  nginx -p DIR -c DIR/nginx.conf -e DIR/error.log
(pid in DIR/nginx.pid, error log DIR/error.log, temp files in DIR/tmp/). doc/nginx.md explains
the generated config.

storage: the nginx of ONE storage member, from conf/nginx/depot-storage.conf.in
  --storage-conf PATH  the member's storage.conf. Read: group_name, store_path0.. (base_path
                       when none), bind_addr and http_port (the storaged to fall back to),
                       http_token, http_secret, http_token_ttl, http_cache_max_age,
                       http_mime_types
  --listen IP:PORT     where this nginx listens
  --out DIR            writes DIR/nginx.conf, DIR/types.conf (the content types, from
                       http_mime_types), and DIR/depot.lua or DIR/depot.js (a copy of
                       conf/nginx/depot.lua or depot.js, by --token-check)
  --ready-file PATH    the storage's ready file, read for its real http_port when storage.conf
                       says http_port = 0 (default: ready.json beside storage.conf)
  --storaged-http IP:PORT
                       fall back to this address instead of bind_addr:http_port
  --token-check auto|lua|njs
                       what checks the query (anti-leech token, ?filename=): lua
                       (conf/nginx/depot.lua; with the token on, nginx serves 2 to 3.5 times
                       as many requests as with njs), njs (conf/nginx/depot.js), or auto (the
                       default, or \$DEPOT_TOKEN_CHECK): lua when its module is installed,
                       else njs. Both answer every request the same way
  --lua-module PATH    ngx_http_lua_module.so (default: \$DEPOT_LUA_MODULE, then
                       $LUA_MODULE_DEFAULT;
                       Debian package libnginx-mod-http-lua); NDK, ndk_http_module.so
                       (libnginx-mod-http-ndk), is loaded from the same folder
  --njs-module PATH    ngx_http_js_module.so (default: \$DEPOT_NJS_MODULE, then
                       $NJS_MODULE_DEFAULT; Debian package libnginx-mod-http-js)

upstream: a load balancer over the members of groups, from conf/nginx/depot-upstream.conf.in
  --group G            a group; the --member options after it are its members (repeatable)
  --member IP:PORT     a member's nginx (or its storaged's HTTP port)
  --listen IP:PORT     where the balancer listens
  --out DIR            writes DIR/nginx.conf

common options:
  --workers N|auto     worker_processes (default auto: one per core)
  --access-log         write DIR/access.log (default: no access log)
  --user USER          the \`user\` directive: the account the workers run as. Only meaningful
                       when nginx starts as root; default: the current user when run as root
                       (so that the workers can read what that user can), else none
  --nginx PATH         the nginx binary for the check (default: \$DEPOT_NGINX, then nginx on
                       PATH, then /usr/sbin/nginx)
  --no-test            do not run \`nginx -t\` on the result
  -h, --help           this help

examples:
  scripts/nginx-conf.sh storage --storage-conf /etc/depot/storage.conf \\
      --listen 0.0.0.0:80 --out /var/lib/depot/nginx
  scripts/nginx-conf.sh upstream --group group1 --member 10.0.0.1:80 --member 10.0.0.2:80 \\
      --group group2 --member 10.0.0.3:80 --member 10.0.0.4:80 --listen 0.0.0.0:8080 \\
      --out /var/lib/depot/nginx-lb
EOF
}

die() {
  echo "nginx-conf.sh: error: $*" >&2
  exit 1
}

warn() { echo "nginx-conf.sh: warning: $*" >&2; }

need_value() {
  (($# >= 2)) || die "$1 needs a value (see --help)"
}

# ---- reading storage.conf ---------------------------------------------------------------------

# conf_get FILE KEY: the value of the first `KEY = value` line, trimmed as storaged trims (a `#`
# starts a comment only at the beginning of a line). Prints nothing when the key is absent.
conf_get() {
  awk -v want="$2" '
    {
      line = $0
      sub(/^[ \t\r\v\f]+/, "", line)
      if (line == "" || substr(line, 1, 1) == "#") next
      eq = index(line, "=")
      if (eq == 0) next
      key = substr(line, 1, eq - 1)
      sub(/[ \t\r\v\f]+$/, "", key)
      if (key != want) next
      value = substr(line, eq + 1)
      sub(/^[ \t\r\v\f]+/, "", value)
      sub(/[ \t\r\v\f]+$/, "", value)
      print value
      exit
    }' "$1"
}

# The store paths of FILE, "INDEX PATH" per line in index order (store_path0, store_path1...).
conf_store_paths() {
  awk '
    {
      line = $0
      sub(/^[ \t\r\v\f]+/, "", line)
      if (substr(line, 1, 1) == "#") next
      eq = index(line, "=")
      if (eq == 0) next
      key = substr(line, 1, eq - 1)
      sub(/[ \t\r\v\f]+$/, "", key)
      if (key !~ /^store_path[0-9]+$/) next
      value = substr(line, eq + 1)
      sub(/^[ \t\r\v\f]+/, "", value)
      sub(/[ \t\r\v\f]+$/, "", value)
      print substr(key, 11) + 0, value
    }' "$1" | sort -n -k1,1
}

# A storage.conf duration (plain seconds or an s, m or h suffix) in seconds.
duration_seconds() {
  local key=$1 v=$2
  [[ $v =~ ^([0-9]{1,9})([smh]?)$ ]] || die "$key: not a duration: '$v' (use 900, 30s, 15m, 1h)"
  case ${BASH_REMATCH[2]} in
    m) echo $((10#${BASH_REMATCH[1]} * 60)) ;;
    h) echo $((10#${BASH_REMATCH[1]} * 3600)) ;;
    *) echo $((10#${BASH_REMATCH[1]})) ;;
  esac
}

conf_bool() {
  local key=$1 v=${2,,}
  case $v in
    true | on | yes | 1) echo true ;;
    false | off | no | 0 | "") echo false ;;
    *) die "$key: not a boolean: '$2'" ;;
  esac
}

# ---- checks of values that go into nginx.conf -------------------------------------------------

# A path written inside "..." in nginx.conf: absolute, and none of the characters nginx would
# read as an escape, a variable or the end of the string.
check_path() {
  local what=$1 p=$2
  [[ $p == /* ]] || die "$what must be an absolute path, got '$p'"
  [[ $p != *[\"\\\$]* && $p != *[[:cntrl:]]* ]] ||
    die "$what: a path with \", \\, \$ or a control character cannot go into nginx.conf: '$p'"
}

check_listen() {
  local what=$1 a=$2 port
  if [[ $a =~ ^([0-9]{1,3}(\.[0-9]{1,3}){3}|\*|\[[0-9A-Fa-f:.]+\]):([0-9]{1,5})$ ]]; then
    port=${BASH_REMATCH[3]}
  else
    die "$what must be IP:PORT (an IPv4 address, [IPv6] or *), got '$a'"
  fi
  ((10#$port >= 1 && 10#$port <= 65535)) || die "$what: port out of range in '$a'"
}

check_group() {
  [[ $1 =~ ^[A-Za-z0-9_-]{1,16}$ ]] || die "not a valid group name (1-16 of A-Z a-z 0-9 _ -): '$1'"
}

# ---- templates --------------------------------------------------------------------------------

# subst TEXT NAME VALUE [NAME VALUE...]: TEXT with every @NAME@ replaced by VALUE, literally.
subst() {
  local text=$1 name value
  shift
  while (($# >= 2)); do
    name=$1 value=$2
    shift 2
    text=${text//"@$name@"/"$value"}
  done
  printf '%s' "$text"
}

# section_part NAME PART: from stdin, the lines before (pre), between (body) or after (post) the
# first pair of "# @BEGIN_NAME@" / "# @END_NAME@" marker lines, without the markers.
section_part() {
  awk -v name="$1" -v part="$2" '
    BEGIN { state = "pre" }
    state == "pre" && $0 ~ "^[ \t]*# @BEGIN_" name "@[ \t]*$" { state = "body"; next }
    state == "body" && $0 ~ "^[ \t]*# @END_" name "@[ \t]*$" { state = "post"; next }
    state == part { print }'
}

has_section() {
  grep -qE "^[[:space:]]*# @BEGIN_$2@[[:space:]]*\$" <<<"$1"
}

# keep_section TEXT NAME KEEP: TEXT without the marker lines of NAME, and with KEEP=false also
# without the lines between them.
keep_section() {
  awk -v name="$2" -v keep="$3" '
    $0 ~ "^[ \t]*# @BEGIN_" name "@[ \t]*$" { inside = 1; next }
    $0 ~ "^[ \t]*# @END_" name "@[ \t]*$" { inside = 0; next }
    !inside || keep == "true" { print }' <<<"$1"
}

# repeat_section TEXT NAME FUNCTION: every NAME section of TEXT replaced by what FUNCTION BODY
# prints (FUNCTION writes the copies of the section's body).
repeat_section() {
  local text=$1 name=$2 fn=$3 pre body post
  # Each part keeps its trailing newlines (the x), so blank lines around a section stay.
  while has_section "$text" "$name"; do
    pre=$(section_part "$name" pre <<<"$text" && echo x)
    body=$(section_part "$name" body <<<"$text")
    post=$(section_part "$name" post <<<"$text" && echo x)
    text="${pre%x}$("$fn" "$body")"$'\n'"${post%x}"
  done
  printf '%s\n' "$text"
}

# Fails when TEXT still holds a placeholder: a template and this script that do not agree.
check_rendered() {
  local left
  left=$(grep -oE '@[A-Z][A-Z0-9_]*@' <<<"$1" | sort -u | paste -sd' ' || true)
  [[ -z $left ]] || die "template placeholders without a value: $left (template and generator disagree)"
}

# ---- common options ---------------------------------------------------------------------------

CMD=""
OUT=""
LISTEN=""
WORKERS=auto
ACCESS_LOG=0
USER_NAME=""
USER_GIVEN=0
NGINX_BIN=${DEPOT_NGINX:-}
TEST=1
STORAGE_CONF=""
READY_FILE=""
STORAGED_HTTP=""
NJS_MODULE=${DEPOT_NJS_MODULE:-$NJS_MODULE_DEFAULT}
LUA_MODULE=${DEPOT_LUA_MODULE:-$LUA_MODULE_DEFAULT}
TOKEN_CHECK=${DEPOT_TOKEN_CHECK:-auto}
declare -a GROUP_NAMES=()
declare -A GROUP_MEMBERS=()  # group -> "ip:port ip:port ..."

find_nginx() {
  if [[ -n $NGINX_BIN ]]; then
    [[ -x $NGINX_BIN ]] || die "--nginx / DEPOT_NGINX: not an executable: $NGINX_BIN"
  elif command -v nginx >/dev/null 2>&1; then
    NGINX_BIN=$(command -v nginx)
  elif [[ -x /usr/sbin/nginx ]]; then
    NGINX_BIN=/usr/sbin/nginx
  fi
}

# The `user` line: see --user in the help.
user_line() {
  local group
  if ((USER_GIVEN == 0)) && ((EUID == 0)); then
    USER_NAME=$(id -un)
  fi
  if [[ -z $USER_NAME ]]; then
    echo "# user: none (nginx runs its workers as the user that starts it)."
    return
  fi
  [[ $USER_NAME =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]*$ ]] || die "--user: not a user name: '$USER_NAME'"
  group=$(id -gn "$USER_NAME" 2>/dev/null) || die "--user: no such user: $USER_NAME"
  echo "user $USER_NAME $group;"
}

access_log_line() {
  if ((ACCESS_LOG == 1)); then
    echo "access_log \"$OUT/access.log\" combined;"
  else
    echo "access_log off;  # scripts/nginx-conf.sh --access-log turns it on"
  fi
}

generated_line() {
  echo "Generated by scripts/nginx-conf.sh $CMD on $(date -u +%Y-%m-%dT%H:%M:%SZ)$1."
}

# Writes TEXT to OUT/nginx.conf (mode 600) through a temporary file.
write_conf() {
  local text=$1
  check_rendered "$text"
  (
    umask 077
    printf '%s\n' "$text" >"$OUT/nginx.conf.tmp"
  )
  chmod 600 "$OUT/nginx.conf.tmp"
  mv -f "$OUT/nginx.conf.tmp" "$OUT/nginx.conf"
}

prepare_out() {
  [[ -n $OUT ]] || die "--out DIR is required"
  OUT=$(realpath -m "$OUT")
  check_path --out "$OUT"
  mkdir -p "$OUT/tmp"
}

test_conf() {
  local out had_pid=0
  ((TEST == 1)) || return 0
  find_nginx
  if [[ -z $NGINX_BIN ]]; then
    warn "nginx not found: $OUT/nginx.conf not checked (install nginx, or --no-test)"
    return 0
  fi
  # nginx -t creates an empty pid file to see that it can: remove it unless it was there.
  [[ -e $OUT/nginx.pid ]] && had_pid=1
  if ! out=$("$NGINX_BIN" -t -q -p "$OUT" -c "$OUT/nginx.conf" -e "$OUT/error.log" 2>&1); then
    echo "$out" >&2
    die "nginx -t refused $OUT/nginx.conf (above)"
  fi
  if ((had_pid == 0)) && [[ -f $OUT/nginx.pid && ! -s $OUT/nginx.pid ]]; then
    rm -f "$OUT/nginx.pid"
  fi
  # -q keeps quiet unless something is wrong; warnings still show.
  [[ -z $out ]] || echo "$out" >&2
}

# ---- storage ----------------------------------------------------------------------------------

# Writes OUT/types.conf, an nginx `types { }` block, from a mime.types file (storaged's format:
# "type ext ext ...", `#` comments, or nginx's own). As storaged: extensions are lower-cased and
# the last type given for an extension wins. Only extensions a file ID can have (1 to 6 of
# a-z 0-9 _ -) are kept; a type nginx could not read is skipped with a warning.
write_types() {
  local src=$1 from
  from=${src:-"the built-in table of storaged"}
  (
    umask 022
    {
      echo "# Content types for Depot file IDs. $(generated_line " from $from")"
      echo "types {"
      if [[ -n $src ]]; then
        cat -- "$src"
      else
        # storaged's built-in table (storage/http/http_server.cc kBuiltinMime), used when
        # http_mime_types is empty.
        printf '%s\n' "text/plain txt" "image/jpeg jpg jpeg" "image/png png" "image/gif gif" \
          "video/mp4 mp4" "application/json json" "text/html html htm"
      fi | awk '
        {
          line = $0
          sub(/#.*/, "", line)
          gsub(/[;{}\t\r]/, " ", line)
          n = split(line, w, " ")
          first = 1
          if (n >= 1 && w[1] == "types") first = 2
          if (n - first + 1 < 2 || index(w[first], "/") == 0) next
          type = w[first]
          if (type !~ /^[A-Za-z0-9][A-Za-z0-9!#&^_.+-]*\/[A-Za-z0-9][A-Za-z0-9!#&^_.+-]*$/) {
            printf "nginx-conf.sh: warning: skipping content type \"%s\"\n", type > "/dev/stderr"
            next
          }
          for (i = first + 1; i <= n; i++) {
            ext = tolower(w[i])
            if (ext !~ /^[a-z0-9_-]+$/ || length(ext) > 6) continue
            if (!(ext in types)) order[++count] = ext
            types[ext] = type
          }
        }
        END { for (i = 1; i <= count; i++) printf "    %-40s %s;\n", types[order[i]], order[i] }'
      echo "}"
    } >"$OUT/types.conf.tmp"
  )
  mv -f "$OUT/types.conf.tmp" "$OUT/types.conf"
}

STORE_INDEXES=()
STORE_DIRS=()
GROUP=""
NDK_MODULE=""

# Settles TOKEN_CHECK (auto: lua when its module and NDK are installed, else njs) and checks
# that the chosen module is there.
pick_token_check() {
  local lua_ok=0 ndk
  ndk=$(dirname -- "$LUA_MODULE")/ndk_http_module.so
  [[ -f $LUA_MODULE && -f $ndk ]] && lua_ok=1
  if [[ $TOKEN_CHECK == auto ]]; then
    if ((lua_ok == 1)); then
      TOKEN_CHECK=lua
    elif [[ -f $NJS_MODULE ]]; then
      TOKEN_CHECK=njs
    else
      die "neither the Lua module ($LUA_MODULE with ndk_http_module.so beside it) nor njs" \
        "($NJS_MODULE) is installed (libnginx-mod-http-lua or libnginx-mod-http-js:" \
        "scripts/install-deps.sh; or --lua-module / --njs-module)"
    fi
  fi
  case $TOKEN_CHECK in
    lua)
      ((lua_ok == 1)) ||
        die "--token-check lua: $LUA_MODULE or $ndk not found (install libnginx-mod-http-lua:" \
          "scripts/install-deps.sh; or --lua-module)"
      check_path --lua-module "$LUA_MODULE"
      check_path "NDK module" "$ndk"
      NDK_MODULE=$ndk
      ;;
    njs)
      [[ -f $NJS_MODULE ]] ||
        die "njs module not found: $NJS_MODULE (install libnginx-mod-http-js: scripts/install-deps.sh; or --njs-module)"
      check_path --njs-module "$NJS_MODULE"
      ;;
    *) die "--token-check must be auto, lua or njs, got '$TOKEN_CHECK'" ;;
  esac
}

render_store_paths() {
  local body=$1 i hex
  for i in "${!STORE_INDEXES[@]}"; do
    printf -v hex '%02X' "${STORE_INDEXES[$i]}"
    subst "$body" STORE_INDEX "${STORE_INDEXES[$i]}" STORE_HEX "$hex" STORE_PATH "${STORE_DIRS[$i]}" \
      GROUP "$GROUP"
    echo
  done
}

cmd_storage() {
  local conf base idx path expect=0 bind port http token secret ttl cache mime secret_hex=""
  local fallback=true storaged="" refuse="" text
  [[ -n $STORAGE_CONF ]] || die "--storage-conf PATH is required"
  [[ -f $STORAGE_CONF && -r $STORAGE_CONF ]] || die "cannot read --storage-conf $STORAGE_CONF"
  [[ -n $LISTEN ]] || die "--listen IP:PORT is required"
  check_listen --listen "$LISTEN"
  ((${#GROUP_NAMES[@]} == 0)) || die "--group and --member belong to the upstream command"
  conf=$(realpath "$STORAGE_CONF")
  pick_token_check

  GROUP=$(conf_get "$conf" group_name)
  [[ -n $GROUP ]] || die "$conf: group_name is not set"
  check_group "$GROUP"

  while read -r idx path; do
    [[ -n ${idx:-} ]] || continue
    ((idx == expect)) || die "$conf: store paths must be store_path0, store_path1... without gaps (found store_path$idx)"
    [[ -n $path ]] || die "$conf: store_path$idx is empty"
    expect=$((expect + 1))
    STORE_INDEXES+=("$idx")
    STORE_DIRS+=("$path")
  done < <(conf_store_paths "$conf")
  if ((${#STORE_DIRS[@]} == 0)); then
    base=$(conf_get "$conf" base_path)
    [[ -n $base ]] || die "$conf: neither store_path0 nor base_path is set"
    STORE_INDEXES=(0)
    STORE_DIRS=("$base")
  fi
  ((${#STORE_DIRS[@]} <= 256)) || die "$conf: more than 256 store paths"
  for idx in "${!STORE_DIRS[@]}"; do
    path=${STORE_DIRS[$idx]}
    [[ $path == /* ]] || warn "store_path$idx is relative ('$path'): taken from the current directory"
    path=$(realpath -m "$path")
    check_path "store_path$idx" "$path"
    [[ -d $path/data ]] || warn "$path/data does not exist (yet): storaged creates it"
    STORE_DIRS[idx]=$path
  done

  # The storaged to fall back to.
  http=$(conf_get "$conf" http_port)
  http=${http:-8888}
  [[ $http =~ ^-?[0-9]+$ ]] || die "$conf: http_port is not a number: '$http'"
  if [[ -n $STORAGED_HTTP ]]; then
    check_listen --storaged-http "$STORAGED_HTTP"
    storaged=$STORAGED_HTTP
  elif ((http == -1)); then
    fallback=false
    warn "$conf: http_port = -1 (storaged's HTTP is off): no fallback, a file not on disk here is 404"
  else
    if ((http == 0)); then
      READY_FILE=${READY_FILE:-$(dirname "$conf")/ready.json}
      [[ -f $READY_FILE ]] ||
        die "$conf: http_port = 0 and no ready file $READY_FILE (start storaged first, or --ready-file / --storaged-http)"
      http=$(grep -o '"http_port":[0-9]*' "$READY_FILE" | head -n 1 | cut -d: -f2)
      [[ $http =~ ^[0-9]+$ ]] || die "$READY_FILE has no http_port"
      ((http > 0)) || die "$READY_FILE: http_port is $http"
    fi
    bind=$(conf_get "$conf" bind_addr)
    [[ -z $bind || $bind == 0.0.0.0 ]] && bind=127.0.0.1
    storaged=$bind:$http
    check_listen "bind_addr:http_port of $conf" "$storaged"
  fi

  # The anti-leech token.
  token=$(conf_bool http_token "$(conf_get "$conf" http_token)")
  ttl=$(conf_get "$conf" http_token_ttl)
  ttl=$(duration_seconds http_token_ttl "${ttl:-900}")
  if [[ $token == true ]]; then
    secret=$(conf_get "$conf" http_secret)
    ((${#secret} >= 8)) || die "$conf: http_token is on but http_secret is shorter than 8 characters"
    secret_hex=$(printf '%s' "$secret" | od -An -v -tx1 | tr -d ' \n')
    refuse=403
  fi
  cache=$(conf_get "$conf" http_cache_max_age)
  cache=$(duration_seconds http_cache_max_age "${cache:-31536000}")

  mime=$(conf_get "$conf" http_mime_types)
  if [[ -n $mime ]]; then
    mime=$(realpath -m "$mime")
    [[ -r $mime ]] || die "$conf: cannot read http_mime_types $mime"
  fi

  prepare_out
  write_types "$mime"
  # The script of the module that checks the query; the other one's copy, from an earlier
  # generation, is removed.
  local script=depot.js other=depot.lua
  [[ $TOKEN_CHECK == lua ]] && script=depot.lua other=depot.js
  (
    umask 022
    cp -- "$TEMPLATES/$script" "$OUT/$script.tmp"
  )
  mv -f "$OUT/$script.tmp" "$OUT/$script"
  rm -f "$OUT/$other"

  text=$(<"$TEMPLATES/depot-storage.conf.in")
  text=$(repeat_section "$text" STORE_PATH render_store_paths)
  text=$(keep_section "$text" FALLBACK "$fallback")
  text=$(keep_section "$text" LUA "$([[ $TOKEN_CHECK == lua ]] && echo true || echo false)")
  text=$(keep_section "$text" NJS "$([[ $TOKEN_CHECK == njs ]] && echo true || echo false)")
  text=$(subst "$text" \
    GENERATED "$(generated_line " from $conf")" \
    NJS_MODULE "$NJS_MODULE" \
    LUA_MODULE "$LUA_MODULE" \
    NDK_MODULE "$NDK_MODULE" \
    USER_LINE "$(user_line)" \
    WORKERS "$WORKERS" \
    PREFIX "$OUT" \
    ACCESS_LOG "$(access_log_line)" \
    REFUSE_WITHOUT_QUERY "$refuse" \
    STORAGED_HTTP "$storaged" \
    LISTEN "$LISTEN" \
    TOKEN_SECRET_HEX "$secret_hex" \
    TOKEN_TTL "$ttl" \
    CACHE_MAX_AGE "$cache" \
    GROUP "$GROUP")
  write_conf "$text"
  test_conf
  echo "$OUT/nginx.conf: $GROUP, ${#STORE_DIRS[@]} store path(s), listen $LISTEN," \
    "fallback ${storaged:-none}, token $([[ $token == true ]] && echo on || echo off)," \
    "query checked by $TOKEN_CHECK"
}

# ---- upstream ---------------------------------------------------------------------------------

CUR_GROUP=""

render_members() {
  local body=$1 m
  for m in ${GROUP_MEMBERS[$CUR_GROUP]}; do
    subst "$body" MEMBER "$m"
    echo
  done
}

render_groups() {
  local body=$1 g copy
  for g in "${GROUP_NAMES[@]}"; do
    CUR_GROUP=$g
    copy=$(subst "$body" GROUP "$g")
    repeat_section "$copy" MEMBER render_members
  done
}

cmd_upstream() {
  local g text
  [[ -z $STORAGE_CONF ]] || die "--storage-conf belongs to the storage command"
  ((${#GROUP_NAMES[@]} > 0)) || die "upstream needs at least one --group G with its --member IP:PORT"
  for g in "${GROUP_NAMES[@]}"; do
    [[ -n ${GROUP_MEMBERS[$g]:-} ]] || die "--group $g has no --member"
  done
  [[ -n $LISTEN ]] || die "--listen IP:PORT is required"
  check_listen --listen "$LISTEN"
  prepare_out
  text=$(<"$TEMPLATES/depot-upstream.conf.in")
  text=$(repeat_section "$text" GROUP render_groups)
  text=$(subst "$text" \
    GENERATED "$(generated_line "")" \
    USER_LINE "$(user_line)" \
    WORKERS "$WORKERS" \
    PREFIX "$OUT" \
    ACCESS_LOG "$(access_log_line)" \
    LISTEN "$LISTEN")
  write_conf "$text"
  test_conf
  for g in "${GROUP_NAMES[@]}"; do
    echo "$OUT/nginx.conf: $g over ${GROUP_MEMBERS[$g]}, listen $LISTEN"
  done
}

# ---- main -------------------------------------------------------------------------------------

while (($# > 0)); do
  case $1 in
    storage | upstream)
      [[ -z $CMD ]] || die "two commands given: $CMD and $1"
      CMD=$1
      ;;
    --storage-conf) need_value "$@"; STORAGE_CONF=$2; shift ;;
    --listen) need_value "$@"; LISTEN=$2; shift ;;
    --out) need_value "$@"; OUT=$2; shift ;;
    --workers) need_value "$@"; WORKERS=$2; shift ;;
    --access-log) ACCESS_LOG=1 ;;
    --ready-file) need_value "$@"; READY_FILE=$2; shift ;;
    --storaged-http) need_value "$@"; STORAGED_HTTP=$2; shift ;;
    --njs-module) need_value "$@"; NJS_MODULE=$2; shift ;;
    --lua-module) need_value "$@"; LUA_MODULE=$2; shift ;;
    --token-check) need_value "$@"; TOKEN_CHECK=$2; shift ;;
    --user) need_value "$@"; USER_NAME=$2; USER_GIVEN=1; shift ;;
    --nginx) need_value "$@"; NGINX_BIN=$2; shift ;;
    --no-test) TEST=0 ;;
    --group)
      need_value "$@"
      check_group "$2"
      [[ -z ${GROUP_MEMBERS[$2]+x} ]] || die "--group $2 given twice"
      GROUP_NAMES+=("$2")
      GROUP_MEMBERS[$2]=""
      shift
      ;;
    --member)
      need_value "$@"
      ((${#GROUP_NAMES[@]} > 0)) || die "--member $2 before any --group"
      check_listen --member "$2"
      g=${GROUP_NAMES[-1]}
      GROUP_MEMBERS[$g]+="${GROUP_MEMBERS[$g]:+ }$2"
      shift
      ;;
    -h | --help | help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done

[[ -n $CMD ]] || { usage >&2; exit 2; }
if [[ $WORKERS != auto ]]; then
  [[ $WORKERS =~ ^[0-9]{1,4}$ ]] || die "--workers must be auto or 1..1024, got '$WORKERS'"
  ((10#$WORKERS >= 1 && 10#$WORKERS <= 1024)) || die "--workers must be auto or 1..1024, got '$WORKERS'"
  WORKERS=$((10#$WORKERS))
fi

case $CMD in
  storage) cmd_storage ;;
  upstream) cmd_upstream ;;
esac
