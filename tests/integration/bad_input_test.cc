// Hostile and broken input against real depot-trackerd and depot-storaged: lengths that lie,
// frames cut short, unknown commands, file IDs that try to escape the store path, bad groups and
// path indexes, oversized metadata, idle and slow clients, internal commands without the
// cluster secret, and a stream of random frames. Every test ends by checking that both daemons
// are still running. Frames are built by hand from doc/protocol.md (raw_wire.h).
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <thread>

#include "common/base/hash.h"
#include "tests/harness/harness.h"
#include "tests/integration/raw_wire.h"

namespace depot::testing {
namespace {

using namespace std::string_literals;
using wire::Frame;
using wire::Header;
using wire::IsError;
using wire::IsOk;
using wire::Pad;
using wire::Raw;
using wire::RawReply;

constexpr uint8_t kUpload = 11, kDelete = 12, kSetMeta = 13, kDownload = 14, kGetMeta = 15,
                  kFileInfo = 22, kFetchOne = 102, kActiveTest = 111, kChallenge = 200,
                  kProof = 201, kJoin = 210, kHeartbeat = 211;

class BadInputTest : public ::testing::Test {
 protected:
  virtual ClusterOptions Options() { return {}; }
  void SetUp() override {
    cluster_ = std::make_unique<MiniCluster>(Options());
    ASSERT_TRUE(cluster_->Start().ok());
  }
  void TearDown() override {
    // Whatever the test sent, both daemons are alive and answer on a fresh connection.
    ASSERT_TRUE(cluster_->tracker(0).Running()) << "tracker died";
    ASSERT_TRUE(cluster_->storage(0, 0).Running()) << "storage died";
    ExpectServes(tracker_port());
    ExpectServes(storage_port());
  }
  int tracker_port() { return cluster_->tracker(0).port(); }
  int storage_port() { return cluster_->storage(0, 0).port(); }

  static void ExpectServes(int port) {
    Raw c(port);
    EXPECT_TRUE(IsOk(c.Call(Frame(kActiveTest, "")), 0)) << "port " << port;
  }
  // Uploads `data` and returns the remote name.
  std::string Upload(std::string_view data) {
    Raw s(storage_port());
    RawReply r = s.Call(Frame(kUpload, wire::UploadBody(0, "txt", data)));
    EXPECT_TRUE(IsOk(r, 60));
    return r.ok && r.body.size() == 60 ? r.body.substr(16) : "";
  }
  // Regular files under a store path's data/ and tmp/.
  size_t FilesUnder(const std::string& sub) {
    size_t n = 0;
    std::error_code ec;
    for (auto& e : std::filesystem::recursive_directory_iterator(
             cluster_->StorePath(0, 0, 0) + "/" + sub, ec)) {
      if (e.is_regular_file()) ++n;
    }
    return n;
  }
  // Descriptors the storage process holds on files of its store path: an upload in progress is
  // one (an unnamed O_TMPFILE inode, or a file under tmp/ where O_TMPFILE is missing).
  size_t OpenStoreFiles() {
    std::string fds = "/proc/" + std::to_string(cluster_->storage(0, 0).pid()) + "/fd";
    std::string prefix = cluster_->StorePath(0, 0, 0) + "/";
    size_t n = 0;
    std::error_code ec;
    for (auto& e : std::filesystem::directory_iterator(fds, ec)) {
      std::error_code lec;
      std::string target = std::filesystem::read_symlink(e.path(), lec).string();
      if (!lec && target.rfind(prefix, 0) == 0 && std::filesystem::is_regular_file(e.path(), lec)) {
        ++n;
      }
    }
    return n;
  }
  // Nothing stored, nothing half-written, nothing left open.
  void ExpectNothingStored() {
    EXPECT_EQ(FilesUnder("data"), 0u);
    EXPECT_EQ(FilesUnder("tmp"), 0u);
    EXPECT_TRUE(WaitFor([&] { return OpenStoreFiles() == 0; }, 5000)) << "upload file left open";
  }
  // Sends `frame` on a fresh connection; expects status `status` and then, if `closes`, a
  // closed connection.
  void ExpectRefused(int port, const std::string& frame, uint8_t status, bool closes,
                     const std::string& what) {
    SCOPED_TRACE(what);
    Raw c(port);
    ASSERT_TRUE(c.Send(frame));
    EXPECT_TRUE(IsError(c.Read(), status));
    if (closes) {
      EXPECT_TRUE(c.WaitClosed(5000)) << "connection left open";
    } else {
      EXPECT_TRUE(IsOk(c.Call(Frame(kActiveTest, "")), 0)) << "connection did not survive";
    }
  }

  std::unique_ptr<MiniCluster> cluster_;
};

TEST_F(BadInputTest, HugeBodyForUploadIsRefusedAndClosed) {
  ExpectRefused(storage_port(), Header(1ULL << 62, kUpload), 22, true, "upload 2^62");
  ExpectRefused(storage_port(), Header(~0ULL, kUpload), 22, true, "upload 2^64-1");
  ExpectNothingStored();
  // A new connection is served normally, uploads included.
  EXPECT_FALSE(Upload("still works").empty());
}

TEST_F(BadInputTest, HugeBodyForSmallCommandIsRefusedAndClosed) {
  ExpectRefused(storage_port(), Header(1ULL << 62, kDownload), 22, true, "download 2^62");
  ExpectRefused(storage_port(), Header(161, kDownload), 22, true, "download over its 160 bytes");
  ExpectRefused(storage_port(), Header(1, kActiveTest), 22, true, "ACTIVE_TEST with a body");
  ExpectRefused(tracker_port(), Header(1ULL << 62, kFetchOne), 22, true, "fetch 2^62");
  ExpectRefused(tracker_port(), Header(1ULL << 62, 177), 22, true, "unknown command, 2^62");
  ExpectRefused(tracker_port(), Header(64 * 1024 + 1, 177), 22, true, "unknown, over 64 KiB");
}

TEST_F(BadInputTest, TruncatedFramesLeaveTheServersFine) {
  // Header says 100 bytes, 10 arrive, then the client goes away.
  for (auto [port, cmd] :
       {std::pair{storage_port(), kDownload}, std::pair{tracker_port(), kFetchOne},
        std::pair{storage_port(), kSetMeta}}) {
    Raw c(port);
    ASSERT_TRUE(c.Send(Header(100, cmd) + std::string(10, 'x')));
    c.Close();
    ExpectServes(port);
  }
  // An upload cut off mid-body: the file being written is dropped and closed.
  // (More than one 256 KiB chunk of a 1 MiB body, so that the disk side has started.)
  const size_t kBody = 1 << 20;
  std::string partial = wire::UploadBody(0, "bin", std::string(kBody, 'z')).substr(0, 300 << 10);
  {
    Raw c(storage_port());
    ASSERT_TRUE(c.Send(Header(15 + kBody, kUpload) + partial));
    ASSERT_TRUE(WaitFor([&] { return OpenStoreFiles() == 1; }, 5000)) << "upload never started";
  }
  ExpectNothingStored();
}

TEST_F(BadInputTest, UnknownCommandGets22AndTheConnectionSurvives) {
  for (int port : {tracker_port(), storage_port()}) {
    Raw c(port);
    EXPECT_TRUE(IsError(c.Call(Frame(177, "hello")), 22)) << port;
    EXPECT_TRUE(IsOk(c.Call(Frame(kActiveTest, "")), 0)) << port;
    EXPECT_TRUE(IsError(c.Call(Frame(0, "")), 22)) << port;
    EXPECT_TRUE(IsError(c.Call(Frame(255, std::string(64 * 1024, 'q'))), 22)) << port;
    EXPECT_TRUE(IsOk(c.Call(Frame(kActiveTest, "")), 0)) << port;
  }
  // Commands that are planned but not implemented yet are unknown too.
  Raw s(storage_port());
  for (uint8_t planned : {21, 23, 24, 34, 36, 38}) {
    EXPECT_TRUE(IsError(s.Call(Frame(planned, "abc")), 22)) << int(planned);
  }
  EXPECT_TRUE(IsOk(s.Call(Frame(kActiveTest, "")), 0));
}

TEST_F(BadInputTest, DotDotInFileIdIs22) {
  ASSERT_FALSE(Upload("a real file").empty());
  const std::string names[] = {
      "M00/../../etc/passwd",
      "M00/../../../../../../../../../../../../../../../../../../../etc/passwd",
      "M00/00/00/../../../../../../etc/passwd.....................txt",
      "M00/00/00/fwAAAWsJFUqAOD_FAAAADIJ3Nzo492..txt",
      "M00/00/00/fwAAAWsJFUqAOD_FAAAADIJ3Nzo492/../../x",
      "../M00/00/fwAAAWsJFUqAOD_FAAAADIJ3Nzo492.txt",
  };
  Raw s(storage_port());
  for (const std::string& n : names) {
    std::string body = wire::GroupAndName("group1", n);
    EXPECT_TRUE(IsError(s.Call(Frame(kDownload, wire::U64(0) + wire::U64(0) + body)), 22)) << n;
    EXPECT_TRUE(IsError(s.Call(Frame(kDelete, body)), 22)) << n;
    EXPECT_TRUE(IsError(s.Call(Frame(kGetMeta, body)), 22)) << n;
    EXPECT_TRUE(IsError(s.Call(Frame(kFileInfo, body)), 22)) << n;
    EXPECT_TRUE(
        IsError(s.Call(Frame(kSetMeta, wire::SetMetaBody('O', "group1", n, "k\x02v"s))), 22))
        << n;
  }
  Raw t(tracker_port());
  EXPECT_TRUE(IsError(t.Call(Frame(kFetchOne, wire::GroupAndName("group1", names[0]))), 22));
  EXPECT_EQ(FilesUnder("data"), 1u);  // the real file is still there, nothing else
}

TEST_F(BadInputTest, BadOrForeignGroupIs22) {
  std::string remote = Upload("group test");
  ASSERT_FALSE(remote.empty());
  Raw s(storage_port());
  // Bad characters, and a group that is not this storage's (group2 does not even exist).
  for (std::string group : {"grp$"s, "gr/up"s, "group1/.."s, "../.."s, "group2"s, "GROUP1"s}) {
    std::string body = wire::GroupAndName(group, remote);
    EXPECT_TRUE(IsError(s.Call(Frame(kDownload, wire::U64(0) + wire::U64(0) + body)), 22)) << group;
    EXPECT_TRUE(IsError(s.Call(Frame(kDelete, body)), 22)) << group;
    EXPECT_TRUE(IsError(s.Call(Frame(kGetMeta, body)), 22)) << group;
    EXPECT_TRUE(IsError(s.Call(Frame(kFileInfo, body)), 22)) << group;
  }
  // A group field with no NUL at all: a valid 16-character name, but not this storage's group.
  EXPECT_TRUE(IsError(s.Call(Frame(kDelete, std::string(16, 'g') + remote)), 22));
  // The file is untouched.
  RawReply r = s.Call(Frame(kDownload, wire::DownloadBody(0, 0, "group1", remote)));
  ASSERT_TRUE(IsOk(r, 10));
  EXPECT_EQ(r.body, "group test");
}

TEST_F(BadInputTest, StorePathIndexOutOfRangeIs22AndStoresNothing) {
  Raw s(storage_port());
  for (uint8_t index : {1, 5, 0xFE}) {
    EXPECT_TRUE(IsError(s.Call(Frame(kUpload, wire::UploadBody(index, "txt", "nope"))), 22))
        << int(index);
  }
  ExpectNothingStored();
}

TEST_F(BadInputTest, FileIdOnMissingStorePathIs22) {
  std::string remote = Upload("on M00");
  ASSERT_FALSE(remote.empty());
  std::string m05 = "M05" + remote.substr(3);
  Raw s(storage_port());
  std::string body = wire::GroupAndName("group1", m05);
  EXPECT_TRUE(IsError(s.Call(Frame(kDownload, wire::U64(0) + wire::U64(0) + body)), 22));
  EXPECT_TRUE(IsError(s.Call(Frame(kDelete, body)), 22));
  EXPECT_TRUE(IsError(s.Call(Frame(kGetMeta, body)), 22));
  EXPECT_TRUE(IsError(s.Call(Frame(kFileInfo, body)), 22));
  EXPECT_TRUE(
      IsError(s.Call(Frame(kSetMeta, wire::SetMetaBody('O', "group1", m05, "k\x02v"s))), 22));
  // Lower-case hex is not FastDFS's either.
  std::string lower = "M0a" + remote.substr(3);
  EXPECT_TRUE(IsError(s.Call(Frame(kDelete, wire::GroupAndName("group1", lower))), 22));
  EXPECT_EQ(FilesUnder("data"), 1u);
}

TEST_F(BadInputTest, OversizedMetadataIs22AndKeepsTheOldSet) {
  std::string remote = Upload("meta");
  ASSERT_FALSE(remote.empty());
  Raw s(storage_port());
  std::string get = wire::GroupAndName("group1", remote);
  auto set = [&](char flag, const std::string& meta) {
    return s.Call(Frame(kSetMeta, wire::SetMetaBody(flag, "group1", remote, meta)));
  };
  ASSERT_TRUE(IsOk(set('O',
                       "a\x02"
                       "1"s),
                   0));
  const std::string key65(65, 'k'), value257(257, 'v');
  for (char flag : {'O', 'M'}) {
    EXPECT_TRUE(IsError(set(flag, key65 + "\x02"
                                          "x"),
                        22))
        << flag;
    EXPECT_TRUE(IsError(set(flag, "b\x02" + value257), 22)) << flag;
    EXPECT_TRUE(IsError(set(flag,
                            "b\x02"
                            "2\x01" +
                                key65 +
                                "\x02"
                                "x"),
                        22))
        << flag;
    EXPECT_TRUE(IsError(set(flag,
                            "\x02"
                            "x"s),
                        22))
        << flag;  // empty key
  }
  RawReply r = s.Call(Frame(kGetMeta, get));
  ASSERT_TRUE(IsOk(r, 3));
  EXPECT_EQ(r.body,
            "a\x02"
            "1"s);
  // The limits themselves are fine: a 64-byte key, a 256-byte value.
  std::string key64(64, 'k'), value256(256, 'v');
  ASSERT_TRUE(IsOk(set('M', key64 + "\x02" + value256), 0));
  r = s.Call(Frame(kGetMeta, get));
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.body,
            "a\x02"
            "1\x01" +
                key64 + "\x02" + value256);
}

class BadInputTimeoutTest : public BadInputTest {
 protected:
  ClusterOptions Options() override {
    ClusterOptions o;
    o.extra_storage_conf = "idle_timeout = 2\nnetwork_timeout = 2\n";
    o.extra_tracker_conf = "idle_timeout = 2\nnetwork_timeout = 2\n";
    return o;
  }
};

TEST_F(BadInputTimeoutTest, IdleClientIsClosedWhileABusyOneIsServed) {
  auto start = std::chrono::steady_clock::now();
  Raw idle_storage(storage_port()), idle_tracker(tracker_port());
  Raw busy(storage_port());
  ASSERT_TRUE(idle_storage.connected() && idle_tracker.connected() && busy.connected());
  int requests = 0;
  bool busy_ok = true;
  bool closed = WaitFor(
      [&] {
        // The busy client keeps working on its one connection.
        busy_ok = busy_ok && IsOk(busy.Call(Frame(kActiveTest, "")), 0);
        if (++requests % 50 == 0) {
          RawReply r = busy.Call(Frame(kUpload, wire::UploadBody(0, "txt", "busy")));
          busy_ok = busy_ok && IsOk(r, 60);
        }
        return !busy_ok || (idle_storage.ClosedNow() && idle_tracker.ClosedNow());
      },
      15000);
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(busy_ok) << "the busy client was cut off after " << requests << " requests";
  EXPECT_TRUE(closed) << "idle connections still open after " << elapsed << " s";
  EXPECT_GE(elapsed, 1.5) << "closed before idle_timeout";
  EXPECT_TRUE(IsOk(busy.Call(Frame(kActiveTest, "")), 0));
}

TEST_F(BadInputTimeoutTest, StalledMidFrameIsClosed) {
  // Half a header, then nothing: network_timeout applies.
  Raw c(storage_port());
  ASSERT_TRUE(c.Send(Header(0, kActiveTest).substr(0, 5)));
  EXPECT_TRUE(c.WaitClosed(10000));
  Raw u(storage_port());
  // Bodies are handed to the disk in 256 KiB chunks: send more than one chunk of a 1 MiB body so
  // that the upload has started on disk when the client stalls.
  const size_t kBody = 1 << 20;
  ASSERT_TRUE(u.Send(Header(15 + kBody, kUpload) +
                     wire::UploadBody(0, "bin", std::string(kBody, 'z')).substr(0, 300 << 10)));
  ASSERT_TRUE(WaitFor([&] { return OpenStoreFiles() == 1; }, 5000)) << "upload never started";
  EXPECT_TRUE(u.WaitClosed(10000));
  ExpectNothingStored();
}

// Regression: a download larger than the server's output high-water mark used to keep the read
// timeout of the request (network_timeout) while the reply was flowing, so a client still
// receiving a large file after network_timeout seconds had its connection cut mid-body.
TEST_F(BadInputTimeoutTest, SlowReaderOfALargeDownloadIsNotCutOff) {
  const size_t kSize = 24 << 20;
  std::string data = PatternBytes(kSize, 11);
  Raw s(storage_port(), 30000);
  RawReply up = s.Call(Frame(kUpload, wire::UploadBody(0, "bin", data)));
  ASSERT_TRUE(IsOk(up, 60));
  ASSERT_TRUE(s.Send(Frame(kDownload, wire::DownloadBody(0, 0, "group1", up.body.substr(16)))));
  std::string head;
  ASSERT_TRUE(s.ReadExact(&head, 10));
  ASSERT_EQ(wire::GetU64(head), kSize);
  ASSERT_EQ(head[9], 0);
  // A slow client: 256 KiB every 50 ms (about 5 s in all, well over both 2 s timeouts, while
  // the server never waits more than 50 ms for the socket to drain). The pauses pace the reader;
  // they synchronise nothing.
  std::string got, piece;
  auto start = std::chrono::steady_clock::now();
  while (got.size() < kSize) {
    size_t n = std::min<size_t>(256 << 10, kSize - got.size());
    ASSERT_TRUE(s.ReadExact(&piece, n))
        << "cut off after " << got.size() << " bytes and "
        << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() << " s";
    got += piece;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(got == data);
  EXPECT_TRUE(IsOk(s.Call(Frame(kActiveTest, "")), 0));
}

TEST_F(BadInputTest, InternalCommandsWithoutHandshakeAre13AndClosed) {
  std::string join = R"({"group":"group1","ip":"127.0.0.1","port":1})";
  std::string hb = R"({"id":"127.0.0.1:1"})";
  ExpectRefused(tracker_port(), Frame(kJoin, join), 13, true, "join");
  ExpectRefused(tracker_port(), Frame(kHeartbeat, hb), 13, true, "heartbeat");
  ExpectRefused(tracker_port(), Frame(kJoin, ""), 13, true, "empty join");
  // A challenge alone does not authenticate.
  Raw c(tracker_port());
  ASSERT_TRUE(IsOk(c.Call(Frame(kChallenge, "")), 16));
  ASSERT_TRUE(c.Send(Frame(kHeartbeat, hb)));
  EXPECT_TRUE(IsError(c.Read(), 13));
  EXPECT_TRUE(c.WaitClosed(5000));
}

TEST_F(BadInputTest, WrongHmacProofIs13AndClosed) {
  for (int port : {tracker_port(), storage_port()}) {
    Raw c(port);
    RawReply nonce = c.Call(Frame(kChallenge, ""));
    ASSERT_TRUE(IsOk(nonce, 16));
    std::string wrong = HmacSha256("not-the-cluster-secret", nonce.body);
    ASSERT_TRUE(c.Send(Frame(kProof, wrong)));
    EXPECT_TRUE(IsError(c.Read(), 13)) << port;
    EXPECT_TRUE(c.WaitClosed(5000)) << port;
    // The right secret over another nonce, a truncated proof, and a proof with no challenge.
    Raw d(port);
    ASSERT_TRUE(IsOk(d.Call(Frame(kChallenge, "")), 16));
    ASSERT_TRUE(d.Send(Frame(kProof, HmacSha256(cluster_->secret(), nonce.body))));
    EXPECT_TRUE(IsError(d.Read(), 13)) << port;
    EXPECT_TRUE(d.WaitClosed(5000));
    Raw e(port);
    RawReply n2 = e.Call(Frame(kChallenge, ""));
    ASSERT_TRUE(IsOk(n2, 16));
    ASSERT_TRUE(e.Send(Frame(kProof, HmacSha256(cluster_->secret(), n2.body).substr(0, 31))));
    EXPECT_TRUE(IsError(e.Read(), 13)) << port;
    ExpectRefused(port, Frame(kProof, std::string(32, '\0')), 13, true, "proof without challenge");
  }
  // The tracker still refuses internal commands on a fresh connection.
  ExpectRefused(tracker_port(), Frame(kHeartbeat, "{}"), 13, true, "after failed proofs");
}

TEST_F(BadInputTest, UploadSizeFieldDisagreeingWithBodyIs22) {
  std::string data = "twelve bytes";
  for (uint64_t lie : {100ULL, 5ULL, 0ULL, ~0ULL}) {
    std::string body = wire::UploadBody(0, "txt", data);
    body.replace(1, 8, wire::U64(lie));
    Raw c(storage_port());
    EXPECT_TRUE(IsError(c.Call(Frame(kUpload, body)), 22)) << lie;
  }
  // Bodies shorter than the 15-byte prefix, and a bad extension.
  for (std::string body : {""s, "\x00"s, std::string(14, '\0')}) {
    Raw c(storage_port());
    EXPECT_TRUE(IsError(c.Call(Frame(kUpload, body)), 22)) << body.size();
  }
  Raw c(storage_port());
  EXPECT_TRUE(IsError(c.Call(Frame(kUpload, wire::UploadBody(0, "t/x", data))), 22));
  EXPECT_TRUE(IsError(c.Call(Frame(kUpload, wire::UploadBody(0, ".txt", data))), 22));
  ExpectNothingStored();
}

TEST_F(BadInputTest, GarbageFramesDoNotCrashEitherDaemon) {
  const uint64_t seed = 20261127;
  std::mt19937_64 rng(seed);
  SCOPED_TRACE("seed " + std::to_string(seed));
  const uint8_t known[] = {kUpload,    kDelete, kSetMeta, kDownload,  kGetMeta, kFileInfo,
                           82,         90,      91,       92,         101,      102,
                           103,        104,     105,      106,        107,      kActiveTest,
                           kChallenge, kProof,  kJoin,    kHeartbeat, 23,       177};
  auto bytes = [&](size_t n) {
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    return s;
  };
  int answered = 0;
  for (int i = 0; i < 1000; ++i) {
    for (int port : {tracker_port(), storage_port()}) {
      Raw c(port, 5000);
      ASSERT_TRUE(c.connected()) << "frame " << i;
      switch (i % 3) {
        case 0:  // pure noise
          c.Send(bytes(1 + rng() % 200));
          break;
        case 1: {  // a well-formed frame of a real command with a random body: always answered
          std::string f = Frame(known[rng() % sizeof known], bytes(rng() % 300),
                                static_cast<uint8_t>(rng() % 4 == 0 ? rng() : 0));
          ASSERT_TRUE(c.Send(f));
          RawReply r = c.Read(1 << 20);
          bool closed = !r.ok && c.WaitClosed(5000);
          ASSERT_TRUE(r.ok || closed) << "frame " << i << " neither answered nor closed";
          if (r.ok) ++answered;
          break;
        }
        case 2: {  // a random header announcing a random (often huge) body, then some noise
          c.Send(Header(rng() >> (rng() % 64), static_cast<uint8_t>(rng()),
                        static_cast<uint8_t>(rng())) +
                 bytes(rng() % 64));
          break;
        }
      }
    }
  }
  EXPECT_GT(answered, 500);  // of about 667 well-formed frames; the rest were QUITs
  EXPECT_TRUE(cluster_->tracker(0).Running());
  EXPECT_TRUE(cluster_->storage(0, 0).Running());
  // And they still do real work.
  std::string remote = Upload("after the storm");
  ASSERT_FALSE(remote.empty());
  Raw s(storage_port());
  RawReply r = s.Call(Frame(kDownload, wire::DownloadBody(0, 0, "group1", remote)));
  ASSERT_TRUE(IsOk(r, 15));
  EXPECT_EQ(r.body, "after the storm");
}

}  // namespace
}  // namespace depot::testing
