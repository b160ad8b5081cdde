// Trunk storage against real daemons (doc/trunk.md): small files packed into trunk files, read
// back through the binary protocol and HTTP from both members of a group, deleted, their slots
// reused; 100,000 files with a third deleted and 30,000 more stored (the trunk files do not grow);
// kill -9 during durable trunk uploads loses no acknowledged file and damages no neighbour.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "common/base/hash.h"
#include "common/net/blocking_conn.h"
#include "common/proto/file_id.h"
#include "tests/harness/harness.h"
#include "tests/integration/raw_wire.h"
#include "tests/integration/replication_util.h"

namespace depot::testing {
namespace {

ClusterOptions TrunkCluster(int per_group, bool durable, const std::string& trunk_size) {
  ClusterOptions o;
  o.per_group = per_group;
  o.durable_writes = durable;
  o.extra_storage_conf = "use_trunk_file = on\nslot_min_size = 256\nslot_max_size = 64K\n"
                         "trunk_file_size = " + trunk_size + "\n";
  return o;
}

struct DiskUse {
  uint64_t trunk_files = 0;
  uint64_t trunk_bytes = 0;
  uint64_t data_files = 0;  // files of their own under data/
};

DiskUse Measure(const std::string& store) {
  DiskUse u;
  for (const auto& f : FilesUnder(store + "/trunk")) {
    u.trunk_files++;
    u.trunk_bytes += f.size;
  }
  u.data_files = FilesUnder(store + "/data").size();
  return u;
}

// Uploads on `threads` connections in parallel; returns file ID -> content.
std::map<std::string, std::string> UploadMany(MiniCluster& c, int count, int threads,
                                              uint64_t seed) {
  std::mutex mu;
  std::map<std::string, std::string> out;
  std::atomic<int> next{0}, failed{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      auto client = c.NewClient();
      std::mt19937_64 rng(seed * 1000 + static_cast<uint64_t>(t));
      while (next.fetch_add(1) < count) {
        size_t size = 1024 + rng() % (15 * 1024 + 1);  // 1..16 KiB
        std::string data = PatternBytes(size, rng());
        UploadOptions o;
        o.ext = "jpg";
        auto id = client->UploadBuffer(data, o);
        if (!id.ok()) {
          failed++;
          continue;
        }
        std::lock_guard<std::mutex> l(mu);
        out.emplace(*id, std::move(data));
      }
    });
  }
  for (auto& th : ts) th.join();
  EXPECT_EQ(failed.load(), 0);
  return out;
}

// Downloads every file from `member` directly; returns the number that differ or are missing.
int CountBad(Daemon& member, const std::map<std::string, std::string>& files, int threads) {
  std::vector<std::pair<std::string, std::string>> v(files.begin(), files.end());
  std::atomic<size_t> next{0};
  std::atomic<int> bad{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&] {
      auto conn = net::BlockingConn::Connect(member.host(), member.port(), 2000);
      if (!conn.ok()) {
        bad += 1000000;
        return;
      }
      for (size_t i; (i = next.fetch_add(1)) < v.size();) {
        std::string body;
        proto::AppendU64(&body, 0);
        proto::AppendU64(&body, 0);
        body += GroupAndName(v[i].first);
        auto r = (*conn)->Call(proto::kStorageDownload, body, 1 << 20);
        if (!r.ok() || r->status != 0 || r->body != v[i].second) bad++;
      }
    });
  }
  for (auto& th : ts) th.join();
  return bad.load();
}

TEST(TrunkTest, SmallFilesLiveInTrunksEverywhere) {
  MiniCluster cluster(TrunkCluster(2, false, "2M"));
  ASSERT_TRUE(cluster.Start().ok());
  auto client = cluster.NewClient();
  Expected exp;
  std::vector<std::string> ids;
  for (size_t size : {0u, 1u, 200u, 4096u, 65536u, 65537u, 300000u}) {
    std::string data = PatternBytes(size, size + 1);
    UploadOptions o;
    o.ext = "png";
    auto id = client->UploadBuffer(data, o);
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    auto p = proto::ParseFileId(*id);
    ASSERT_TRUE(p.ok()) << *id;
    // FastDFS's layout: 27 + 16 characters and the suffix; only files up to slot_max_size.
    EXPECT_EQ(p->InTrunk(), size <= 65536) << size << " " << *id;
    if (p->InTrunk()) {
      EXPECT_EQ(p->name.size(), 27u + 16 + 7);
      EXPECT_EQ(proto::SizeFromWord(p->fields.size_word), size);
      EXPECT_EQ(p->fields.crc32, Crc32(data));
    }
    auto back = client->DownloadToBuffer(*id);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(*back, data);
    auto part = client->DownloadToBuffer(*id, size / 3, size / 3);
    if (size >= 3) {
      ASSERT_TRUE(part.ok());
      EXPECT_EQ(*part, data.substr(size / 3, size / 3));
    }
    auto info = client->Info(*id);
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(info->size, size);
    EXPECT_EQ(info->crc32, Crc32(data));
    exp.live[*id] = data;
    ids.push_back(*id);
  }
  // Metadata and slaves of trunk files.
  ASSERT_TRUE(client->SetMeta(ids[3], {{"w", "64"}}, false).ok());
  auto meta = client->GetMeta(ids[3]);
  ASSERT_TRUE(meta.ok());
  EXPECT_EQ(meta->at("w"), "64");
  auto slave = client->UploadSlaveBuffer(ids[3], "_t", "thumb", {});
  ASSERT_TRUE(slave.ok()) << slave.status().ToString();
  EXPECT_FALSE(proto::ParseFileId(*slave)->InTrunk());
  exp.live[*slave] = "thumb";
  ASSERT_EQ(WaitConverged(GroupMembers(cluster, 0, 2), exp, 30000), "");

  // HTTP reads of a trunk file at both members' storaged (nginx falls back to it: doc/trunk.md).
  for (int m = 0; m < 2; ++m) {
    Daemon& d = cluster.storage(0, m);
    auto r = RunProgram({"/usr/bin/curl", "-s", "-f", "http://" + d.host() + ":" +
                                                        std::to_string(d.http_port()) + "/" + ids[3]});
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_EQ(r.out, exp.live[ids[3]]) << "member " << m;
    auto ranged = RunProgram({"/usr/bin/curl", "-s", "-f", "-r", "10-19",
                              "http://" + d.host() + ":" + std::to_string(d.http_port()) + "/" +
                                  ids[3]});
    EXPECT_EQ(ranged.out, exp.live[ids[3]].substr(10, 10));
  }

  // fsck sees the trunk files on both members, intact.
  ClientOptions o = cluster.ClientOpts();
  o.cluster_secret = cluster.secret();
  auto admin = Client::Create(o);
  ASSERT_TRUE(admin.ok());
  auto report = (*admin)->Fsck({"group1", false, true});
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_TRUE(report->clean());
  EXPECT_EQ(report->files, static_cast<int64_t>(exp.live.size()));

  // Delete: gone everywhere; a new file of the same size takes a slot (maybe the freed one) and
  // the deleted ID never reads as the new file's bytes.
  ASSERT_TRUE(client->Delete(ids[3]).ok());
  exp.live.erase(ids[3]);
  exp.deleted.insert(ids[3]);
  ASSERT_EQ(WaitConverged(GroupMembers(cluster, 0, 2), exp, 30000), "");
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // freed slots cool for a second
  std::string fresh = PatternBytes(4096, 999);
  auto id2 = client->UploadBuffer(fresh, {});
  ASSERT_TRUE(id2.ok());
  EXPECT_EQ(client->DownloadToBuffer(ids[3]).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(*client->DownloadToBuffer(*id2), fresh);
  EXPECT_EQ(client->Delete(ids[3]).code(), StatusCode::kNotFound);
}

// The FastDFS frames of doc/protocol.md, byte by byte, against a storage with trunks: an upload
// (11) answers a 60-character trunk name, and download (14), info (22) and delete (12) work on it.
TEST(TrunkTest, HandBuiltFrames) {
  MiniCluster cluster(TrunkCluster(1, false, "2M"));
  ASSERT_TRUE(cluster.Start().ok());
  Daemon& st = cluster.storage(0, 0);
  wire::Raw c(st.host(), st.port());
  std::string data = PatternBytes(3000, 5);
  wire::RawReply up = c.Call(wire::Frame(11, wire::UploadBody(0, "gif", data)));
  ASSERT_TRUE(wire::IsOk(up, 16 + 60));
  std::string remote = up.body.substr(16);
  auto id = proto::ParseRemoteName("group1", remote);
  ASSERT_TRUE(id.ok()) << remote;
  EXPECT_TRUE(id->InTrunk());
  EXPECT_EQ(remote.substr(remote.size() - 4), ".gif");
  wire::RawReply dl = c.Call(wire::Frame(14, wire::DownloadBody(100, 50, "group1", remote)));
  ASSERT_TRUE(wire::IsOk(dl, 50));
  EXPECT_EQ(dl.body, data.substr(100, 50));
  wire::RawReply info = c.Call(wire::Frame(22, wire::GroupAndName("group1", remote)));
  ASSERT_TRUE(wire::IsOk(info, 40));
  EXPECT_EQ(wire::GetU64(info.body, 0), 3000u);
  EXPECT_EQ(static_cast<uint32_t>(wire::GetU64(info.body, 16)), Crc32(data));
  EXPECT_TRUE(wire::IsOk(c.Call(wire::Frame(12, wire::GroupAndName("group1", remote))), 0));
  EXPECT_TRUE(wire::IsError(c.Call(wire::Frame(14, wire::DownloadBody(0, 0, "group1", remote))), 2));
  EXPECT_TRUE(wire::IsError(c.Call(wire::Frame(12, wire::GroupAndName("group1", remote))), 2));
  // A trunk name whose slot cannot hold the size it records is malformed (22), not a read.
  std::string bad = remote;
  bad[10 + 27 + 14] = bad[10 + 27 + 14] == 'A' ? 'B' : 'A';  // the slot size's low bits
  wire::RawReply r = c.Call(wire::Frame(14, wire::DownloadBody(0, 0, "group1", bad)));
  EXPECT_TRUE(wire::IsError(r, 22) || wire::IsError(r, 2));
}

// Done-means 3: 100,000 files of 1-16 KiB in trunks, a third deleted, 30,000 more stored: the
// freed slots are reused (the trunk files' total size does not grow), every live file reads back
// intact from both members, and there are few files on disk.
TEST(TrunkTest, HundredThousandFilesReuseFreedSpace) {
  MiniCluster cluster(TrunkCluster(2, false, "16M"));
  ASSERT_TRUE(cluster.Start().ok());
  auto files = UploadMany(cluster, 100000, 8, 1);
  ASSERT_EQ(files.size(), 100000u);
  for (const auto& [id, data] : files) ASSERT_TRUE(proto::ParseFileId(id)->InTrunk()) << id;
  // Replicated: the second member has them all.
  auto all_there = [&](Daemon& d) { return CountBad(d, files, 4) == 0; };
  ASSERT_TRUE(WaitFor([&] { return all_there(cluster.storage(0, 0)) && all_there(cluster.storage(0, 1)); },
                      120000));
  DiskUse before0 = Measure(cluster.StorePath(0, 0, 0));
  DiskUse before1 = Measure(cluster.StorePath(0, 1, 0));
  EXPECT_LT(before0.trunk_files + before0.data_files, 100u) << "files on disk per 100,000";
  EXPECT_EQ(before0.trunk_bytes, before1.trunk_bytes);

  // Delete every third.
  auto client = cluster.NewClient();
  std::map<std::string, std::string> deleted;
  int i = 0;
  for (auto it = files.begin(); it != files.end();) {
    if (i++ % 3 == 0) {
      ASSERT_TRUE(client->Delete(it->first).ok()) << it->first;
      deleted.insert(*it);
      it = files.erase(it);
    } else {
      ++it;
    }
  }
  ASSERT_EQ(deleted.size(), 33334u);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // freed slots cool for a second
  auto more = UploadMany(cluster, 30000, 8, 2);
  ASSERT_EQ(more.size(), 30000u);
  files.insert(more.begin(), more.end());
  ASSERT_TRUE(WaitFor([&] { return all_there(cluster.storage(0, 0)) && all_there(cluster.storage(0, 1)); },
                      120000));
  DiskUse after0 = Measure(cluster.StorePath(0, 0, 0));
  DiskUse after1 = Measure(cluster.StorePath(0, 1, 0));
  // 30,000 new files in the space of 33,334 freed ones: the trunks did not grow (a new trunk of
  // one size class may still be started where the deleted files of that class were too few).
  EXPECT_LE(after0.trunk_bytes, before0.trunk_bytes + 2 * (16ULL << 20))
      << "before " << before0.trunk_bytes << " after " << after0.trunk_bytes;
  EXPECT_LT(after0.trunk_bytes, before0.trunk_bytes * 105 / 100);
  EXPECT_EQ(after0.trunk_bytes, after1.trunk_bytes);
  // No deleted file reads back (not even as another file's bytes).
  int resurrected = 0;
  for (const auto& [id, data] : deleted) {
    for (int m = 0; m < 2; ++m) {
      auto r = DirectDownload(cluster.storage(0, m).host(), cluster.storage(0, m).port(), id);
      if (!r.ok || r.bytes) resurrected++;
    }
    if (resurrected > 0) break;
  }
  EXPECT_EQ(resurrected, 0);
  std::printf("trunk files: %llu (%llu MiB) for 100,000 uploads; after the deletes and 30,000 "
              "more: %llu (%llu MiB)\n",
              static_cast<unsigned long long>(before0.trunk_files),
              static_cast<unsigned long long>(before0.trunk_bytes >> 20),
              static_cast<unsigned long long>(after0.trunk_files),
              static_cast<unsigned long long>(after0.trunk_bytes >> 20));
}

// kill -9 of a storage in the middle of durable trunk uploads from 16 clients: after the restart
// every acknowledged file reads back intact (neighbours in the same trunk included), and uploads
// go on.
TEST(TrunkCrashTest, KillNineDuringTrunkWritesLosesNothingAcknowledged) {
  MiniCluster cluster(TrunkCluster(1, true, "4M"));
  ASSERT_TRUE(cluster.Start().ok());
  std::mutex mu;
  std::map<std::string, std::string> acked;
  std::atomic<bool> stop{false};
  std::atomic<int> acks{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 16; ++t) {
    ts.emplace_back([&, t] {
      auto client = cluster.NewClient();
      std::mt19937_64 rng(static_cast<uint64_t>(t) + 77);
      while (!stop) {
        std::string data = PatternBytes(1 + rng() % 20000, rng());
        auto id = client->UploadBuffer(data, {});
        if (!id.ok()) continue;
        std::lock_guard<std::mutex> l(mu);
        acked.emplace(*id, std::move(data));
        acks++;
      }
    });
  }
  ASSERT_TRUE(WaitFor([&] { return acks.load() >= 2000; }, 120000));
  cluster.storage(0, 0).Kill9();
  stop = true;
  for (auto& th : ts) th.join();
  ASSERT_TRUE(cluster.storage(0, 0).Start().ok());
  ASSERT_TRUE(cluster.WaitAllActive().ok());
  std::map<std::string, std::string> snapshot;
  {
    std::lock_guard<std::mutex> l(mu);
    snapshot = acked;
  }
  for (const auto& [id, data] : snapshot) {
    ASSERT_TRUE(proto::ParseFileId(id)->InTrunk()) << "not a trunk file: " << id;
  }
  EXPECT_EQ(CountBad(cluster.storage(0, 0), snapshot, 4), 0)
      << "acknowledged trunk files lost or damaged by the crash";
  // Uploads go on into the same trunks and the old files stay intact.
  auto more = UploadMany(cluster, 500, 4, 9);
  EXPECT_EQ(more.size(), 500u);
  EXPECT_EQ(CountBad(cluster.storage(0, 0), more, 4), 0);
  EXPECT_EQ(CountBad(cluster.storage(0, 0), snapshot, 4), 0);
}

}  // namespace
}  // namespace depot::testing
