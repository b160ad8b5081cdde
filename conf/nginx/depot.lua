-- Depot: the Lua half of the nginx in front of a depot-storaged (doc/nginx.md), the faster
-- alternative to depot.js for nginx with Debian 12's libnginx-mod-http-lua (LuaJIT).
--
-- The nginx.conf that scripts/nginx-conf.sh generates from depot-storage.conf.in with
-- --token-check lua loads this file once (init_by_lua_block: `depot = dofile(...)`, then
-- depot.configure with the token secret and TTL) and, in each file location, after the method
-- and raw-path checks:
--   set $depot_disposition "";
--   set_by_lua_block $depot_refuse { return depot.check("M<NN>/") }
-- $depot_refuse is "" to serve the request, "400" (a query storaged would refuse as a bad
-- request) or "403" (the anti-leech token is missing, wrong or expired); check() also sets
-- $depot_disposition to the Content-Disposition of ?filename= when there is one.
--
-- Both reproduce storaged exactly (storage/http/http_util.cc: ParseTarget, PercentDecode,
-- CheckToken, ContentDisposition) and depot.js, so a file reads the same from nginx with
-- either module and from storaged. The query is the raw bytes of $args: Lua strings are bytes,
-- so a download name that is not UTF-8 is kept as it is.
--
-- This file is loaded once, when nginx reads its config (the workers inherit it; a reload loads
-- it again), and LuaJIT compiles it: the per-request cost is a few string operations and one
-- MD5 (ngx.md5, nginx's own C), a few microseconds. With the token on, depot.js costs about ten
-- times as much CPU per request and nginx serves 2 to 3.5 times fewer requests (doc/nginx.md,
-- Cost): njs's per-request VM pays for every object it creates (Buffer, hash).

local ngx = ngx
local byte, char, find, sub, gsub, lower, format =
    string.byte, string.char, string.find, string.sub, string.gsub, string.lower, string.format
local concat = table.concat
local tonumber = tonumber
local bor, bxor = bit.bor, bit.bxor

local MAX_QUERY = 2048     -- bytes; storaged: "query too long"
local MAX_TOKEN = 64       -- bytes of ?token=
local MAX_FILENAME = 255   -- decoded bytes of ?filename=
local MAX_TS_DIGITS = 18   -- storaged's Number(): digits only, at most 18

local M = {}

local secret = nil         -- the http_secret bytes; nil: the token is off
local ttl = 0              -- http_token_ttl in seconds

-- Called once, from init_by_lua_block. secret_hex: the hex of storage.conf's
-- http_secret, "" when http_token is off; ttl_seconds: http_token_ttl.
function M.configure(secret_hex, ttl_seconds)
    if secret_hex == nil or secret_hex == "" then
        secret = nil
    else
        assert(#secret_hex % 2 == 0 and not find(secret_hex, "[^0-9a-fA-F]"),
               "depot.configure: the secret must be hex")
        secret = gsub(secret_hex, "%x%x", function(h) return char(tonumber(h, 16)) end)
    end
    ttl = tonumber(ttl_seconds) or 0
end

-- storaged's ContentDisposition, as two tables indexed by byte value: what each byte becomes in
-- the quoted ASCII name (itself or '_') and in the RFC 5987 filename* (itself or "%XX").
local ASCII_OUT, ATTR_OUT = {}, {}
-- The value of a hex digit, indexed by byte value; nil for other bytes.
local HEX = {}
do
    local attr = "!#$&+-.^_`|~"
    for c = 0, 255 do
        local ch = char(c)
        local plain = c >= 0x20 and c < 0x7f and
                      ch ~= '"' and ch ~= "\\" and ch ~= "%" and ch ~= ";"
        ASCII_OUT[c] = plain and ch or "_"
        local alnum = (c >= 0x30 and c <= 0x39) or (c >= 0x41 and c <= 0x5a) or
                      (c >= 0x61 and c <= 0x7a)
        if alnum or (c < 0x80 and find(attr, ch, 1, true)) then
            ATTR_OUT[c] = ch
        else
            ATTR_OUT[c] = format("%%%02X", c)
        end
    end
    for c = 0x30, 0x39 do HEX[c] = c - 0x30 end
    for c = 0x41, 0x46 do HEX[c] = c - 0x41 + 10 end
    for c = 0x61, 0x66 do HEX[c] = c - 0x61 + 10 end
end

-- storaged's PercentDecode: '+' is a space, %XX a byte. nil for a bad escape (a '%' that is not
-- followed by two hex digits). Byte loops rather than gsub/patterns, which LuaJIT does not
-- compile.
local function percent_decode(raw)
    if not find(raw, "%", 1, true) and not find(raw, "+", 1, true) then return raw end
    local out, n, i, len = {}, 0, 1, #raw
    while i <= len do
        local c = byte(raw, i)
        n = n + 1
        if c == 0x2b then      -- '+'
            out[n] = " "
            i = i + 1
        elseif c == 0x25 then  -- '%'
            if i + 2 > len then return nil end
            local hi, lo = HEX[byte(raw, i + 1)], HEX[byte(raw, i + 2)]
            if hi == nil or lo == nil then return nil end
            out[n] = char(hi * 16 + lo)
            i = i + 3
        else
            out[n] = char(c)
            i = i + 1
        end
    end
    return concat(out, "", 1, n)
end

-- The Content-Disposition of a decoded, non-empty download name.
local function disposition(name)
    local ascii, attr = {}, {}
    for i = 1, #name do
        local c = byte(name, i)
        ascii[i] = ASCII_OUT[c]
        attr[i] = ATTR_OUT[c]
    end
    return 'attachment; filename="' .. concat(ascii) .. "\"; filename*=UTF-8''" .. concat(attr)
end

-- The whole check of one file request. remote_prefix: "M<NN>/", the store path part of the file
-- ID, that the location's regular expression fixed; the rest is $depot_file. Returns
-- $depot_refuse and sets $depot_disposition.
function M.check(remote_prefix)
    local args = ngx.var.args
    if args == nil or args == "" then
        return secret and "403" or ""
    end
    local n = #args
    if n > MAX_QUERY then return "400" end

    -- storaged's ParseTarget: pairs split on '&', the key up to the first '=', the last of
    -- repeated keys wins, a bad value of a known key makes the whole request bad, unknown keys
    -- (depot_hop...) are ignored.
    local token, ts, filename = "", -1, nil
    local start = 1
    while true do
        local amp = find(args, "&", start, true)
        local stop = amp and amp - 1 or n
        local kv = sub(args, start, stop)
        local eq = find(kv, "=", 1, true)
        local key, value
        if eq then
            key, value = sub(kv, 1, eq - 1), sub(kv, eq + 1)
        else
            key, value = kv, ""
        end
        if key == "token" then
            if #value > MAX_TOKEN then return "400" end
            token = value
        elseif key == "ts" then
            local len = #value
            if len == 0 or len > MAX_TS_DIGITS then return "400" end
            for i = 1, len do  -- a loop, not find(value, "[^0-9]"): LuaJIT compiles it
                local c = byte(value, i)
                if c < 0x30 or c > 0x39 then return "400" end
            end
            -- A double: exact for every ts that can be within a TTL of now; a larger one only
            -- has to compare as larger, which it does.
            ts = tonumber(value)
        elseif key == "filename" then
            local name = percent_decode(value)
            if name == nil or #name > MAX_FILENAME or find(name, "\0", 1, true) then
                return "400"
            end
            filename = name
        end
        if not amp then break end
        start = amp + 1
    end

    if filename ~= nil and filename ~= "" then
        ngx.var.depot_disposition = disposition(filename)
    end

    if secret == nil then return "" end
    -- storaged's CheckToken: lowercase hex MD5 of (file ID without the group + secret + ts in
    -- decimal), ts within ttl seconds of now on either side, the token compared without regard
    -- to the case of its hex digits, over its whole length.
    if token == "" or ts < 0 then return "403" end
    local now = ngx.time()
    if ttl <= 0 or ts + ttl < now or ts - ttl > now then return "403" end
    local want = ngx.md5(remote_prefix .. ngx.var.depot_file .. secret .. format("%d", ts))
    if #token ~= #want then return "403" end
    local got = lower(token)
    local diff = 0
    for i = 1, #want do
        diff = bor(diff, bxor(byte(got, i), byte(want, i)))
    end
    if diff ~= 0 then return "403" end
    return ""
end

return M
