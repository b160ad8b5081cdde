// Internal commands from a client that has not done the cluster-secret handshake: every internal
// command code (the 201 proof without a challenge, 210, 211, 220..224, 230, 231), with empty,
// zero, truncated and random bodies, against both trackers and both members of a group, each on a
// fresh connection. Every daemon refuses it with status 13 and closes the connection before
// reading the body, whether or not it implements the command (codes 200..249 are Depot's
// internal range, doc/protocol.md). Nothing may change: every daemon keeps running and serving, the trackers report the
// same members in the same states, and the file uploaded before is still on both members.
#include <gtest/gtest.h>

#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/base/fs.h"
#include "common/base/hash.h"
#include "tests/harness/harness.h"
#include "tests/integration/raw_wire.h"
#include "tests/integration/replication_util.h"

namespace depot::testing {
namespace {

using wire::Frame;
using wire::Header;
using wire::IsOk;
using wire::Raw;
using wire::RawReply;

constexpr uint8_t kUpload = 11, kDownload = 14, kActiveTest = 111, kProof = 201, kJoin = 210,
                  kHeartbeat = 211, kSyncHello = 220, kSyncRecord = 221, kSyncFlush = 222,
                  kDumpRequest = 223, kDumpDone = 224, kListFiles = 230, kRepair = 231;
const uint8_t kInternal[] = {kProof,      kJoin,         kHeartbeat, kSyncHello, kSyncRecord,
                             kSyncFlush,  kDumpRequest,  kDumpDone,  kListFiles, kRepair};

struct Target {
  std::string name;
  std::string host;
  int port = 0;
  bool tracker = false;
  Daemon* daemon = nullptr;
};

// A valid body for `cmd`, to be cut short.
std::string ValidBody(uint8_t cmd, const std::string& file_name) {
  switch (cmd) {
    case kProof:
      return std::string(32, '\x5A');
    case kJoin:
      return R"({"group":"group1","ip":"127.0.0.9","port":23000,"http_port":0,)"
             R"("store_path_count":1,"subdir_count":256,"upload_priority":10,)"
             R"("version":"x","join_time":1,"up_time":1})";
    case kHeartbeat:
      return R"({"id":"127.0.0.1:1","paths":[{"total_mb":1,"free_mb":1}],"reserved_mb":0,)"
             R"("current_write_path":0,"last_source_update":0,"repl_state":"active"})";
    case kSyncHello:
      return R"({"from":"127.0.0.9:23000","dump":true})";
    case kSyncRecord: {
      // A delete of the uploaded file from a made-up origin: head, then the name.
      std::string b = wire::U64(0x0123456789ABCDEFULL) + wire::U64(1) + wire::U64(0) +
                      wire::U64(0);
      b.push_back('D');
      b.push_back('\0');
      b.push_back(static_cast<char>(file_name.size() >> 8));
      b.push_back(static_cast<char>(file_name.size() & 0xFF));
      return b + file_name;
    }
    case kSyncFlush:
      return "";
    case kDumpRequest:
      return R"({"to":"127.0.0.9:23000"})";
    case kDumpDone:
      return R"({"records":1})";
    case kListFiles:
      return R"({"store_path":0,"dir1":0,"verify":true})";
    case kRepair:
      return R"({"name":")" + file_name + R"(","from_ip":"127.0.0.9","from_port":23000})";
  }
  return "";
}

class InternalAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ClusterOptions o;
    o.trackers = 2;
    o.groups = 1;
    o.per_group = 2;
    cluster_ = std::make_unique<MiniCluster>(o);
    ASSERT_TRUE(cluster_->Start().ok());
    for (int i = 0; i < 2; ++i) {
      targets_.push_back({"tracker" + std::to_string(i), "127.0.0.1", cluster_->tracker(i).port(),
                          true, &cluster_->tracker(i)});
    }
    for (int m = 0; m < 2; ++m) {
      Daemon& d = cluster_->storage(0, m);
      targets_.push_back({"storage" + std::to_string(m), d.host(), d.port(), false, &d});
    }
  }

  // Each tracker's view of the cluster: groups, members, states.
  std::string Snapshot(int tracker) {
    ClientOptions opts = cluster_->ClientOpts();
    opts.trackers = {"127.0.0.1:" + std::to_string(cluster_->tracker(tracker).port())};
    auto client = Client::Create(opts);
    if (!client.ok()) return "client: " + client.status().ToString();
    auto status = (*client)->ClusterStatus();
    if (!status.ok()) return "status: " + status.status().ToString();
    std::ostringstream out;
    for (const auto& g : *status) {
      out << "group " << g.name << " writable " << g.writable << " readable " << g.readable
          << "\n";
      for (const auto& m : g.members) {
        out << "  " << m.id << " " << m.ip << ":" << m.port << " state " << m.state << " "
            << m.state_name << " repl " << m.repl_state << "\n";
      }
    }
    return out.str();
  }

  std::vector<std::string> Snapshots() { return {Snapshot(0), Snapshot(1)}; }

  std::vector<Daemon*> Members() { return GroupMembers(*cluster_, 0, 2); }

  void ExpectAllServing() {
    for (int i = 0; i < 2; ++i) EXPECT_TRUE(cluster_->tracker(i).Running()) << "tracker " << i;
    for (int m = 0; m < 2; ++m) EXPECT_TRUE(cluster_->storage(0, m).Running()) << "storage " << m;
    for (const Target& t : targets_) {
      Raw c(t.host, t.port);
      EXPECT_TRUE(IsOk(c.Call(Frame(kActiveTest, "")), 0)) << t.name;
    }
  }

  // One probe on a fresh connection: `bytes` (a frame, or a header and part of its body).
  void Probe(const Target& t, uint8_t cmd, const std::string& bytes, bool whole_frame,
             const std::string& what) {
    SCOPED_TRACE(t.name + " cmd " + std::to_string(cmd) + " " + what);
    Raw c(t.host, t.port, 10000);
    ASSERT_TRUE(c.connected());
    ASSERT_TRUE(c.Send(bytes));
    // Refused on the header, before any body is read: a non-zero status (13 without the
    // handshake; 22 for a proof over its 64-byte limit), then the connection is closed.
    RawReply r = c.Read(1 << 20);
    if (r.ok) {
      EXPECT_EQ(r.cmd, 100);
      EXPECT_NE(r.status, 0) << "accepted without the handshake";
      EXPECT_TRUE(r.body.empty());
      uint8_t want = (cmd == kProof && bytes.size() - 10 > 64 && whole_frame) ? 22 : 13;
      EXPECT_EQ(r.status, want);
    }
    EXPECT_TRUE(c.WaitClosed(5000)) << "connection left open";
  }

  std::unique_ptr<MiniCluster> cluster_;
  std::vector<Target> targets_;
};

TEST_F(InternalAuthTest, InternalCommandsWithoutHandshakeChangeNothing) {
  // A file on both members first.
  auto client = cluster_->NewClient();
  const std::string data = PatternBytes(100000, 7);
  auto id = client->UploadBuffer(data, {});
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  Expected want;
  want.live[*id] = data;
  ASSERT_EQ(WaitConverged(Members(), want, 30000), "");
  std::vector<std::string> before = Snapshots();
  for (const auto& s : before) {
    ASSERT_EQ(s.find("status:"), std::string::npos) << s;
    ASSERT_NE(s.find("group group1"), std::string::npos) << s;
  }
  ASSERT_EQ(before[0], before[1]);
  const std::string file_name = SplitFileId(*id).second;

  std::mt19937_64 rng(20261127);
  auto random_bytes = [&](size_t n) {
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    return s;
  };
  int probes = 0;
  for (const Target& t : targets_) {
    for (uint8_t cmd : kInternal) {
      std::string valid = ValidBody(cmd, file_name);
      std::string truncated = valid.substr(0, valid.size() / 2);
      if (truncated.empty()) truncated = "{";
      Probe(t, cmd, Frame(cmd, ""), true, "empty body");
      Probe(t, cmd, Frame(cmd, std::string(64, '\0')), true, "64 zero bytes");
      Probe(t, cmd, Frame(cmd, truncated), true, "truncated body");
      Probe(t, cmd, Frame(cmd, random_bytes(1024)), true, "1 KiB of random bytes");
      if (!valid.empty() && cmd != kProof) {
        // The header announces the whole valid body; only half of it arrives. (Not for the
        // proof: it is not refused on its header, the server waits for the rest of it.)
        Probe(t, cmd, Header(valid.size(), cmd) + truncated, false, "half of the announced body");
      }
      // The whole valid body, still without the handshake (for 201: a proof with no challenge).
      if (!valid.empty()) Probe(t, cmd, Frame(cmd, valid), true, "valid body");
      probes += 4 + (valid.empty() ? 0 : 1) + (valid.empty() || cmd == kProof ? 0 : 1);
      if (HasFatalFailure()) return;
    }
  }
  EXPECT_GE(probes, 4 * 10 * 4);

  // The daemons are all up and answer; the trackers still see the same cluster.
  ExpectAllServing();
  std::vector<std::string> after = Snapshots();
  EXPECT_EQ(after[0], before[0]);
  EXPECT_EQ(after[1], before[1]);
  // The file is still on both members, whole.
  EXPECT_EQ(CheckMembers(Members(), want), "");
  // And they do real work: a new upload reaches both members and downloads through a tracker.
  const std::string more = PatternBytes(5000, 8);
  auto id2 = client->UploadBuffer(more, {});
  ASSERT_TRUE(id2.ok()) << id2.status().ToString();
  auto back = client->DownloadToBuffer(*id2);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(*back == more);
  back = client->DownloadToBuffer(*id);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(*back == data);
  want.live[*id2] = more;
  EXPECT_EQ(WaitConverged(Members(), want, 30000), "");
}

TEST_F(InternalAuthTest, HugeSyncRecordWithoutHandshakeIsRefusedUnallocated) {
  // A SYNC_RECORD announcing a 1 TiB body: refused on its header, never allocated.
  for (const Target& t : targets_) {
    SCOPED_TRACE(t.name);
    long peak_before = t.daemon->PeakRssKb();
    ASSERT_GT(peak_before, 0);
    for (int i = 0; i < 3; ++i) {
      Raw c(t.host, t.port);
      ASSERT_TRUE(c.Send(Header(1ULL << 40, kSyncRecord) + std::string(4096, 'r')));
      RawReply r = c.Read(1 << 20);
      if (r.ok) {
        EXPECT_EQ(r.cmd, 100);
        EXPECT_EQ(r.status, 13);  // the internal range, on trackers too
      }
      EXPECT_TRUE(c.WaitClosed(5000)) << "connection left open";
    }
    long peak_after = t.daemon->PeakRssKb();
    EXPECT_LT(peak_after - peak_before, 64 * 1024) << "peak RSS grew by " << peak_after - peak_before
                                                   << " KiB";
    Raw c(t.host, t.port);
    EXPECT_TRUE(IsOk(c.Call(Frame(kActiveTest, "")), 0));
  }
  ExpectAllServing();
  auto client = cluster_->NewClient();
  auto id = client->UploadBuffer("after the huge record", {});
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  auto back = client->DownloadToBuffer(*id);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, "after the huge record");
}

}  // namespace
}  // namespace depot::testing

namespace depot::testing {
namespace {

// An authenticated raw connection to a storage.
std::unique_ptr<Raw> Authenticated(const std::string& host, int port, const std::string& secret) {
  auto c = std::make_unique<Raw>(host, port);
  RawReply nonce = c->Call(Frame(200, ""));
  EXPECT_TRUE(IsOk(nonce, 16));
  EXPECT_TRUE(IsOk(c->Call(Frame(201, HmacSha256(secret, nonce.body))), 0));
  return c;
}

std::string DeleteRecord(uint64_t origin, uint64_t oseq, const std::string& name) {
  std::string b = wire::U64(origin) + wire::U64(oseq) + wire::U64(0) + wire::U64(0);
  b.push_back('D');
  b.push_back('\0');
  b.push_back(static_cast<char>(name.size() >> 8));
  b.push_back(static_cast<char>(name.size() & 0xFF));
  return Frame(kSyncRecord, b + name);
}

// Regression: a pusher keeps several records in flight. When one failed, the receiver answered
// the error but went on with the next queued record and moved the origin's applied position past
// the failed one, which was then never sent again. An error now closes the connection first.
TEST_F(InternalAuthTest, FailedSyncRecordClosesTheConnectionBeforeTheNextOneIsApplied) {
  auto client = cluster_->NewClient();
  auto id = client->UploadBuffer("must survive the pipelined delete", {});
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  std::string name = SplitFileId(*id).second;
  Daemon& m2 = cluster_->storage(0, 1);
  ASSERT_EQ(WaitConverged(Members(), Expected{{{*id, "must survive the pipelined delete"}}, {}, {}},
                          20000), "");
  auto c = Authenticated(m2.host(), m2.port(), cluster_->secret());
  RawReply hello = c->Call(Frame(kSyncHello, R"({"from":"127.0.0.77:1"})"));
  ASSERT_TRUE(IsOk(hello, hello.body_len));
  // Record 1 names a store path the member does not have (refused); record 2, queued behind it
  // on the same connection, would delete the file.
  std::string bad = "M09/00/00/" + name.substr(10);
  ASSERT_TRUE(c->Send(DeleteRecord(0x5151, 1, bad) + DeleteRecord(0x5151, 2, name)));
  RawReply r = c->Read();
  EXPECT_TRUE(r.ok);
  EXPECT_NE(r.status, 0);
  EXPECT_TRUE(c->WaitClosed(5000)) << "connection left open after a failed record";
  auto still = DirectDownload(m2.host(), m2.port(), *id);
  ASSERT_TRUE(still.ok);
  EXPECT_TRUE(still.bytes.has_value()) << "the record queued behind the failed one was applied";
}

// Regression: SYNC_DUMP_REQUEST started a thread streaming the group's whole content to any
// address it named. Only a peer the trackers list is accepted now.
TEST_F(InternalAuthTest, DumpRequestForAServerThatIsNotAPeerIsRefused) {
  Daemon& m1 = cluster_->storage(0, 0);
  auto c = Authenticated(m1.host(), m1.port(), cluster_->secret());
  RawReply r = c->Call(Frame(kDumpRequest, R"({"to":"127.0.0.99:1"})"));
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.status, 13);
  auto log = ReadSmallFile(m1.log_path(), 64 << 20);
  ASSERT_TRUE(log.ok());
  EXPECT_EQ(log->find("catch-up dump to 127.0.0.99"), std::string::npos);
  EXPECT_TRUE(IsOk(c->Call(Frame(kActiveTest, "")), 0));  // the storage still serves
}

}  // namespace
}  // namespace depot::testing
