// Group replication with real daemons (issue 7): convergence of uploads, deletes and metadata
// over every member, checked by direct downloads from each member.
#include <gtest/gtest.h>

#include <random>

#include "common/proto/metadata.h"
#include "tests/harness/harness.h"
#include "tests/integration/replication_util.h"

namespace depot::testing {
namespace {

TEST(ReplicationTest, ThreeMembersConvergeOnUploadsDeletesAndMetadata) {
  MiniCluster cluster(ClusterOptions{.per_group = 3});
  ASSERT_TRUE(cluster.Start().ok());
  auto client = cluster.NewClient();
  Expected want;
  std::mt19937_64 rng(7);
  std::set<std::string> sources;
  std::vector<std::string> ids;
  for (int i = 0; i < 500; ++i) {
    // Mixed sizes: empty, small, a few KiB, and some over 256 KiB (several stream chunks).
    size_t size = i % 50 == 0 ? 0 : i % 17 == 0 ? 300 * 1024 + (rng() % 100000) : rng() % 9000;
    std::string data = PatternBytes(size, static_cast<uint64_t>(i));
    auto id = client->UploadBuffer(data, {});
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    auto info = client->Info(*id);
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    sources.insert(info->source_ip);
    want.live[*id] = data;
    ids.push_back(*id);
  }
  EXPECT_EQ(sources.size(), 3u) << "uploads were not spread over the members";
  // Delete every fifth file; set metadata on every seventh (merge on some).
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i % 5 == 0) {
      ASSERT_TRUE(client->Delete(ids[i]).ok());
      want.live.erase(ids[i]);
      want.deleted.insert(ids[i]);
    } else if (i % 7 == 0) {
      std::map<std::string, std::string> meta{{"n", std::to_string(i)}, {"kind", "test"}};
      ASSERT_TRUE(client->SetMeta(ids[i], meta, false).ok());
      if (i % 2 == 0) {
        ASSERT_TRUE(client->SetMeta(ids[i], {{"extra", "yes"}}, true).ok());
        meta["extra"] = "yes";
      }
      want.meta[ids[i]] = proto::EncodeMeta(meta);
    }
  }
  std::string why = WaitConverged(GroupMembers(cluster, 0, 3), want, 60000);
  EXPECT_EQ(why, "");
}

}  // namespace
}  // namespace depot::testing

namespace depot::testing {
namespace {

TEST(ReplicationTest, NewMemberCatchesUpBeforeItIsOfferedForReads) {
  MiniCluster cluster(ClusterOptions{.per_group = 2});
  ASSERT_TRUE(cluster.Start().ok());
  auto client = cluster.NewClient();
  Expected want;
  for (int i = 0; i < 1000; ++i) {
    std::string data = PatternBytes(static_cast<size_t>(100 + (i * 37) % 5000), 1000 + i);
    auto id = client->UploadBuffer(data, {});
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    want.live[*id] = data;
  }
  ASSERT_EQ(WaitConverged(GroupMembers(cluster, 0, 2), want, 60000), "");
  ASSERT_TRUE(cluster.AddStorage(0).ok());
  Daemon& fresh = *cluster.storages().back();
  std::string fresh_addr = fresh.host();
  // Until it is ACTIVE, no read is sent to it; once ACTIVE it holds every file.
  bool active = false;
  int asked = 0;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto st = client->ClusterStatus();
        if (st.ok()) {
          for (const auto& m : (*st)[0].members) {
            if (m.port == fresh.port() && m.ip == fresh_addr) active = m.state_name == "ACTIVE";
          }
        }
        if (active) return true;
        for (const auto& [id, bytes] : want.live) {
          auto node = client->QueryFetch(id);
          EXPECT_TRUE(node.ok());
          if (node.ok()) EXPECT_FALSE(node->ip == fresh_addr && node->port == fresh.port());
          if (++asked % 50 == 0) break;
        }
        return false;
      },
      60000));
  std::vector<Daemon*> all = GroupMembers(cluster, 0, 2);
  all.push_back(&fresh);
  EXPECT_EQ(CheckMembers({&fresh}, want), "");  // complete at the moment it became ACTIVE
  EXPECT_EQ(WaitConverged(all, want, 30000), "");
}

}  // namespace
}  // namespace depot::testing
