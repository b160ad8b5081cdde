#!/usr/bin/python3
"""HTTP reads through a real nginx in front of real storaged (issue 3), with the clusters that
scripts/cluster.sh starts: the nginx config comes from scripts/nginx-conf.sh, as a user gets it.

Every check runs against the member's nginx and against its storaged's own HTTP port:
byte-identical GETs, HEAD, single and multi-range, 304s, content types and download names, the
same ETag and Last-Modified from every server; bad requests (each gets 4xx, nothing outside the
store paths is read, the server keeps serving); a video seek; a file not yet replicated read
through the other member's nginx (redirected or proxied, never 404); signed URLs accepted and
unsigned, wrong or expired ones refused.

Run by ctest (tests/integration/CMakeLists.txt) with DEPOT_BIN_DIR set to the build's binaries;
by hand: /usr/bin/python3 tests/integration/nginx_test.py [-v]. Clusters use base ports
DEPOT_NGINX_TEST_PORT (default 25000) to +2999, on 127.0.0.x.
"""
import hashlib
import http.client
import os
import random
import re
import socket
import time
import unittest

import depot_cluster

BASE_PORT = int(os.environ.get("DEPOT_NGINX_TEST_PORT", "25000"))


class Cluster(depot_cluster.Cluster):
    """A cluster with nginx in front of every storage (cluster.sh's default)."""

    def __init__(self, base_port, *args):
        super().__init__(base_port, *args, prefix="depot-nginx-test-")

    def load_env(self):
        super().load_env()
        self.nginx = [a for a in self.vars["DEPOT_HTTP"].split(",") if a]
        self.storaged = [a for a in self.vars["DEPOT_STORAGE_HTTP"].split(",") if a]

    def upload(self, data, ext):
        path = os.path.join(self.dir, "upload." + ext)
        with open(path, "wb") as f:
            f.write(data)
        return self.depot("upload", path)

    def storage_conf(self, n):
        for name in sorted(os.listdir(self.dir)):
            if name.startswith("storage-") and os.path.exists(
                    os.path.join(self.dir, name, "storage.conf")):
                if n == 0:
                    return os.path.join(self.dir, name, "storage.conf")
                n -= 1
        raise RuntimeError("no such storage")


def request(addr, target, method="GET", headers=None):
    """One request on a fresh connection: (status, lower-case headers, body). Never follows a
    redirect."""
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=15)
    try:
        c.request(method, target, headers=headers or {})
        r = c.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        c.close()


def raw_request(addr, data):
    """Sends raw bytes; the status code of the answer, or 0 when the server closed the
    connection without one. Also returns what came back."""
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=15)
    got = b""
    try:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may refuse before reading everything; its answer is still read
        while True:
            try:
                chunk = s.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            got += chunk
    finally:
        s.close()
    m = re.match(rb"HTTP/1\.[01] (\d{3})", got)
    return (int(m.group(1)) if m else 0), got


def multipart_parts(content_type, body):
    """(content-range, bytes) of each part of a multipart/byteranges body."""
    boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
    parts = []
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.lstrip(b"\r\n").partition(b"\r\n\r\n")
        m = re.search(rb"Content-Range: bytes (\d+)-(\d+)/\d+", head, re.I)
        first, last = int(m.group(1)), int(m.group(2))
        parts.append(((first, last), data[:last - first + 1]))
    return parts


def wait_for(pred, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


class NginxAndStoragedServeTheSameFiles(unittest.TestCase):
    """A 2-member group, nginx in front of each member, token off."""

    @classmethod
    def setUpClass(cls):
        cls.c = Cluster(BASE_PORT, "--groups", "1", "--per-group", "2")
        rnd = random.Random(42)
        cls.jpg = rnd.randbytes(100_000)
        cls.mp4 = rnd.randbytes(8 * 1024 * 1024 + 3)
        cls.bin = rnd.randbytes(5000)
        cls.jpg_id = cls.c.upload(cls.jpg, "jpg")
        cls.mp4_id = cls.c.upload(cls.mp4, "mp4")
        cls.bin_id = cls.c.upload(cls.bin, "bin")
        # Every member has every file (replicated) before the comparisons start.
        for fid in (cls.jpg_id, cls.mp4_id, cls.bin_id):
            for addr in cls.c.storaged:
                wait_for(lambda: request(addr, f"/{fid}?depot_hop=1", "HEAD")[0] == 200,
                         f"{fid} on {addr}")
        cls.servers = cls.c.nginx + cls.c.storaged  # every nginx and every storaged

    @classmethod
    def tearDownClass(cls):
        cls.c.down()

    def test_whole_file_head_and_headers_are_identical_everywhere(self):
        for fid, data, ctype in ((self.jpg_id, self.jpg, "image/jpeg"),
                                 (self.mp4_id, self.mp4, "video/mp4"),
                                 (self.bin_id, self.bin, "application/octet-stream")):
            seen = {}
            for addr in self.servers:
                status, h, body = request(addr, "/" + fid)
                self.assertEqual(status, 200, addr)
                self.assertTrue(body == data, f"{addr}: {len(body)} bytes differ")
                self.assertEqual(h["content-type"], ctype, addr)
                self.assertEqual(h["content-length"], str(len(data)), addr)
                self.assertIn("immutable", h["cache-control"], addr)
                self.assertEqual(h.get("accept-ranges"), "bytes", addr)
                seen[addr] = (h["etag"], h["last-modified"], h["cache-control"])
                hs, hh, hbody = request(addr, "/" + fid, "HEAD")
                self.assertEqual((hs, hbody), (200, b""), addr)
                self.assertEqual(hh["content-length"], str(len(data)), addr)
                self.assertEqual(hh["etag"], h["etag"], addr)
            self.assertEqual(len(set(seen.values())), 1, f"ETag/Last-Modified differ: {seen}")

    def test_single_suffix_and_multi_ranges(self):
        n = len(self.mp4)
        for addr in self.servers:
            status, h, body = request(addr, "/" + self.mp4_id, headers={"Range": "bytes=1000-1999"})
            self.assertEqual(status, 206, addr)
            self.assertEqual(body, self.mp4[1000:2000], addr)
            self.assertEqual(h["content-range"], f"bytes 1000-1999/{n}", addr)
            status, h, body = request(addr, "/" + self.mp4_id, headers={"Range": "bytes=-100"})
            self.assertEqual((status, body), (206, self.mp4[-100:]), addr)
            status, h, body = request(addr, "/" + self.mp4_id,
                                      headers={"Range": "bytes=0-9,4000000-4000099"})
            self.assertEqual(status, 206, addr)
            self.assertTrue(h["content-type"].startswith("multipart/byteranges"), addr)
            parts = multipart_parts(h["content-type"], body)
            self.assertEqual(parts, [((0, 9), self.mp4[0:10]),
                                     ((4000000, 4000099), self.mp4[4000000:4000100])], addr)

    def test_video_seek_through_nginx(self):
        # A player seeking to the middle: exactly those bytes, at once, from disk.
        first = len(self.mp4) // 2
        last = first + 256 * 1024 - 1
        for addr in self.c.nginx:
            status, h, body = request(addr, "/" + self.mp4_id,
                                      headers={"Range": f"bytes={first}-{last}"})
            self.assertEqual(status, 206, addr)
            self.assertTrue(body == self.mp4[first:last + 1], addr)
            self.assertEqual(h["content-range"], f"bytes {first}-{last}/{len(self.mp4)}")

    def test_conditional_requests_give_304(self):
        for addr in self.servers:
            _, h, _ = request(addr, "/" + self.jpg_id, "HEAD")
            etag, modified = h["etag"], h["last-modified"]
            status, _, body = request(addr, "/" + self.jpg_id, headers={"If-None-Match": etag})
            self.assertEqual((status, body), (304, b""), addr)
            status, _, _ = request(addr, "/" + self.jpg_id,
                                   headers={"If-None-Match": f'"x", W/{etag}'})
            self.assertEqual(status, 304, addr)
            status, _, _ = request(addr, "/" + self.jpg_id, headers={"If-None-Match": '"other"'})
            self.assertEqual(status, 200, addr)
            status, _, _ = request(addr, "/" + self.jpg_id, headers={"If-Modified-Since": modified})
            self.assertEqual(status, 304, addr)
            status, _, _ = request(addr, "/" + self.jpg_id,
                                   headers={"If-Modified-Since": "Thu, 01 Jan 1970 00:00:01 GMT"})
            self.assertEqual(status, 200, addr)

    def test_download_name(self):
        target = "/" + self.jpg_id + "?filename=holiday%20photo%C3%A9.jpg"
        want = "attachment; filename=\"holiday photo__.jpg\"; filename*=UTF-8''holiday%20photo%C3%A9.jpg"
        for addr in self.servers:
            status, h, body = request(addr, target)
            self.assertEqual(status, 200, addr)
            self.assertEqual(h["content-disposition"], want, addr)
            self.assertEqual(body, self.jpg, addr)

    def test_bad_requests_get_4xx_read_nothing_outside_and_the_server_keeps_serving(self):
        name = self.jpg_id.split("/", 1)[1]            # M00/XX/YY/<name>
        rest = name.split("/", 1)[1]                   # XX/YY/<name>
        host_line = b"Host: x\r\nConnection: close\r\n"

        def get(target, extra=b""):
            return b"GET " + target + b" HTTP/1.1\r\n" + host_line + extra + b"\r\n"

        many = b"bytes=" + b",".join(b"%d-%d" % (i, i) for i in range(10000))
        cases = {
            "dot-dot": get(b"/group1/M00/../../../../../../etc/passwd"),
            "dot-dot inside": get(b"/group1/M00/" + rest.encode() + b"/../../../../etc/passwd"),
            "encoded dot-dot": get(b"/group1/M00/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd"),
            "encoded dot-dot 2": get(b"/group1/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd"),
            "double slash": get(b"/group1//" + name.encode()),
            "leading double slash": get(b"//group1/" + name.encode()),
            "NUL escaped": get(b"/group1/M00/00/00/%00" + name.encode()),
            "NUL raw": get(b"/group1/" + name.encode() + b"\x00.txt"),
            "overlong path": get(b"/group1/M00/00/00/" + b"A" * 20000),
            "overlong name": get(b"/group1/M00/00/00/" + b"A" * 300 + b".jpg"),
            "bad group": get(b"/groupX/" + name.encode()),
            "absent group": get(b"/group9/" + name.encode()),
            "bad store path index": get(b"/group1/M07/" + rest.encode()),
            "non-hex store path": get(b"/group1/MZZ/" + rest.encode()),
            "range -0": get(b"/" + self.jpg_id.encode(), b"Range: bytes=-0\r\n"),
            "10,000 ranges": get(b"/" + self.jpg_id.encode(), b"Range: " + many + b"\r\n"),
            "1 MiB header": get(b"/" + self.jpg_id.encode(), b"X-Big: " + b"h" * (1 << 20) + b"\r\n"),
            "absolute path outside": get(b"/etc/passwd"),
        }
        for addr in (self.c.nginx[0], self.c.storaged[0]):
            for what, data in cases.items():
                status, got = raw_request(addr, data)
                self.assertTrue(400 <= status < 500, f"{addr} {what}: status {status}")
                self.assertNotIn(b"root:", got, f"{addr} {what}")
                ok, _, body = request(addr, "/" + self.jpg_id)
                self.assertEqual((ok, body == self.jpg), (200, True), f"{addr} after {what}")


class AFileNotYetReplicatedIsNever404(unittest.TestCase):
    """A 2-member group whose members do not replicate for now (every pushed record waits 60 s,
    sync_delay_ms): a file is only on the member that took the upload."""

    @classmethod
    def setUpClass(cls):
        cls.c = Cluster(BASE_PORT + 1000, "--groups", "1", "--per-group", "2")
        cls.c.cmd("down")
        for n in (0, 1):
            with open(cls.c.storage_conf(n), "a") as f:
                f.write("sync_delay_ms = 60000\n")
        cls.c.cmd("restart")

    @classmethod
    def tearDownClass(cls):
        cls.c.down()

    def set_miss(self, mode):
        """Sets http_miss on both members, restarting them when that changes it."""
        confs = {}
        for n in (0, 1):
            path = self.c.storage_conf(n)
            with open(path) as f:
                text = f.read()
            lines = [l for l in text.splitlines(keepends=True) if not l.startswith("http_miss")]
            new = "".join(lines) + f"http_miss = {mode}\n"
            if new != text:
                confs[path] = new
        if not confs:
            return
        self.c.cmd("down")
        for path, text in confs.items():
            with open(path, "w") as f:
                f.write(text)
        self.c.cmd("restart")

    def upload_and_find_other(self, size):
        data = random.Random(size).randbytes(size)
        fid = self.c.upload(data, "mp4")
        holders = [i for i, a in enumerate(self.c.storaged)
                   if request(a, f"/{fid}?depot_hop=1", "HEAD")[0] == 200]
        self.assertEqual(len(holders), 1, "the file should be on its source member only")
        return data, fid, holders[0], 1 - holders[0]

    def test_redirected_to_the_member_that_has_it(self):
        self.set_miss("redirect")
        data, fid, src, other = self.upload_and_find_other(300_000)
        status, h, _ = request(self.c.nginx[other], "/" + fid + "?filename=v.mp4")
        self.assertEqual(status, 302)
        # To the source member's nginx (its http_advertise_port), marked as sent on once.
        self.assertEqual(h["location"],
                         f"http://{self.c.nginx[src]}/{fid}?filename=v.mp4&depot_hop=1")
        addr = h["location"][len("http://"):].split("/", 1)[0]
        status, h2, body = request(addr, "/" + h["location"].split("/", 3)[3])
        self.assertEqual(status, 200)
        self.assertTrue(body == data)
        self.assertIn("filename=\"v.mp4\"", h2["content-disposition"])
        # Sent here by another member already: not sent on again (no loops).
        self.assertEqual(request(self.c.nginx[other], f"/{fid}?depot_hop=1")[0], 404)

    def test_proxied_when_http_miss_is_proxy(self):
        self.set_miss("proxy")
        data, fid, src, other = self.upload_and_find_other(3 * 1024 * 1024 + 5)
        status, h, body = request(self.c.nginx[other], "/" + fid)
        self.assertEqual(status, 200)
        self.assertTrue(body == data)
        self.assertEqual(h["content-type"], "video/mp4")
        status, _, body = request(self.c.nginx[other], "/" + fid,
                                  headers={"Range": "bytes=2000000-2000099"})
        self.assertEqual((status, body), (206, data[2000000:2000100]))


class SignedUrls(unittest.TestCase):
    """http_token on (cluster.sh --http-token): nginx and storaged check the same token."""

    @classmethod
    def setUpClass(cls):
        cls.c = Cluster(BASE_PORT + 2000, "--groups", "1", "--per-group", "1", "--http-token")
        cls.secret = cls.c.vars["DEPOT_HTTP_SECRET"]
        cls.data = random.Random(7).randbytes(70_000)
        cls.fid = cls.c.upload(cls.data, "jpg")
        cls.remote = cls.fid.split("/", 1)[1]

    @classmethod
    def tearDownClass(cls):
        cls.c.down()

    def token(self, ts, secret=None):
        s = (self.remote + (secret or self.secret) + str(ts)).encode()
        return hashlib.md5(s).hexdigest()

    def test_signed_accepted_unsigned_wrong_and_expired_refused(self):
        now = int(time.time())
        for addr in (self.c.nginx[0], self.c.storaged[0]):
            url = self.c.depot("url", self.fid, "--base", "http://" + addr,
                               "--http-secret", self.secret)
            target = url[len("http://" + addr):]
            status, _, body = request(addr, target)
            self.assertEqual((status, body == self.data), (200, True), f"{addr} {url}")
            # A token minted as FastDFS applications mint it (fdfs_http_gen_token).
            status, _, _ = request(addr, f"/{self.fid}?token={self.token(now).upper()}&ts={now}")
            self.assertEqual(status, 200, addr)
            status, _, _ = request(addr, f"/{self.fid}?token={self.token(now)}&ts={now}&filename=a.jpg")
            self.assertEqual(status, 200, addr)
            self.assertEqual(request(addr, "/" + self.fid)[0], 403, f"{addr} unsigned")
            self.assertEqual(request(addr, f"/{self.fid}?ts={now}")[0], 403, f"{addr} no token")
            wrong = self.token(now, "not-the-secret")
            self.assertEqual(request(addr, f"/{self.fid}?token={wrong}&ts={now}")[0], 403,
                             f"{addr} wrong")
            old = now - 3600  # the cluster's http_token_ttl is shorter than an hour
            self.assertEqual(request(addr, f"/{self.fid}?token={self.token(old)}&ts={old}")[0],
                             403, f"{addr} expired")
            self.assertEqual(request(addr, f"/{self.fid}?token={self.token(now)}&ts={now + 1}")[0],
                             403, f"{addr} ts changed")
            self.assertEqual(request(addr, "/healthz")[0], 200, addr)

    def test_nginx_checks_every_query_exactly_as_storaged(self):
        """The token and ?filename= rules at nginx (Lua or njs) are storaged's, case by case:
        status and Content-Disposition compared over raw requests (nginx's request-line parser
        differs only on bytes no URL may contain, a raw '#' or space, so those are left out)."""
        secret, ttl = self.secret.encode(), 900
        remote = self.remote.encode()
        path = ("/" + self.fid).encode()

        def tok(ts, rem=remote):
            return hashlib.md5(rem + secret + str(int(ts)).encode()).hexdigest().encode()

        def get(addr, target):
            status, got = raw_request(addr, b"GET " + target +
                                      b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            head = got.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
            disp = [h.split(b":", 1)[1].strip() for h in head[1:]
                    if h.lower().startswith(b"content-disposition:")]
            return status, disp

        now = int(time.time())
        T, TS = tok(now), str(now).encode()
        good = b"token=" + T + b"&ts=" + TS
        cases = [
            ('valid', good),
            ('no query', None),
            ('empty query', b''),
            ('token only', b'token=' + T),
            ('ts only', b'ts=' + TS),
            ('empty token', b'token=&ts=' + TS),
            ('token key without =', b'token&ts=' + TS),
            ('wrong token', b'token=' + b'0' * 32 + b'&ts=' + TS),
            ('upper-case token', b'token=' + T.upper() + b'&ts=' + TS),
            ('mixed-case token', b'token=' + T[:16].upper() + T[16:] + b'&ts=' + TS),
            ('token 31', b'token=' + T[:31] + b'&ts=' + TS),
            ('token 33', b'token=' + T + b'0&ts=' + TS),
            ('token 64', b'token=' + T + T + b'&ts=' + TS),
            ('token 65 (too long)', b'token=' + T + T + b'a&ts=' + TS),
            ('token percent-encoded', b'token=%' + b'%'.join(T[i:i+2] for i in range(0, 32, 2)) + b'&ts=' + TS),
            ('token with high bytes', b'token=' + T[:30] + b'\xc3\x80&ts=' + TS),
            ('expired ttl+3', b'token=' + tok(now - ttl - 3) + b'&ts=' + str(now - ttl - 3).encode()),
            ('old ttl-3', b'token=' + tok(now - ttl + 3) + b'&ts=' + str(now - ttl + 3).encode()),
            ('future ttl-3', b'token=' + tok(now + ttl - 3) + b'&ts=' + str(now + ttl - 3).encode()),
            ('future ttl+3', b'token=' + tok(now + ttl + 3) + b'&ts=' + str(now + ttl + 3).encode()),
            ('ts 0', b'token=' + tok(0) + b'&ts=0'),
            ('ts leading zeros', b'token=' + T + b'&ts=000' + TS),
            ('ts leading zeros, token over the zeros', b'token=' + hashlib.md5(remote + secret + b'000' + TS).hexdigest().encode() + b'&ts=000' + TS),
            ('ts 18 digits', b'token=' + T + b'&ts=' + b'9' * 18),
            ('ts 18 digits, zeros', b'token=' + T + b'&ts=' + b'0' * (18 - len(TS)) + TS),
            ('ts 19 digits', b'token=' + T + b'&ts=' + b'0' * (19 - len(TS)) + TS),
            ('ts empty', b'token=' + T + b'&ts='),
            ('ts no =', b'token=' + T + b'&ts'),
            ('ts letters', b'token=' + T + b'&ts=' + TS + b'a'),
            ('ts negative', b'token=' + T + b'&ts=-' + TS),
            ('ts plus', b'token=' + T + b'&ts=+' + TS),
            ('ts space', b'token=' + T + b'&ts=%20' + TS),
            ('ts float', b'token=' + T + b'&ts=' + TS + b'.0'),
            ('repeated token: last right', b'token=' + b'0' * 32 + b'&token=' + T + b'&ts=' + TS),
            ('repeated token: last wrong', b'token=' + T + b'&token=' + b'0' * 32 + b'&ts=' + TS),
            ('repeated token: last empty', b'token=' + T + b'&token=&ts=' + TS),
            ('repeated token: later too long', b'token=' + T + b'&ts=' + TS + b'&token=' + b'a' * 65),
            ('repeated ts: last right', b'token=' + T + b'&ts=1&ts=' + TS),
            ('repeated ts: last old', b'token=' + T + b'&ts=' + TS + b'&ts=1'),
            ('repeated ts: bad first', b'token=' + T + b'&ts=x&ts=' + TS),
            ('repeated ts: bad last', b'token=' + T + b'&ts=' + TS + b'&ts=x'),
            ('key case TOKEN', b'TOKEN=' + T + b'&ts=' + TS),
            ('key encoded tok%65n', b'tok%65n=' + T + b'&ts=' + TS),
            ('empty pairs', b'&&' + good + b'&&'),
            ('empty key', b'=x&' + good),
            ('unknown keys', b'a=b&depot_hop=1&' + good + b'&x'),
            ('value with =', b'token=' + T + b'=&ts=' + TS),
            ('query 2048', good + b'&p=' + b'x' * (2048 - len(good) - 3)),
            ('query 2049', good + b'&p=' + b'x' * (2049 - len(good) - 3)),
            ('query 2049 no token', b'p=' + b'x' * 2047),
            ('filename', good + b'&filename=a%20b.txt'),
            ('filename plus', good + b'&filename=a+b+%2B.txt'),
            ('filename utf-8', good + b'&filename=%C3%A9t%C3%A9.txt'),
            ('filename raw high bytes', good + b'&filename=\xc3\xa9t\xff.txt'),
            ('filename not utf-8', good + b'&filename=%FF%FE.bin'),
            ('filename specials', good + b'&filename=a%22b%5Cc%25d%3Be%27f%28%29*!%23$%26+-.^_`|~,:=@[]{}<>?.txt'),
            ('filename control', good + b'&filename=a%01b%7Fc%09.txt'),
            ('filename empty', good + b'&filename='),
            ('filename no =', good + b'&filename'),
            ('filename bad escape %zz', good + b'&filename=%zz'),
            ('filename bad escape %4', good + b'&filename=a%4'),
            ('filename bad escape %', good + b'&filename=a%'),
            ('filename %%41', good + b'&filename=%%41'),
            ('filename lower hex', good + b'&filename=%c3%a9'),
            ('filename NUL', good + b'&filename=a%00b'),
            ('filename 255', good + b'&filename=' + b'%41' * 255),
            ('filename 256', good + b'&filename=' + b'%41' * 256),
            ('filename 255 raw', good + b'&filename=' + b'b' * 255),
            ('filename 256 raw', good + b'&filename=' + b'b' * 256),
            ('filename repeated, last wins', good + b'&filename=one.txt&filename=two.txt'),
            ('filename repeated, last empty', good + b'&filename=one.txt&filename='),
            ('filename repeated, first bad', good + b'&filename=%zz&filename=two.txt'),
            ('filename before token', b'filename=x.txt&' + good),
            ('filename, no token', b'filename=x.txt'),
            ('filename bad, no token', b'filename=%zz'),
            ('filename, wrong token', b'filename=x.txt&token=' + b'0' * 32 + b'&ts=' + TS),
            ('bad ts, no token', b'ts=abc'),
            ('token too long, no ts', b'token=' + b'a' * 65),
            ('valid token for another file', b'token=' + tok(now, remote[:-5] + b'x.txt') + b'&ts=' + TS),
        ]
        for name, q in cases:
            target = path if q is None else path + b"?" + q
            at_storaged = get(self.c.storaged[0], target)
            at_nginx = get(self.c.nginx[0], target)
            self.assertEqual(at_nginx, at_storaged, name)
            self.assertIn(at_storaged[0], (200, 400, 403), name)


class TrunkFilesThroughNginx(unittest.TestCase):
    """use_trunk_file on (cluster.sh --trunk): small files live in trunk slots, not under data/, so
    nginx's 404 fallback hands them to storaged, which serves the slot; the answers match."""

    @classmethod
    def setUpClass(cls):
        cls.c = Cluster(BASE_PORT + 500, "--groups", "1", "--per-group", "2", "--trunk",
                        "--trunk-file-size", "8M")
        rnd = random.Random(11)
        cls.small = rnd.randbytes(5000)
        cls.big = rnd.randbytes(2 * 1024 * 1024)  # over slot_max_size: a file of its own
        cls.small_id = cls.c.upload(cls.small, "jpg")
        cls.big_id = cls.c.upload(cls.big, "jpg")
        thumb = os.path.join(cls.c.dir, "thumb.jpg")
        cls.thumb = rnd.randbytes(700)
        with open(thumb, "wb") as f:
            f.write(cls.thumb)
        cls.slave_id = cls.c.depot("upload-slave", cls.small_id, "_t", thumb)
        for fid in (cls.small_id, cls.big_id, cls.slave_id):
            for addr in cls.c.storaged:
                wait_for(lambda: request(addr, f"/{fid}?depot_hop=1", "HEAD")[0] == 200,
                         f"{fid} on {addr}")

    @classmethod
    def tearDownClass(cls):
        cls.c.down()

    def test_trunk_ids_and_files_on_disk(self):
        # FastDFS's trunk layout: 27 + 16 characters and the 7-character suffix.
        self.assertEqual(len(self.small_id.split("/", 1)[1]), 10 + 27 + 16 + 7)
        self.assertEqual(len(self.big_id.split("/", 1)[1]), 10 + 27 + 7)
        name = self.small_id.rsplit("/", 1)[1]
        for root, _, files in os.walk(self.c.dir):
            self.assertNotIn(name, files, "a trunk file must not be a file of its own")

    def test_same_bytes_and_headers_at_every_nginx_and_storaged(self):
        for fid, data in ((self.small_id, self.small), (self.big_id, self.big),
                          (self.slave_id, self.thumb)):
            seen = set()
            for addr in self.c.nginx + self.c.storaged:
                status, h, body = request(addr, "/" + fid)
                self.assertEqual(status, 200, f"{addr} {fid}")
                self.assertTrue(body == data, f"{addr}: bytes differ for {fid}")
                self.assertEqual(h["content-type"], "image/jpeg", addr)
                seen.add((h["etag"], h["last-modified"]))
                status, h, body = request(addr, "/" + fid, headers={"Range": "bytes=100-199"})
                self.assertEqual((status, body), (206, data[100:200]), f"{addr} range {fid}")
                status, _, _ = request(addr, "/" + fid, headers={"If-None-Match": h["etag"]})
                self.assertEqual(status, 304, f"{addr} 304 {fid}")
            self.assertEqual(len(seen), 1, f"ETag/Last-Modified differ for {fid}: {seen}")

    def test_deleted_trunk_file_is_404_everywhere(self):
        data = random.Random(12).randbytes(3000)
        fid = self.c.upload(data, "png")
        for addr in self.c.storaged:
            wait_for(lambda: request(addr, f"/{fid}?depot_hop=1", "HEAD")[0] == 200,
                     f"{fid} on {addr}")
        self.c.depot("delete", fid)
        for addr in self.c.storaged:
            wait_for(lambda: request(addr, f"/{fid}?depot_hop=1", "HEAD")[0] == 404,
                     f"{fid} deleted on {addr}")
        for addr in self.c.nginx:
            status, _, body = request(addr, f"/{fid}?depot_hop=1")
            self.assertEqual(status, 404, addr)
            self.assertNotEqual(body, data)


if __name__ == "__main__":
    unittest.main()
