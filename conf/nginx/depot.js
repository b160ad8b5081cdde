// Depot: the njs half of the nginx in front of a depot-storaged (doc/nginx.md).
//
// The nginx.conf that scripts/nginx-conf.sh generates from depot-storage.conf.in loads this file
// (js_import) and reads two variables from it (js_set):
//   $depot_js_refuse       "" to serve the request, "400" (a query storaged would refuse as a bad
//                          request) or "403" (the anti-leech token is missing, wrong or expired)
//   $depot_js_disposition  the Content-Disposition of ?filename=, "" without it
// Both reproduce storaged exactly (storage/http/http_util.cc: ParseTarget, PercentDecode,
// CheckToken, ContentDisposition), so a file reads the same from nginx and from storaged.
//
// The query is taken from the raw bytes of $args, not from r.args: r.args decodes values into
// JavaScript strings, which cannot hold a download name that is not valid UTF-8, and keeps the
// first of repeated keys where storaged keeps the last.
//
// Inputs set by the generated config (js_var): $depot_token_secret, the hex of storage.conf's
// http_secret (empty: http_token is off) and $depot_token_ttl, http_token_ttl in seconds.
//
// Written for njs 0.7.9 (Debian 12's libnginx-mod-http-js): ES5 plus let/const, no regex on
// bytes. Each request runs in its own copy of the VM: nothing here is shared between requests.

const crypto = require('crypto');

const MAX_QUERY = 2048;     // bytes; storaged: "query too long"
const MAX_TOKEN = 64;       // bytes of ?token=
const MAX_FILENAME = 255;   // decoded bytes of ?filename=
const MAX_TS_DIGITS = 18;   // storaged's Number(): digits only, at most 18

function hexValue(c) {
    if (c >= 0x30 && c <= 0x39) return c - 0x30;
    if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
    if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
    return -1;
}

// Bytes [from, to) of `buf` as a string of one character per byte.
function latin1(buf, from, to) {
    let s = '';
    for (let i = from; i < to; i++) s += String.fromCharCode(buf[i]);
    return s;
}

// storaged's PercentDecode over bytes [from, to): '+' is a space, %XX a byte. An array of byte
// values, or null for a bad escape.
function percentDecode(buf, from, to) {
    const out = [];
    for (let i = from; i < to; i++) {
        const c = buf[i];
        if (c === 0x2b) {
            out.push(0x20);
        } else if (c === 0x25) {
            if (i + 2 >= to) return null;
            const hi = hexValue(buf[i + 1]);
            const lo = hexValue(buf[i + 2]);
            if (hi < 0 || lo < 0) return null;
            out.push(hi * 16 + lo);
            i += 2;
        } else {
            out.push(c);
        }
    }
    return out;
}

// The query of the request being handled, parsed once for both variables. Each request has its
// own copy of the VM, so this never outlives the request; it is keyed by the request object all
// the same.
let parsed = null;

function query(r) {
    if (parsed === null || parsed.r !== r) parsed = {r: r, q: parseQuery(r)};
    return parsed.q;
}

// The query parameters storaged knows, parsed as storaged's ParseTarget does: pairs split on '&',
// the key is everything before the first '=', the last of repeated keys wins, and a bad value of
// a known key makes the whole request bad. Unknown keys (depot_hop...) are ignored.
function parseQuery(r) {
    const q = {bad: false, token: '', ts: -1, filename: null};
    const raw = r.rawVariables.args;
    if (raw === undefined || raw.length === 0) return q;
    if (raw.length > MAX_QUERY) {
        q.bad = true;
        return q;
    }
    let start = 0;
    for (;;) {
        let end = start;
        while (end < raw.length && raw[end] !== 0x26) end++;  // '&'
        let eq = start;
        while (eq < end && raw[eq] !== 0x3d) eq++;  // '='
        const key = latin1(raw, start, eq);
        const vfrom = eq < end ? eq + 1 : end;
        if (key === 'token') {
            if (end - vfrom > MAX_TOKEN) {
                q.bad = true;
                return q;
            }
            q.token = latin1(raw, vfrom, end);
        } else if (key === 'ts') {
            const digits = latin1(raw, vfrom, end);
            if (digits.length === 0 || digits.length > MAX_TS_DIGITS || !/^[0-9]+$/.test(digits)) {
                q.bad = true;
                return q;
            }
            q.ts = parseInt(digits, 10);
        } else if (key === 'filename') {
            const name = percentDecode(raw, vfrom, end);
            if (name === null || name.length > MAX_FILENAME || name.indexOf(0) >= 0) {
                q.bad = true;
                return q;
            }
            q.filename = name;
        }
        if (end >= raw.length) break;
        start = end + 1;
    }
    return q;
}

// FastDFS's anti-leech token, as storaged's CheckToken: lowercase hex MD5 of (file ID without
// the group + secret + ts in decimal), ts within ttl seconds of now on either side, the token
// compared without regard to the case of its hex digits.
function tokenOk(r, q, secretHex) {
    if (q.token.length === 0 || q.ts < 0) return false;
    const ttl = parseInt(r.variables.depot_token_ttl, 10);
    const now = Math.floor(Date.now() / 1000);
    if (!(ttl > 0) || q.ts + ttl < now || q.ts - ttl > now) return false;
    const uri = r.uri;  // the checked, normalized path: /<group>/M00/XX/YY/name
    const remote = uri.substring(uri.indexOf('/', 1) + 1);
    const want = crypto.createHash('md5')
                     .update(remote)
                     .update(Buffer.from(secretHex, 'hex'))
                     .update(String(q.ts))
                     .digest('hex');
    const got = q.token.toLowerCase();
    if (got.length !== want.length) return false;
    let diff = 0;
    for (let i = 0; i < want.length; i++) diff |= want.charCodeAt(i) ^ got.charCodeAt(i);
    return diff === 0;
}

// $depot_js_refuse: "400", "403" or "" (serve).
function refuse(r) {
    const q = query(r);
    if (q.bad) return '400';
    const secretHex = r.variables.depot_token_secret;
    if (secretHex && !tokenOk(r, q, secretHex)) return '403';
    return '';
}

// The characters of RFC 5987 attr-char that storaged keeps as they are in filename*.
const ATTR_CHARS = "!#$&+-.^_`|~";

function isAlnum(c) {
    return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

// $depot_js_disposition: storaged's ContentDisposition of the decoded ?filename= bytes. ASCII
// only, whatever the name holds.
function disposition(r) {
    const q = query(r);
    if (q.bad || q.filename === null || q.filename.length === 0) return '';
    let ascii = '';
    let encoded = '';
    for (let i = 0; i < q.filename.length; i++) {
        const c = q.filename[i];
        const plain = c >= 0x20 && c < 0x7f && c !== 0x22 && c !== 0x5c && c !== 0x25 && c !== 0x3b;
        ascii += plain ? String.fromCharCode(c) : '_';
        if (isAlnum(c) || (c < 0x80 && ATTR_CHARS.indexOf(String.fromCharCode(c)) >= 0)) {
            encoded += String.fromCharCode(c);
        } else {
            encoded += '%' + (c < 16 ? '0' : '') + c.toString(16).toUpperCase();
        }
    }
    return 'attachment; filename="' + ascii + '"; filename*=UTF-8\'\'' + encoded;
}

export default {refuse, disposition};
