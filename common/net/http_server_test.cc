#include "common/net/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

namespace depot::net {
namespace {

// A server whose handlers echo what they got, on every route mode.
class HttpServerTest : public testing::Test {
 protected:
  int io_timeout_ = 30;  // tests of deadlines use a short one (their own fixture)
  void SetUp() override {
    HttpServerOptions o;
    o.port = 0;
    o.max_body = 1000;
    o.worker_threads = 2;
    o.io_timeout = io_timeout_;
    server_ = std::make_unique<HttpServer>(
        o,
        [](const http::RequestHead& h, const std::string&, HttpResponse* reject) {
          if (h.path.rfind("/reject", 0) == 0) {
            reject->Set(401, "text/plain", "no");
            return RouteMode::kReject;
          }
          if (h.path.rfind("/stream", 0) == 0) return RouteMode::kStream;
          if (h.path.rfind("/worker", 0) == 0 || h.path == "/slow") return RouteMode::kWorker;
          return RouteMode::kInline;
        },
        [](const HttpRequest& q, HttpResponse* r) {
          if (q.head.path == "/big") return r->Set(200, "text/plain", std::string(900 << 10, 'b'));
          if (q.head.path == "/slow") std::this_thread::sleep_for(std::chrono::milliseconds(300));
          r->Set(200, "text/plain", q.head.method + " " + q.head.path + " " + q.body);
        },
        [](HttpStream& s) {
          // Counts the body and answers its size and a checksum.
          uint64_t n = 0, sum = 0;
          char buf[4096];
          // /stream/exact stops at Content-Length, as an upload of known size does.
          bool exact = s.head().path == "/stream/exact";
          uint64_t want = s.head().content_length.value_or(0);
          while (!exact || n < want) {
            auto got = s.ReadBody(buf, sizeof buf);
            if (!got.ok() || *got == 0) break;
            for (size_t i = 0; i < *got; ++i) sum += static_cast<unsigned char>(buf[i]);
            n += *got;
          }
          HttpResponse r;
          r.Set(200, "text/plain", std::to_string(n) + ":" + std::to_string(sum));
          static_cast<void>(s.Send(r));
        },
        [](int status, const std::string& msg) {
          return std::make_pair(std::string("application/json"),
                                "{\"error\":{\"code\":\"" + std::to_string(status) +
                                    "\",\"message\":\"" + msg + "\"}}");
        });
    ASSERT_TRUE(server_->Start().ok());
  }
  void TearDown() override { server_->Stop(); }

  // A client socket; with `rcvbuf`, a small receive buffer (a client that reads slowly).
  int Connect(int rcvbuf = 0) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(server_->port()));
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    timeval tv{10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
  }
  static void Send(int fd, const std::string& s) {
    ASSERT_EQ(send(fd, s.data(), s.size(), MSG_NOSIGNAL), static_cast<ssize_t>(s.size()));
  }
  // Reads responses until `count` complete ones (Content-Length framed) arrived or EOF.
  static std::vector<std::string> ReadResponses(int fd, int count) {
    std::string in;
    std::vector<std::string> out;
    char buf[65536];
    while (static_cast<int>(out.size()) < count) {
      size_t end = in.find("\r\n\r\n");
      if (end != std::string::npos) {
        size_t cl = in.find("Content-Length: ");
        size_t len = cl != std::string::npos && cl < end ? std::stoul(in.substr(cl + 16)) : 0;
        if (in.size() >= end + 4 + len) {
          out.push_back(in.substr(0, end + 4 + len));
          in.erase(0, end + 4 + len);
          continue;
        }
      }
      ssize_t r = recv(fd, buf, sizeof buf, 0);
      if (r <= 0) break;
      in.append(buf, static_cast<size_t>(r));
    }
    return out;
  }
  static std::string BodyOf(const std::string& resp) {
    return resp.substr(resp.find("\r\n\r\n") + 4);
  }

  std::unique_ptr<HttpServer> server_;
};

TEST_F(HttpServerTest, PipelinedRequestsOnEveryModeAnswerInOrder) {
  int fd = Connect();
  std::string big(100000, 'x');
  Send(fd,
       "POST /inline HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
       "POST /worker HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n"
       "POST /stream HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n" + big +
       "GET /inline/after HTTP/1.1\r\nHost: h\r\n\r\n");
  auto r = ReadResponses(fd, 4);
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(BodyOf(r[0]), "POST /inline abc");
  EXPECT_EQ(BodyOf(r[1]), "POST /worker de");
  EXPECT_EQ(BodyOf(r[2]), "100000:" + std::to_string(100000 * 'x'));
  EXPECT_EQ(BodyOf(r[3]), "GET /inline/after ");
  close(fd);
}

// Regression: a stream handler that read exactly Content-Length bytes (without reading once more
// to see the end) answered with Connection: close.
TEST_F(HttpServerTest, StreamReadingExactlyItsBodyKeepsTheConnection) {
  int fd = Connect();
  Send(fd, "POST /stream/exact HTTP/1.1\r\nHost: h\r\nContent-Length: 4096\r\n\r\n" +
               std::string(4096, 'a') + "GET /inline/next HTTP/1.1\r\nHost: h\r\n\r\n");
  auto r = ReadResponses(fd, 2);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].find("Connection: close"), std::string::npos) << r[0];
  EXPECT_EQ(BodyOf(r[1]), "GET /inline/next ");
  close(fd);
}

TEST_F(HttpServerTest, StreamedChunkedBodyAndKeepAliveAfterIt) {
  int fd = Connect();
  Send(fd, "POST /stream HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
  uint64_t sum = 0;
  for (int i = 0; i < 50; ++i) {
    std::string piece(1000 + i, static_cast<char>('a' + i % 26));
    for (unsigned char ch : piece) sum += ch;
    char size[16];
    snprintf(size, sizeof size, "%zx\r\n", piece.size());
    Send(fd, size + piece + "\r\n");
  }
  Send(fd, "0\r\n\r\nGET /again HTTP/1.1\r\nHost: h\r\n\r\n");
  auto r = ReadResponses(fd, 2);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(BodyOf(r[0]), std::to_string(50 * 1000 + 49 * 50 / 2) + ":" + std::to_string(sum));
  EXPECT_EQ(BodyOf(r[1]), "GET /again ");
  close(fd);
}

TEST_F(HttpServerTest, OversizedAndMalformedRequestsGetTheErrorShapeAndClose) {
  int fd = Connect();
  Send(fd, "POST /inline HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\n\r\n");
  auto r = ReadResponses(fd, 1);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].rfind("HTTP/1.1 413", 0), 0u) << r[0];
  EXPECT_NE(r[0].find("Connection: close"), std::string::npos);
  EXPECT_NE(BodyOf(r[0]).find("\"error\""), std::string::npos);
  close(fd);

  fd = Connect();
  Send(fd, "GARBAGE\r\n\r\n");
  r = ReadResponses(fd, 1);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].rfind("HTTP/1.1 400", 0), 0u) << r[0];
  close(fd);

  // A chunked body over the limit on a buffered route.
  fd = Connect();
  Send(fd, "POST /worker HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n" +
               std::string(2000, 'z') + "\r\n0\r\n\r\n");
  r = ReadResponses(fd, 1);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].rfind("HTTP/1.1 413", 0), 0u) << r[0];
  close(fd);
}

TEST_F(HttpServerTest, ExpectContinueAndHttp10) {
  int fd = Connect();
  Send(fd, "POST /inline HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
  char buf[256];
  ssize_t n = recv(fd, buf, sizeof buf, 0);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(n)), "HTTP/1.1 100 Continue\r\n\r\n");
  Send(fd, "ok");
  auto r = ReadResponses(fd, 1);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(BodyOf(r[0]), "POST /inline ok");
  close(fd);

  fd = Connect();
  Send(fd, "GET /x HTTP/1.0\r\n\r\n");
  r = ReadResponses(fd, 1);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_NE(r[0].find("Connection: close"), std::string::npos);
  EXPECT_EQ(recv(fd, buf, sizeof buf, 0), 0);  // closed after the answer
  close(fd);
}

TEST_F(HttpServerTest, RejectedFromTheHeadAnswersAndCloses) {
  int fd = Connect();
  // The body is never read: a refused client cannot make the server wait for it.
  Send(fd, "POST /reject HTTP/1.1\r\nHost: h\r\nContent-Length: 100000000\r\n\r\nxyz");
  auto r = ReadResponses(fd, 1);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].rfind("HTTP/1.1 401", 0), 0u) << r[0];
  EXPECT_NE(r[0].find("Connection: close"), std::string::npos);
  char buf[64];
  EXPECT_LE(recv(fd, buf, sizeof buf, 0), 0);  // closed (FIN or reset)
  close(fd);
}

class HttpServerDeadlineTest : public HttpServerTest {
 protected:
  HttpServerDeadlineTest() { io_timeout_ = 1; }
};

TEST_F(HttpServerDeadlineTest, ATricklingRequestIsCutAtItsDeadline) {
  int fd = Connect();
  // One byte of head every 300 ms: each read is progress, but the request (io_timeout 1 s)
  // must be complete within its deadline.
  std::string head = "GET /inline HTTP/1.1\r\nHost: h\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
  bool cut = false;
  for (size_t i = 0; i < head.size(); ++i) {
    if (send(fd, head.data() + i, 1, MSG_NOSIGNAL) != 1) {
      cut = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    char b;
    if (recv(fd, &b, 1, MSG_DONTWAIT) == 0) {
      cut = true;
      break;
    }
  }
  EXPECT_TRUE(cut);
  close(fd);
}

// Regression (second review): a connection closing after an answer the client never reads had no
// deadline and was kept forever.
TEST_F(HttpServerDeadlineTest, AClosingConnectionWhoseAnswerIsNotReadIsFreed) {
  int fd = Connect(/*rcvbuf=*/4096);
  // HTTP/1.0: the connection closes after a 900 KiB answer this client does not read.
  Send(fd, "GET /big HTTP/1.0\r\n\r\n");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(server_->connections(), 1);
  for (int i = 0; i < 50 && server_->connections() != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(server_->connections(), 0);
  close(fd);
}

// Regression: a connection whose worker request was still running was freed when a write to the
// gone client failed, and the worker's answer then used the freed connection (ASan: heap use
// after free).
TEST_F(HttpServerTest, ClientResetWhileAWorkerHasTheConnection) {
  for (int round = 0; round < 5; ++round) {
    int fd = Connect(/*rcvbuf=*/4096);
    // A 900 KiB answer the client does not read, then a slow worker request.
    Send(fd, "GET /big HTTP/1.1\r\nHost: h\r\n\r\nGET /slow HTTP/1.1\r\nHost: h\r\n\r\n");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    linger l{1, 0};  // close with a reset
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
  }
  // Still serving.
  int fd = Connect();
  Send(fd, "GET /inline/alive HTTP/1.1\r\nHost: h\r\n\r\n");
  auto r = ReadResponses(fd, 1);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(BodyOf(r[0]), "GET /inline/alive ");
  close(fd);
}

}  // namespace
}  // namespace depot::net
