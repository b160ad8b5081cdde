// FrameServer on a real socket: buffered and streamed commands, limits, unknown commands,
// pipelining, the cluster-secret handshake, close hooks and replies from other threads.
#include "common/net/frame_server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "common/base/hash.h"
#include "common/net/blocking_conn.h"

namespace depot::net {
namespace {

constexpr uint8_t kEcho = 150;      // buffered: replies with the body
constexpr uint8_t kLater = 151;     // buffered: replies from another thread
constexpr uint8_t kSum = 152;       // streamed: replies with the byte count and a checksum
constexpr uint8_t kInternal = 153;  // needs the handshake

class SumStream : public BodyStream {
 public:
  void OnChunk(const ConnectionPtr& conn, std::string chunk, bool last) override {
    bytes_ += chunk.size();
    crc_ = Crc32Update(crc_, chunk.data(), chunk.size());
    chunks_++;
    if (last) {
      conn->Reply(0, std::to_string(bytes_) + "/" + std::to_string(crc_));
    } else {
      conn->ContinueBody();
    }
  }
  uint64_t bytes_ = 0;
  uint32_t crc_ = 0;
  int chunks_ = 0;
};

class FrameServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions o;
    o.bind_addr = "127.0.0.1";
    o.port = 0;
    o.threads = 2;
    o.cluster_secret = "unit-test-secret";
    server_ = std::make_unique<FrameServer>(o);
    CommandSpec echo;
    echo.max_body = 1024;
    echo.handle = [](const ConnectionPtr& c, const proto::FrameHeader&, std::string body) {
      c->Reply(0, body);
    };
    server_->Register(kEcho, echo);
    CommandSpec later;
    later.max_body = 16;
    later.handle = [this](const ConnectionPtr& c, const proto::FrameHeader&, std::string body) {
      threads_.emplace_back([c, body] {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        c->loop()->Post([c, body] { c->Reply(7, body); });
      });
    };
    server_->Register(kLater, later);
    CommandSpec sum;
    sum.max_body = 64 << 20;
    sum.stream = [](const ConnectionPtr&, const proto::FrameHeader&) {
      return std::make_unique<SumStream>();
    };
    server_->Register(kSum, sum);
    CommandSpec internal;
    internal.max_body = 16;
    internal.internal = true;
    internal.handle = [this](const ConnectionPtr& c, const proto::FrameHeader&, std::string) {
      c->set_close_hook([this] { closed_hooks_++; });
      c->Reply(0, "inside");
    };
    server_->Register(kInternal, internal);
    ASSERT_TRUE(server_->Start().ok());
  }
  void TearDown() override {
    server_->Stop();
    for (auto& t : threads_) t.join();
  }
  std::unique_ptr<BlockingConn> Connect() {
    auto c = BlockingConn::Connect("127.0.0.1", server_->port(), 2000);
    EXPECT_TRUE(c.ok());
    (*c)->set_timeout_ms(5000);
    return std::move(*c);
  }

  std::unique_ptr<FrameServer> server_;
  std::vector<std::thread> threads_;
  std::atomic<int> closed_hooks_{0};
};

TEST(HostAllowedTest, MatchesAddressesAndBlocks) {
  EXPECT_TRUE(HostAllowed("1.2.3.4", {}));  // no list: everyone
  std::vector<std::string> allow = {"10.0.0.0/8", "192.168.1.7", "172.16.0.0/12"};
  EXPECT_TRUE(HostAllowed("10.200.3.4", allow));
  EXPECT_TRUE(HostAllowed("192.168.1.7", allow));
  EXPECT_FALSE(HostAllowed("192.168.1.8", allow));
  EXPECT_TRUE(HostAllowed("172.31.255.255", allow));
  EXPECT_FALSE(HostAllowed("172.32.0.1", allow));
  EXPECT_FALSE(HostAllowed("11.0.0.1", allow));
  EXPECT_FALSE(HostAllowed("not-an-ip", allow));
  EXPECT_TRUE(HostAllowed("8.8.8.8", {"0.0.0.0/0"}));
  EXPECT_TRUE(ValidateAllowEntry("127.0.0.1").ok());
  EXPECT_FALSE(ValidateAllowEntry("127.0.0.1/40").ok());
}

TEST_F(FrameServerTest, HandshakeRefusedFromAnAddressNotAllowed) {
  ServerOptions opt;
  opt.bind_addr = "127.0.0.1";
  opt.cluster_secret = "a-good-secret";
  opt.allow_hosts = {"10.0.0.0/8"};
  FrameServer server(opt);
  CommandSpec spec;
  spec.internal = true;
  spec.handle = [](const ConnectionPtr& c, const proto::FrameHeader&, std::string) { c->Reply(0); };
  server.Register(220, spec);
  ASSERT_TRUE(server.Start().ok());
  auto conn = BlockingConn::Connect("127.0.0.1", server.port(), 2000);
  ASSERT_TRUE(conn.ok());
  EXPECT_FALSE((*conn)->Authenticate("a-good-secret").ok());
  server.Stop();
}

TEST_F(FrameServerTest, BufferedEchoAndActiveTestOnOneConnection) {
  auto c = Connect();
  for (int i = 0; i < 50; ++i) {
    auto r = c->Call(kEcho, "ping " + std::to_string(i));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->status, 0);
    EXPECT_EQ(r->body, "ping " + std::to_string(i));
  }
  auto r = c->Call(proto::kActiveTest, "");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 0);
}

TEST_F(FrameServerTest, PipelinedRequestsAreAnsweredInOrder) {
  auto c = Connect();
  std::string all;
  for (int i = 0; i < 20; ++i) all += proto::EncodeFrame(kEcho, 0, "n" + std::to_string(i));
  ASSERT_TRUE(c->SendAll(all.data(), all.size()).ok());
  for (int i = 0; i < 20; ++i) {
    auto h = c->RecvHeader(1024);
    ASSERT_TRUE(h.ok());
    std::string body(h->body_len, '\0');
    ASSERT_TRUE(c->RecvExact(body.data(), body.size()).ok());
    EXPECT_EQ(body, "n" + std::to_string(i));
  }
}

TEST_F(FrameServerTest, ReplyFromAnotherThread) {
  auto c = Connect();
  auto r = c->Call(kLater, "async");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 7);
  EXPECT_EQ(r->body, "async");
  auto again = c->Call(kEcho, "after");  // the connection reads again after an async reply
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->body, "after");
}

TEST_F(FrameServerTest, StreamedBodyArrivesWholeAndInOrder) {
  auto c = Connect();
  for (size_t size : {size_t{0}, size_t{1}, size_t{300 << 10}, size_t{5 << 20}}) {
    std::string body(size, '\0');
    for (size_t i = 0; i < size; ++i) body[i] = static_cast<char>(i * 131 + size);
    auto r = c->Call(kSum, body, 1024);
    ASSERT_TRUE(r.ok()) << size;
    EXPECT_EQ(r->body, std::to_string(size) + "/" + std::to_string(Crc32(body)));
  }
}

TEST_F(FrameServerTest, OversizedBodyIsRefusedAndClosed) {
  auto c = Connect();
  ASSERT_TRUE(c->SendHeader(1ULL << 62, kEcho).ok());
  auto h = c->RecvHeader(0);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->status, 22);
  char byte;
  EXPECT_FALSE(c->RecvExact(&byte, 1).ok());  // closed
  auto fresh = Connect();
  EXPECT_TRUE(fresh->Call(kEcho, "still serving").ok());
}

TEST_F(FrameServerTest, UnknownCommandGetsEinvalAndTheConnectionSurvives) {
  auto c = Connect();
  auto r = c->Call(199, "whatever");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 22);
  auto ok = c->Call(kEcho, "alive");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->body, "alive");
}

TEST_F(FrameServerTest, InternalCommandsNeedTheHandshake) {
  auto c = Connect();
  auto refused = c->Call(kInternal, "");
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(refused->status, 13);
  auto bad = Connect();
  ASSERT_FALSE(bad->Authenticate("wrong-secret").ok());
  auto good = Connect();
  ASSERT_TRUE(good->Authenticate("unit-test-secret").ok());
  auto r = good->Call(kInternal, "");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->body, "inside");
  good.reset();  // closing the connection runs its close hook
  EXPECT_TRUE([&] {
    for (int i = 0; i < 500 && closed_hooks_.load() == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return closed_hooks_.load() == 1;
  }());
}

TEST_F(FrameServerTest, QuitClosesTheConnection) {
  auto c = Connect();
  ASSERT_TRUE(c->SendHeader(0, proto::kQuit).ok());
  char byte;
  EXPECT_FALSE(c->RecvExact(&byte, 1).ok());
}

TEST_F(FrameServerTest, ConnectionCountFollowsClients) {
  {
    auto a = Connect();
    auto b = Connect();
    ASSERT_TRUE(a->Call(kEcho, "x").ok());
    ASSERT_TRUE(b->Call(kEcho, "y").ok());
    EXPECT_EQ(server_->connection_count(), 2);
  }
  for (int i = 0; i < 500 && server_->connection_count() != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(server_->connection_count(), 0);
}

}  // namespace
}  // namespace depot::net
