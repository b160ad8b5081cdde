// Dedup end to end (issue 2, doc/dedup.md): real depot-dhtd nodes, real storage servers with
// dedup = on, real files on disk. Disk use is measured by summing the sizes of the distinct
// inodes under a member's store path (hard links count once).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <xxhash.h>

#include "common/base/hash.h"
#include "common/net/blocking_conn.h"
#include "common/proto/dedup.h"
#include "common/proto/file_id.h"
#include "dht/dht_client.h"
#include "tests/harness/harness.h"
#include "tests/integration/replication_util.h"

namespace depot::testing {
namespace {

// XXH3-128 of the bytes, big-endian (as storage and client compute it).
std::string Fingerprint(const std::string& data) {
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, XXH3_128bits(data.data(), data.size()));
  return std::string(reinterpret_cast<const char*>(c.digest), sizeof c.digest);
}

// Bytes held by distinct inodes (regular files) under a store path's data/ and dedup/.
uint64_t DiskUse(const std::string& store_path) {
  std::set<ino_t> seen;
  uint64_t total = 0;
  for (const char* sub : {"/data", "/dedup"}) {
    for (const FoundFile& f : FilesUnder(store_path + sub)) {
      struct stat st;
      if (stat(f.path.c_str(), &st) != 0) continue;
      if (seen.insert(st.st_ino).second) total += static_cast<uint64_t>(st.st_size);
    }
  }
  return total;
}

// The inode of a file ID on a member (0 when missing).
ino_t InodeOf(MiniCluster& c, int member, const std::string& file_id) {
  auto [group, name] = SplitFileId(file_id);
  auto id = proto::ParseRemoteName(group, name);
  if (!id.ok()) return 0;
  struct stat st;
  std::string full = c.StorePath(0, member, id->store_path) + "/" + id->RelativePath();
  return stat(full.c_str(), &st) == 0 ? st.st_ino : 0;
}

dht::DhtClient DhtOf(MiniCluster& c) {
  dht::DhtClientOptions o;
  for (size_t i = 0; i < c.dht_count(); ++i) o.seeds.push_back("127.0.0.1:" + std::to_string(c.dht(i).port()));
  o.secret = c.secret();
  return dht::DhtClient(o);
}

// The group's dht records: content size -> (canonical, count). Every test gives each content
// its own size, so the size in the key names the content.
std::map<uint64_t, std::pair<std::string, int64_t>> Records(MiniCluster& c) {
  std::map<uint64_t, std::pair<std::string, int64_t>> out;
  auto d = DhtOf(c);
  auto all = d.ScanPrefix(c.GroupName(0) + "/");
  EXPECT_TRUE(all.ok()) << all.status().ToString();
  if (!all.ok()) return out;
  for (const auto& [k, rec] : *all) {
    auto key = proto::ContentKey::Decode(std::string_view(k).substr(c.GroupName(0).size() + 1));
    EXPECT_TRUE(key.ok());
    if (key.ok()) out[key->size] = {rec.value, rec.count};
  }
  return out;
}

ClusterOptions Opts(int members, int dht, bool durable = false) {
  ClusterOptions o;
  o.per_group = members;
  o.dht_nodes = dht;
  o.durable_writes = durable;
  return o;
}

// A client with the cluster secret (dedup-scan is an admin command).
std::unique_ptr<Client> AdminClient(MiniCluster& c) {
  ClientOptions o = c.ClientOpts();
  o.cluster_secret = c.secret();
  auto client = Client::Create(o);
  return client.ok() ? std::move(*client) : nullptr;
}

int64_t SumScanProblems(const std::vector<DedupScanMember>& members) {
  int64_t n = 0;
  for (const auto& m : members) n += static_cast<int64_t>(m.report.problems());
  return n;
}

// Done-means 1.
TEST(DedupTest, TwentyUploadsStoreTheContentOncePerMember) {
  MiniCluster cluster(Opts(2, 2));
  ASSERT_TRUE(cluster.Start().ok());
  auto client = cluster.NewClient();
  auto members = GroupMembers(cluster, 0, 2);
  const std::string data = PatternBytes(8 << 20, 42);
  std::vector<std::string> ids;
  Expected exp;
  for (int i = 0; i < 20; ++i) {
    auto id = client->UploadBuffer(data, {});
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    ids.push_back(*id);
    exp.live[*id] = data;
    // The first copy reaches both members before the others come: then every later upload, to
    // either member, finds it there.
    if (i == 0) {
      ASSERT_EQ(WaitConverged(members, exp, 30000), "");
    }
  }
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), 20u) << "file IDs must differ";
  ASSERT_EQ(WaitConverged(members, exp, 60000), "");
  for (int m = 0; m < 2; ++m) {
    uint64_t used = DiskUse(cluster.StorePath(0, m, 0));
    EXPECT_GE(used, data.size());
    EXPECT_LT(used, data.size() + (1 << 20)) << "member " << m << " stores the content more than once";
    std::set<ino_t> inodes;
    for (const auto& id : ids) inodes.insert(InodeOf(cluster, m, id));
    EXPECT_EQ(inodes.size(), 1u) << "member " << m;
  }
  auto recs = Records(cluster);
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs.begin()->second.second, 20);

  for (int i = 0; i < 19; ++i) {
    ASSERT_TRUE(client->Delete(ids[static_cast<size_t>(i)]).ok());
    exp.live.erase(ids[static_cast<size_t>(i)]);
    exp.deleted.insert(ids[static_cast<size_t>(i)]);
  }
  ASSERT_EQ(WaitConverged(members, exp, 60000), "") << "the last file ID must stay readable";
  recs = Records(cluster);
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs.begin()->second.second, 1);
  for (int m = 0; m < 2; ++m) EXPECT_LT(DiskUse(cluster.StorePath(0, m, 0)), data.size() + (1 << 20));

  ASSERT_TRUE(client->Delete(ids[19]).ok());
  exp.live.clear();
  exp.deleted.insert(ids[19]);
  ASSERT_EQ(WaitConverged(members, exp, 60000), "");
  for (int m = 0; m < 2; ++m) {
    EXPECT_TRUE(WaitFor([&] { return DiskUse(cluster.StorePath(0, m, 0)) == 0; }, 20000))
        << "member " << m << " still holds " << DiskUse(cluster.StorePath(0, m, 0)) << " bytes";
  }
  EXPECT_TRUE(Records(cluster).empty()) << "the record goes with the last reference";
}

// Done-means 2: a test-only hook fixes every fingerprint, so two different contents of the
// same size collide; each upload still reads back its own bytes, on both members.
TEST(DedupTest, CollidingFingerprintsKeepTheirOwnBytes) {
  ClusterOptions o = Opts(2, 2);
  o.storage_wrapper = {"/usr/bin/env", "DEPOT_DEDUP_FIXED_FINGERPRINT=0123456789abcdef0123456789abcdef"};
  MiniCluster cluster(o);
  ASSERT_TRUE(cluster.Start().ok());
  auto client = cluster.NewClient();
  auto members = GroupMembers(cluster, 0, 2);
  Expected exp;
  const std::string a = PatternBytes(1 << 20, 1), b = PatternBytes(1 << 20, 2);
  auto ida = client->UploadBuffer(a, {});
  ASSERT_TRUE(ida.ok());
  exp.live[*ida] = a;
  ASSERT_EQ(WaitConverged(members, exp, 30000), "");
  for (int i = 0; i < 3; ++i) {
    auto idb = client->UploadBuffer(b, {});
    ASSERT_TRUE(idb.ok());
    exp.live[*idb] = b;
    auto ida2 = client->UploadBuffer(a, {});
    ASSERT_TRUE(ida2.ok());
    exp.live[*ida2] = a;
  }
  EXPECT_EQ(WaitConverged(members, exp, 30000), "") << "a collision handed out other bytes";
  for (const auto& [id, bytes] : exp.live) {
    auto got = client->DownloadToBuffer(id);
    ASSERT_TRUE(got.ok());
    EXPECT_TRUE(*got == bytes) << id;
  }
  // The scan keeps them apart too.
  auto scan = AdminClient(cluster)->DedupScan(cluster.GroupName(0), /*repair=*/true);
  ASSERT_TRUE(scan.ok()) << scan.status().ToString();
  EXPECT_EQ(WaitConverged(members, exp, 30000), "");
}

// Done-means 3.
TEST(DedupTest, ConcurrentUploadsOfNewContentEndWithOneCopy) {
  MiniCluster cluster(Opts(2, 2));
  ASSERT_TRUE(cluster.Start().ok());
  auto members = GroupMembers(cluster, 0, 2);
  const std::string data = PatternBytes((1 << 20) + 7, 3);
  std::vector<std::string> ids(16);
  std::vector<std::thread> threads;
  std::atomic<int> failed{0};
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      auto client = cluster.NewClient();
      auto id = client->UploadBuffer(data, {});
      if (!id.ok()) {
        failed++;
        return;
      }
      ids[static_cast<size_t>(t)] = *id;
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(failed.load(), 0);
  Expected exp;
  for (const auto& id : ids) exp.live[id] = data;
  ASSERT_EQ(exp.live.size(), 16u);
  ASSERT_EQ(WaitConverged(members, exp, 60000), "");
  auto recs = Records(cluster);
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs.begin()->second.second, 16) << "exactly 16 references";
  for (int m = 0; m < 2; ++m) {
    std::set<ino_t> inodes;
    for (const auto& id : ids) inodes.insert(InodeOf(cluster, m, id));
    EXPECT_LE(inodes.size(), 2u) << "member " << m << ": at most one extra copy";
  }
  auto client = cluster.NewClient();
  auto scan = AdminClient(cluster)->DedupScan(cluster.GroupName(0), /*repair=*/true);
  ASSERT_TRUE(scan.ok()) << scan.status().ToString();
  for (int m = 0; m < 2; ++m) {
    std::set<ino_t> inodes;
    for (const auto& id : ids) inodes.insert(InodeOf(cluster, m, id));
    EXPECT_EQ(inodes.size(), 1u) << "member " << m << ": the scan leaves one copy";
    EXPECT_LT(DiskUse(cluster.StorePath(0, m, 0)), data.size() * 2);
  }
  recs = Records(cluster);
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs.begin()->second.second, 16);
  EXPECT_EQ(WaitConverged(members, exp, 30000), "");
  auto again = AdminClient(cluster)->DedupScan(cluster.GroupName(0), /*repair=*/false);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(SumScanProblems(*again), 0) << "a repaired group scans clean";
}

// Done-means 4: kill -9 (a crash point) at each step of the dedup path, durable writes on.
TEST(DedupCrashTest, EveryStepOfTheDedupPathSurvivesKillNine) {
  MiniCluster cluster(Opts(1, 2, /*durable=*/true));
  ASSERT_TRUE(cluster.Start().ok());
  auto client = cluster.NewClient();
  Daemon& storage = cluster.storage(0, 0);
  std::map<std::string, std::string> live;  // acknowledged file ID -> bytes
  auto upload = [&](const std::string& bytes) {
    auto id = client->UploadBuffer(bytes, {});
    if (id.ok()) live[*id] = bytes;
    return id.ok();
  };
  auto crash_at = [&](const std::string& point) {
    storage.Stop();
    storage.set_wrapper({"/usr/bin/env", "DEPOT_CRASH_POINT=" + point});
    ASSERT_TRUE(storage.Start().ok());
    ASSERT_TRUE(cluster.WaitAllActive().ok());
  };
  auto restart = [&] {
    ASSERT_TRUE(WaitFor([&] { return !storage.Running(); }, 10000)) << "no crash";
    storage.set_wrapper({});
    ASSERT_TRUE(storage.Start().ok());
    ASSERT_TRUE(cluster.WaitAllActive().ok());
    client = cluster.NewClient();
  };
  // Each content has its own size (the dht key carries it).
  const std::string shared = PatternBytes(300000, 7);
  ASSERT_TRUE(upload(shared));
  ASSERT_TRUE(upload(shared));
  uint64_t next = 300001;
  for (const char* point : {"dedup-hit-after-ref", "dedup-hit-after-index", "dedup-hit-after-link",
                            "dedup-hit-after-binlog"}) {
    SCOPED_TRACE(point);
    crash_at(point);
    EXPECT_FALSE(upload(shared)) << "the crash point was not reached";
    restart();
    ASSERT_TRUE(upload(shared));  // works again after the restart
  }
  {
    SCOPED_TRACE("dedup-miss-after-register");
    std::string fresh = PatternBytes(next++, 99);
    crash_at("dedup-miss-after-register");
    EXPECT_FALSE(upload(fresh));
    restart();
    ASSERT_TRUE(upload(fresh));
    ASSERT_TRUE(upload(fresh));
  }
  for (const char* point : {"dedup-delete-after-unlink", "dedup-delete-after-release"}) {
    SCOPED_TRACE(point);
    std::string victim = live.begin()->first;
    crash_at(point);
    (void)client->Delete(victim);
    restart();
    auto still = client->DownloadToBuffer(victim);
    if (still.ok()) {
      EXPECT_TRUE(*still == live[victim]);
    } else {
      live.erase(victim);  // the delete happened before the crash
    }
  }
  auto scan = AdminClient(cluster)->DedupScan(cluster.GroupName(0), /*repair=*/true);
  ASSERT_TRUE(scan.ok()) << scan.status().ToString();
  for (const auto& [id, bytes] : live) {
    auto got = client->DownloadToBuffer(id);
    ASSERT_TRUE(got.ok()) << id << ": " << got.status().ToString();
    EXPECT_TRUE(*got == bytes) << id;
  }
  std::map<uint64_t, int64_t> want;
  for (const auto& [id, bytes] : live) want[bytes.size()]++;
  auto recs = Records(cluster);
  std::map<uint64_t, int64_t> got;
  for (const auto& [size, rec] : recs) got[size] = rec.second;
  // Files stored during a crash window that were never acknowledged may be on disk (orphans a
  // client never saw): they are live file IDs too, so the counts may exceed `want` by them, but
  // never fall short.
  for (const auto& [size, n] : want) EXPECT_GE(got[size], n) << "size " << size;
  auto again = AdminClient(cluster)->DedupScan(cluster.GroupName(0), /*repair=*/false);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(SumScanProblems(*again), 0) << "the counts equal the live file IDs after the repair";
}

// Done-means 5.
TEST(DedupTest, UploadsSucceedWithoutTheDhtAndAreDeduplicatedLater) {
  MiniCluster cluster(Opts(2, 2));
  ASSERT_TRUE(cluster.Start().ok());
  auto client = cluster.NewClient();
  auto members = GroupMembers(cluster, 0, 2);
  Expected exp;
  const std::string data = PatternBytes(2 << 20, 5);
  cluster.dht(0).Stop();
  cluster.dht(1).Stop();
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) {
    auto id = client->UploadBuffer(data, {});
    ASSERT_TRUE(id.ok()) << "an upload failed because the dht is down: " << id.status().ToString();
    ids.push_back(*id);
    exp.live[*id] = data;
  }
  ASSERT_EQ(WaitConverged(members, exp, 30000), "");
  ASSERT_TRUE(cluster.dht(0).Start().ok());
  ASSERT_TRUE(cluster.dht(1).Start().ok());
  auto scan = AdminClient(cluster)->DedupScan(cluster.GroupName(0), /*repair=*/true);
  ASSERT_TRUE(scan.ok()) << scan.status().ToString();
  for (int m = 0; m < 2; ++m) {
    std::set<ino_t> inodes;
    for (const auto& id : ids) inodes.insert(InodeOf(cluster, m, id));
    EXPECT_EQ(inodes.size(), 1u) << "member " << m;
  }
  auto recs = Records(cluster);
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs.begin()->second.second, 4);
  EXPECT_EQ(WaitConverged(members, exp, 30000), "");

  // One of two nodes down: dedup keeps working. (After the dht was unreachable, a storage skips
  // it for 0.5 s rather than wait on every upload: let that pass first.)
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  cluster.dht(1).Stop();
  auto id = client->UploadBuffer(data, {});
  ASSERT_TRUE(id.ok());
  exp.live[*id] = data;
  ASSERT_EQ(WaitConverged(members, exp, 30000), "");
  for (int m = 0; m < 2; ++m) EXPECT_EQ(InodeOf(cluster, m, *id), InodeOf(cluster, m, ids[0]));
  recs = Records(cluster);
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs.begin()->second.second, 5);
}

// Regression (review): a link the peer cannot make (it lacks the canonical file) travels as
// bytes instead, and the peer ends with the right content.
TEST(DedupTest, ALinkThePeerCannotMakeIsSentWithItsBytes) {
  MiniCluster cluster(Opts(2, 2));
  ASSERT_TRUE(cluster.Start().ok());
  auto client = cluster.NewClient();
  auto members = GroupMembers(cluster, 0, 2);
  const std::string data = PatternBytes(600000, 21);
  auto x = client->UploadBuffer(data, {});
  ASSERT_TRUE(x.ok());
  Expected exp;
  exp.live[*x] = data;
  ASSERT_EQ(WaitConverged(members, exp, 30000), "");
  auto parsed = proto::ParseFileId(*x);
  ASSERT_TRUE(parsed.ok());
  int src = cluster.StorageIp(0, 0) == proto::IpToString(parsed->fields.source_ip) ? 0 : 1;
  int peer = 1 - src;
  // The peer loses its copy of x behind its back while it is down; the source takes y, a hit.
  cluster.storage(0, peer).Stop();
  auto [group, name] = SplitFileId(*x);
  ASSERT_EQ(unlink((cluster.StorePath(0, peer, 0) + "/" + parsed->RelativePath()).c_str()), 0);
  // Until the trackers see the peer gone, an upload may be sent to it: try again then.
  Result<std::string> y = Status::Unavailable("not tried");
  for (int i = 0; i < 40 && !y.ok(); ++i) {
    y = client->UploadBuffer(data, {});
    if (!y.ok()) std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  EXPECT_EQ(InodeOf(cluster, src, *y), InodeOf(cluster, src, *x)) << "y is a link on the source";
  ASSERT_TRUE(cluster.storage(0, peer).Start().ok());
  ASSERT_TRUE(cluster.WaitAllActive().ok());
  Daemon& p = cluster.storage(0, peer);
  EXPECT_TRUE(WaitFor([&] {
    auto r = DirectDownload(p.host(), p.port(), *y);
    return r.bytes && *r.bytes == data;
  }, 30000)) << "the peer never got y's bytes";
}

// Done-means 7: instant upload.
TEST(DedupTest, InstantUploadNeedsTheBytesNotJustTheFingerprint) {
  MiniCluster cluster(Opts(1, 2));
  ASSERT_TRUE(cluster.Start().ok());
  auto client = cluster.NewClient();
  const std::string data = PatternBytes(3 << 20, 11);
  std::string local = cluster.dir() + "/local.bin";
  {
    int fd = open(local.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
    close(fd);
  }
  // Unknown content: not granted (the client then uploads normally).
  auto none = client->InstantUploadFile(local, {});
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_FALSE(none->granted);
  auto first = client->UploadBuffer(data, {});
  ASSERT_TRUE(first.ok());

  // A client that knows only the fingerprint and size: a challenge, then a refusal.
  Daemon& s = cluster.storage(0, 0);
  auto conn = net::BlockingConn::Connect(s.host(), s.port(), 2000);
  ASSERT_TRUE(conn.ok());
  proto::InstantUploadRequest req;
  req.size = data.size();
  req.fp = Fingerprint(data);
  auto r = (*conn)->Call(proto::kDepotInstantUpload, proto::EncodeInstantUpload(req));
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->status, 0) << "the group has the content";
  auto ch = proto::DecodeInstantChallenge(r->body, data.size());
  ASSERT_TRUE(ch.ok());
  EXPECT_FALSE(ch->ranges.empty());
  std::string guess = ch->nonce + std::string(32, 'x');
  auto refused = (*conn)->Call(proto::kDepotInstantProve, guess);
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(refused->status, EACCES);
  // The challenge is spent: even the right proof is refused now.
  std::string bytes;
  for (const auto& rg : ch->ranges) bytes += data.substr(rg.offset, rg.length);
  auto late = (*conn)->Call(proto::kDepotInstantProve, ch->nonce + HmacSha256(ch->nonce, bytes));
  ASSERT_TRUE(late.ok());
  EXPECT_EQ(late->status, EACCES);

  // A client with the bytes gets a new file ID without sending them.
  auto granted = client->InstantUploadFile(local, {});
  ASSERT_TRUE(granted.ok()) << granted.status().ToString();
  ASSERT_TRUE(granted->granted);
  EXPECT_NE(granted->file_id, *first);
  auto got = client->DownloadToBuffer(granted->file_id);
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(*got == data);
  EXPECT_EQ(InodeOf(cluster, 0, granted->file_id), InodeOf(cluster, 0, *first));
  auto recs = Records(cluster);
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs.begin()->second.second, 2);
}

}  // namespace
}  // namespace depot::testing
