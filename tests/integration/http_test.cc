// storaged's HTTP reads with a real daemon (issue 3, first part): full and ranged GETs, HEAD,
// conditional requests, content types, download names, the anti-leech token and bad requests.
// A tiny HTTP/1.1 client over a raw socket ("Connection: close", the reply read to the end).
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>

#include "common/base/hash.h"
#include "common/net/blocking_conn.h"
#include "common/proto/file_id.h"
#include "storage/http/http_util.h"
#include "tests/harness/harness.h"

namespace depot::testing {
namespace {

struct HttpReply {
  int code = 0;  // 0: no reply (connection closed or refused)
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

HttpReply Request(const std::string& host, int port, const std::string& method,
                  const std::string& target, const std::string& extra_headers = "") {
  HttpReply out;
  auto conn = net::BlockingConn::Connect(host, port, 2000);
  if (!conn.ok()) return out;
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: " + host +
                    "\r\nConnection: close\r\n" + extra_headers + "\r\n";
  if (!(*conn)->SendAll(req.data(), req.size()).ok()) return out;
  std::string raw;
  char buf[65536];
  for (;;) {
    pollfd p{(*conn)->fd(), POLLIN, 0};
    if (poll(&p, 1, 5000) <= 0) break;
    ssize_t n = recv((*conn)->fd(), buf, sizeof buf, 0);
    if (n <= 0) break;
    raw.append(buf, static_cast<size_t>(n));
  }
  size_t end = raw.find("\r\n\r\n");
  if (raw.compare(0, 9, "HTTP/1.1 ") != 0 || end == std::string::npos) return out;
  out.code = std::atoi(raw.c_str() + 9);
  size_t pos = raw.find("\r\n") + 2;
  while (pos < end) {
    size_t nl = raw.find("\r\n", pos);
    std::string line = raw.substr(pos, nl - pos);
    size_t colon = line.find(':');
    if (colon != std::string::npos) {
      std::string name = line.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      out.headers[name] = line.substr(line.find_first_not_of(' ', colon + 1));
    }
    pos = nl + 2;
  }
  out.body = raw.substr(end + 4);
  return out;
}

class HttpTest : public ::testing::Test {
 protected:
  void Start(const std::string& extra = "") {
    ClusterOptions o;
    o.extra_storage_conf = "http_mime_types = " DEPOT_SOURCE_DIR "/conf/mime.types\n" + extra;
    cluster_ = std::make_unique<MiniCluster>(o);
    ASSERT_TRUE(cluster_->Start().ok());
    client_ = cluster_->NewClient();
    data_ = PatternBytes(100000, 77);
    UploadOptions up;
    up.ext = "jpg";
    auto id = client_->UploadBuffer(data_, up);
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    id_ = *id;
  }
  HttpReply Get(const std::string& target, const std::string& headers = "",
                const std::string& method = "GET") {
    Daemon& s = cluster_->storage(0, 0);
    return Request(s.host(), s.http_port(), method, target, headers);
  }
  // `depot url ...`: the target part of the URL it prints ("" when it failed).
  std::string UrlTarget(std::vector<std::string> args, int* exit_code = nullptr) {
    args.insert(args.begin(), {"depot", "--trackers", cluster_->TrackerList(), "url"});
    RunResult r = RunProgram(args);
    if (exit_code != nullptr) *exit_code = r.exit_code;
    if (r.exit_code != 0) return "";
    Daemon& s = cluster_->storage(0, 0);
    std::string prefix = "http://" + s.host() + ":" + std::to_string(s.http_port());
    EXPECT_EQ(r.out.rfind(prefix, 0), 0u) << r.out;
    return r.out.substr(prefix.size(), r.out.find('\n') - prefix.size());
  }

  std::unique_ptr<MiniCluster> cluster_;
  std::unique_ptr<Client> client_;
  std::string data_, id_;
};

TEST_F(HttpTest, WholeFileHeadAndHeaders) {
  Start();
  HttpReply r = Get("/" + id_);
  ASSERT_EQ(r.code, 200);
  EXPECT_EQ(r.body, data_);
  EXPECT_EQ(r.headers["content-type"], "image/jpeg");
  EXPECT_EQ(r.headers["content-length"], "100000");
  EXPECT_EQ(r.headers["accept-ranges"], "bytes");
  EXPECT_NE(r.headers["cache-control"].find("immutable"), std::string::npos);
  ASSERT_FALSE(r.headers["etag"].empty());
  ASSERT_FALSE(r.headers["last-modified"].empty());
  HttpReply h = Get("/" + id_, "", "HEAD");
  ASSERT_EQ(h.code, 200);
  EXPECT_TRUE(h.body.empty());
  EXPECT_EQ(h.headers["content-length"], "100000");
  EXPECT_EQ(h.headers["etag"], r.headers["etag"]);
  HttpReply named = Get("/" + id_ + "?filename=holiday%20photo.jpg");
  ASSERT_EQ(named.code, 200);
  EXPECT_EQ(named.headers["content-disposition"],
            "attachment; filename=\"holiday photo.jpg\"; filename*=UTF-8''holiday%20photo.jpg");
  // `depot url` finds the HTTP address of a member that has the file through the trackers.
  std::string url = UrlTarget({id_, "--filename", "a b.jpg"});
  EXPECT_EQ(url, "/" + id_ + "?filename=a%20b.jpg");
  EXPECT_EQ(Get(url).body, data_);
  EXPECT_EQ(Get("/healthz").code, 200);
  HttpReply m = Get("/metrics");
  ASSERT_EQ(m.code, 200);
  EXPECT_NE(m.body.find("depot_"), std::string::npos);
}

TEST_F(HttpTest, RangesAndConditionalRequests) {
  Start();
  HttpReply one = Get("/" + id_, "Range: bytes=1000-1999\r\n");
  ASSERT_EQ(one.code, 206);
  EXPECT_EQ(one.body, data_.substr(1000, 1000));
  EXPECT_EQ(one.headers["content-range"], "bytes 1000-1999/100000");
  HttpReply tail = Get("/" + id_, "Range: bytes=-10\r\n");
  ASSERT_EQ(tail.code, 206);
  EXPECT_EQ(tail.body, data_.substr(99990));
  HttpReply multi = Get("/" + id_, "Range: bytes=0-9,50000-50009\r\n");
  ASSERT_EQ(multi.code, 206);
  EXPECT_NE(multi.headers["content-type"].find("multipart/byteranges; boundary="), std::string::npos);
  EXPECT_NE(multi.body.find("Content-Range: bytes 0-9/100000\r\n\r\n" + data_.substr(0, 10)),
            std::string::npos);
  EXPECT_NE(multi.body.find("Content-Range: bytes 50000-50009/100000\r\n\r\n" +
                            data_.substr(50000, 10)),
            std::string::npos);
  HttpReply unsat = Get("/" + id_, "Range: bytes=-0\r\n");
  EXPECT_EQ(unsat.code, 416);
  // An error is not cacheable: no year-long Cache-Control, no validators on a 416.
  EXPECT_EQ(unsat.headers.count("cache-control"), 0u);
  EXPECT_EQ(unsat.headers.count("etag"), 0u);
  EXPECT_EQ(Get("/" + id_, "Range: bytes=100000-\r\n").code, 416);
  std::string many = "Range: bytes=0-0";
  for (int i = 1; i < 10000; ++i) many += "," + std::to_string(i) + "-" + std::to_string(i);
  int code = Get("/" + id_, many + "\r\n").code;
  EXPECT_TRUE(code == 416 || (code >= 400 && code < 500)) << code;
  std::string etag = Get("/" + id_, "", "HEAD").headers["etag"];
  EXPECT_EQ(Get("/" + id_, "If-None-Match: " + etag + "\r\n").code, 304);
  EXPECT_EQ(Get("/" + id_, "If-None-Match: \"other\"\r\n").code, 200);
  std::string later = storage::http::HttpDate(UnixSeconds() + 3600);
  EXPECT_EQ(Get("/" + id_, "If-Modified-Since: " + later + "\r\n").code, 304);
  EXPECT_EQ(Get("/" + id_, "If-Modified-Since: Thu, 01 Jan 1970 00:00:01 GMT\r\n").code, 200);
}

TEST_F(HttpTest, BadRequestsGet4xxAndTheServerKeepsServing) {
  Start();
  std::string name = id_.substr(id_.find('/') + 1);
  for (const std::string& bad :
       {std::string("/group1/M00/../../../../etc/passwd"), std::string("/group1/M00/%2e%2e/x"),
        std::string("/group1//") + name, std::string("/group1/M05/") + name.substr(4),
        std::string("/groupX/") + name, "/" + std::string(9000, 'a'), std::string("/etc/passwd"),
        std::string("/group1/M00/00/00/missing.jpg")}) {
    HttpReply r = Get(bad);
    EXPECT_GE(r.code, 400) << bad;
    EXPECT_LT(r.code, 500) << bad;
    EXPECT_EQ(r.body.find("root:"), std::string::npos) << bad;
  }
  HttpReply huge = Get("/" + id_, "X-Big: " + std::string(1 << 20, 'h') + "\r\n");
  EXPECT_TRUE(huge.code == 0 || (huge.code >= 400 && huge.code < 500)) << huge.code;
  // A HEAD answer never carries a body, errors included (it would break keep-alive framing).
  for (const std::string& target : {std::string("/etc/passwd"), std::string("/groupX/") + name,
                                    "/" + id_ + "?a=%zz&filename=%zz"}) {
    HttpReply h = Get(target, "", "HEAD");
    EXPECT_GE(h.code, 400) << target;
    EXPECT_TRUE(h.body.empty()) << target << ": " << h.body;
  }
  // A control byte in the query is refused (http_util_test); escaped, it is just data.
  EXPECT_EQ(Get("/" + id_ + "?a=%0d", "").code, 200);  // escaped: fine
  HttpReply del = Get("/" + id_, "", "DELETE");
  EXPECT_EQ(del.code, 405);
  EXPECT_EQ(del.headers["allow"], "GET, HEAD");
  EXPECT_EQ(Get("/" + id_).code, 200);  // still serving
  auto still = client_->DownloadToBuffer(id_);
  ASSERT_TRUE(still.ok());
  EXPECT_EQ(*still, data_);
}

TEST_F(HttpTest, AntiLeechTokenAsFastDfsMintsIt) {
  Start("http_token = true\nhttp_secret = FastDFS1234567890\nhttp_token_ttl = 600\n");
  std::string remote = id_.substr(id_.find('/') + 1);
  int64_t now = UnixSeconds();
  std::string token = storage::http::MakeToken(remote, "FastDFS1234567890", now);
  EXPECT_EQ(Get("/" + id_).code, 403);
  HttpReply ok = Get("/" + id_ + "?token=" + token + "&ts=" + std::to_string(now));
  ASSERT_EQ(ok.code, 200);
  EXPECT_EQ(ok.body, data_);
  std::string old = storage::http::MakeToken(remote, "FastDFS1234567890", now - 3600);
  EXPECT_EQ(Get("/" + id_ + "?token=" + old + "&ts=" + std::to_string(now - 3600)).code, 403);
  EXPECT_EQ(Get("/" + id_ + "?token=" + token + "&ts=" + std::to_string(now + 1)).code, 403);
  EXPECT_EQ(Get("/healthz").code, 200);  // no token needed

  // `depot url` signs URLs the storage accepts, for up to twice its token ttl.
  std::vector<std::string> sign = {"--http-secret", "FastDFS1234567890", "--token-ttl", "600"};
  auto signed_url = [&](std::vector<std::string> extra, int* code = nullptr) {
    std::vector<std::string> args = {id_};
    args.insert(args.end(), sign.begin(), sign.end());
    args.insert(args.end(), extra.begin(), extra.end());
    return UrlTarget(args, code);
  };
  HttpReply minted = Get(signed_url({}));
  ASSERT_EQ(minted.code, 200);
  EXPECT_EQ(minted.body, data_);
  EXPECT_EQ(Get(signed_url({"--ttl", "1200"})).code, 200);
  int code = 0;
  EXPECT_EQ(signed_url({"--ttl", "1201"}, &code), "");
  EXPECT_EQ(code, 2);
  std::string brief = signed_url({"--ttl", "1"});
  EXPECT_EQ(Get(brief).code, 200);
  sleep(3);
  EXPECT_EQ(Get(brief).code, 403);  // expired
  EXPECT_EQ(Get(UrlTarget({id_})).code, 403);  // unsigned
}

// A 2-member group whose members do not replicate yet (every pushed record waits 60 s): a file
// is on its source member only, and the other member's HTTP must not 404 it.
class HttpMissTest : public ::testing::Test {
 protected:
  void Start(const std::string& miss) {
    ClusterOptions o;
    o.per_group = 2;
    o.extra_storage_conf = "http_mime_types = " DEPOT_SOURCE_DIR "/conf/mime.types\n"
                           "sync_delay_ms = 60000\nhttp_miss = " + miss + "\n";
    cluster_ = std::make_unique<MiniCluster>(o);
    ASSERT_TRUE(cluster_->Start().ok());
    client_ = cluster_->NewClient();
    data_ = PatternBytes(3 * 1024 * 1024 + 17, 5);  // bigger than the proxy's high-water mark
    UploadOptions up;
    up.ext = "mp4";
    auto id = client_->UploadBuffer(data_, up);
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    id_ = *id;
    auto parsed = proto::ParseFileId(id_);
    ASSERT_TRUE(parsed.ok());
    std::string source = proto::IpToString(parsed->fields.source_ip);
    for (int m = 0; m < 2; ++m) {
      (cluster_->storage(0, m).host() == source ? source_ : other_) = &cluster_->storage(0, m);
    }
    ASSERT_NE(source_, nullptr);
    ASSERT_NE(other_, nullptr);
    // The heartbeat replies carry the members' HTTP ports: wait until the other member knows.
    for (int i = 0; i < 100; ++i) {
      HttpReply r = AtOther("/" + id_);
      if (r.code != 404) break;
      usleep(100 * 1000);
    }
  }
  HttpReply AtOther(const std::string& target, const std::string& headers = "",
                    const std::string& method = "GET") {
    return Request(other_->host(), other_->http_port(), method, target, headers);
  }

  std::unique_ptr<MiniCluster> cluster_;
  std::unique_ptr<Client> client_;
  std::string data_, id_;
  Daemon* source_ = nullptr;
  Daemon* other_ = nullptr;
};

TEST_F(HttpMissTest, NotYetSyncedIsRedirectedToAMemberThatHasIt) {
  Start("redirect");
  HttpReply r = AtOther("/" + id_ + "?filename=a.mp4");
  ASSERT_EQ(r.code, 302);
  std::string want = "http://" + source_->host() + ":" + std::to_string(source_->http_port()) +
                     "/" + id_ + "?filename=a.mp4&depot_hop=1";
  EXPECT_EQ(r.headers["location"], want);
  HttpReply there = Request(source_->host(), source_->http_port(), "GET",
                            "/" + id_ + "?filename=a.mp4&depot_hop=1");
  ASSERT_EQ(there.code, 200);
  EXPECT_TRUE(there.body == data_);
  // Sent here by another member: never sent on (no loops).
  EXPECT_EQ(AtOther("/" + id_ + "?depot_hop=1").code, 404);
  // A file that exists nowhere: its source member (this one) has no copy, so 404.
  std::string name = id_.substr(id_.find('/') + 1);
  std::string ghost = id_;
  ghost[ghost.size() - 5] = ghost[ghost.size() - 5] == 'A' ? 'B' : 'A';  // another random suffix
  HttpReply g = Request(source_->host(), source_->http_port(), "GET", "/" + ghost);
  EXPECT_EQ(g.code, 404);
  HttpReply m = AtOther("/metrics");
  EXPECT_NE(m.body.find("depot_http_misses_total{outcome=\"redirected\"} "), std::string::npos);
  // No tracker to ask: 503 (try again), not a 404 that would tell the client the file is gone.
  cluster_->tracker(0).Stop();
  HttpReply down = AtOther("/" + id_);
  EXPECT_EQ(down.code, 503);
  EXPECT_EQ(down.headers["retry-after"], "5");
}

TEST_F(HttpMissTest, NotYetSyncedIsProxiedFromAMemberThatHasIt) {
  Start("proxy");
  HttpReply r = AtOther("/" + id_);
  ASSERT_EQ(r.code, 200);
  EXPECT_EQ(r.headers["content-type"], "video/mp4");
  EXPECT_EQ(r.headers["content-length"], std::to_string(data_.size()));
  EXPECT_TRUE(r.body == data_) << r.body.size();
  HttpReply mid = AtOther("/" + id_, "Range: bytes=1500000-1500999\r\n");
  ASSERT_EQ(mid.code, 206);
  EXPECT_EQ(mid.body, data_.substr(1500000, 1000));
  EXPECT_EQ(mid.headers["content-range"],
            "bytes 1500000-1500999/" + std::to_string(data_.size()));
  HttpReply head = AtOther("/" + id_, "", "HEAD");
  ASSERT_EQ(head.code, 200);
  EXPECT_TRUE(head.body.empty());
  EXPECT_EQ(head.headers["content-length"], std::to_string(data_.size()));
  EXPECT_EQ(AtOther("/" + id_, "If-None-Match: " + r.headers["etag"] + "\r\n").code, 304);
  // The ETag and Last-Modified are the source's, and would be the same from any member.
  HttpReply direct = Request(source_->host(), source_->http_port(), "HEAD", "/" + id_);
  EXPECT_EQ(direct.headers["etag"], r.headers["etag"]);
  EXPECT_EQ(direct.headers["last-modified"], r.headers["last-modified"]);
  EXPECT_EQ(AtOther("/" + id_ + "?depot_hop=1").code, 404);
  // The source going away: a clear 502 or 404, never a hang, and the member keeps serving.
  source_->Stop();
  HttpReply gone = AtOther("/" + id_);
  EXPECT_TRUE(gone.code == 502 || gone.code == 404) << gone.code;
  EXPECT_EQ(AtOther("/healthz").code, 200);
}

}  // namespace
}  // namespace depot::testing
