// Cluster behaviour with real daemons: tracker failover, two groups, restarts, the reserve.
#include <gtest/gtest.h>

#include <set>

#include "common/net/blocking_conn.h"
#include "common/proto/protocol.h"
#include "tests/harness/harness.h"

namespace depot::testing {
namespace {

TEST(ClusterTest, ClientsKeepWorkingWhenOneOfTwoTrackersDies) {
  MiniCluster cluster(ClusterOptions{.trackers = 2});
  ASSERT_TRUE(cluster.Start().ok());
  auto client = cluster.NewClient();
  auto before = client->UploadBuffer("before", {});
  ASSERT_TRUE(before.ok()) << before.status().ToString();
  for (int dead = 0; dead < 2; ++dead) {
    cluster.tracker(dead).Kill9();
    // Every operation, several times so that the client's tracker rotation hits the dead one.
    for (int i = 0; i < 4; ++i) {
      auto id = client->UploadBuffer("while one tracker is down " + std::to_string(i), {});
      ASSERT_TRUE(id.ok()) << id.status().ToString();
      auto data = client->DownloadToBuffer(*before);
      ASSERT_TRUE(data.ok()) << data.status().ToString();
      EXPECT_EQ(*data, "before");
      ASSERT_TRUE(client->Info(*id).ok());
      ASSERT_TRUE(client->Delete(*id).ok());
    }
    ASSERT_TRUE(cluster.tracker(dead).Start().ok());
    ASSERT_TRUE(cluster.WaitAllActive().ok());
  }
}

TEST(ClusterTest, DeadStorageIsTakenOutOfServiceWithoutWaitingForTheTimeout) {
  // storage_timeout is a minute: only the dropped heartbeat connection can explain a fast OFFLINE.
  MiniCluster cluster(ClusterOptions{.groups = 2, .extra_tracker_conf = "storage_timeout = 60"});
  ASSERT_TRUE(cluster.Start().ok());
  auto client = cluster.NewClient();
  cluster.storage(1, 0).Kill9();
  ASSERT_TRUE(WaitFor(
      [&] {
        auto st = client->ClusterStatus();
        return st.ok() && (*st)[1].members[0].state_name == "OFFLINE";
      },
      5000));
  for (int i = 0; i < 10; ++i) {
    auto id = client->UploadBuffer("only group1 is up", {});
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    EXPECT_EQ(id->substr(0, 7), "group1/");
  }
}

TEST(ClusterTest, AllTrackersDownIsAClearError) {
  MiniCluster cluster(ClusterOptions{.trackers = 2});
  ASSERT_TRUE(cluster.Start().ok());
  auto client = cluster.NewClient();
  cluster.tracker(0).Kill9();
  cluster.tracker(1).Kill9();
  auto id = client->UploadBuffer("nowhere", {});
  EXPECT_EQ(id.status().code(), StatusCode::kUnavailable) << id.status().ToString();
}

TEST(ClusterTest, UploadsSpreadOverTwoGroups) {
  MiniCluster cluster(ClusterOptions{.trackers = 2, .groups = 2});
  ASSERT_TRUE(cluster.Start().ok());
  auto client = cluster.NewClient();
  std::map<std::string, int> per_group;
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) {
    auto id = client->UploadBuffer("spread " + std::to_string(i), {});
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    per_group[id->substr(0, id->find('/'))]++;
    ids.push_back(*id);
  }
  ASSERT_EQ(per_group.size(), 2u);
  EXPECT_GE(per_group["group1"], 5);
  EXPECT_GE(per_group["group2"], 5);
  for (size_t i = 0; i < ids.size(); ++i) {
    auto data = client->DownloadToBuffer(ids[i]);
    ASSERT_TRUE(data.ok());
    EXPECT_EQ(*data, "spread " + std::to_string(i));
  }
  // An explicit group is honoured.
  UploadOptions o;
  o.group = "group2";
  for (int i = 0; i < 4; ++i) {
    auto id = client->UploadBuffer("in group2", o);
    ASSERT_TRUE(id.ok());
    EXPECT_EQ(id->substr(0, 7), "group2/");
  }
  o.group = "group9";
  EXPECT_EQ(client->UploadBuffer("x", o).status().code(), StatusCode::kNotFound);
  auto status = client->ClusterStatus();
  ASSERT_TRUE(status.ok());
  ASSERT_EQ(status->size(), 2u);
  for (const auto& g : *status) {
    ASSERT_EQ(g.members.size(), 1u);
    EXPECT_EQ(g.members[0].state_name, "ACTIVE");
    EXPECT_GT(g.members[0].free_mb, 0);
  }
}

TEST(ClusterTest, RestartOfTrackerAndStorageKeepsEveryFileReachable) {
  MiniCluster cluster(ClusterOptions{.trackers = 1, .groups = 2});
  ASSERT_TRUE(cluster.Start().ok());
  auto client = cluster.NewClient();
  std::vector<std::pair<std::string, std::string>> files;
  for (int i = 0; i < 10; ++i) {
    std::string data = PatternBytes(1000 + static_cast<size_t>(i), static_cast<uint64_t>(i));
    UploadOptions o;
    o.meta = {{"n", std::to_string(i)}};
    auto id = client->UploadBuffer(data, o);
    ASSERT_TRUE(id.ok());
    files.emplace_back(*id, data);
  }
  auto check_all = [&] {
    for (const auto& [id, data] : files) {
      auto back = client->DownloadToBuffer(id);
      ASSERT_TRUE(back.ok()) << id << ": " << back.status().ToString();
      EXPECT_EQ(*back, data);
      auto meta = client->GetMeta(id);
      ASSERT_TRUE(meta.ok()) << meta.status().ToString();
    }
  };
  // Tracker restart: it remembers the members (LevelDB) and they heartbeat back to ACTIVE.
  EXPECT_EQ(cluster.tracker(0).Stop(), 0);
  ASSERT_TRUE(cluster.tracker(0).Start().ok());
  ASSERT_TRUE(cluster.WaitAllActive().ok());
  check_all();
  // Storage restarts, one clean and one kill -9.
  EXPECT_EQ(cluster.storage(0, 0).Stop(), 0);
  ASSERT_TRUE(cluster.storage(0, 0).Start().ok());
  cluster.storage(1, 0).Kill9();
  ASSERT_TRUE(cluster.storage(1, 0).Start().ok());
  ASSERT_TRUE(cluster.WaitAllActive().ok());
  check_all();
}

TEST(ClusterTest, TrackerRemembersMembersAcrossRestartWhileTheyAreDown) {
  MiniCluster cluster(ClusterOptions{.trackers = 1});
  ASSERT_TRUE(cluster.Start().ok());
  cluster.storage(0, 0).Kill9();
  ASSERT_EQ(cluster.tracker(0).Stop(), 0);
  ASSERT_TRUE(cluster.tracker(0).Start().ok());
  auto client = cluster.NewClient();
  auto status = client->ClusterStatus();
  ASSERT_TRUE(status.ok()) << status.status().ToString();
  ASSERT_EQ(status->size(), 1u);
  ASSERT_EQ((*status)[0].members.size(), 1u);
  EXPECT_EQ((*status)[0].members[0].state_name, "OFFLINE");
  EXPECT_FALSE(client->UploadBuffer("x", {}).ok());
  ASSERT_TRUE(cluster.storage(0, 0).Start().ok());
  ASSERT_TRUE(cluster.WaitAllActive().ok());
  EXPECT_TRUE(client->UploadBuffer("x", {}).ok());
}

TEST(ClusterTest, StorageStartsBeforeItsTrackerAndJoinsLater) {
  MiniCluster cluster(ClusterOptions{.trackers = 2});
  ASSERT_TRUE(cluster.Start().ok());
  cluster.tracker(1).Kill9();
  EXPECT_EQ(cluster.storage(0, 0).Stop(), 0);
  ASSERT_TRUE(cluster.storage(0, 0).Start().ok());  // tracker 2 is down: it must still start
  ASSERT_TRUE(cluster.tracker(1).Start().ok());
  ASSERT_TRUE(cluster.WaitAllActive().ok());  // and join tracker 2 once it is up
}

TEST(ClusterTest, ReservedSpaceRefusesUploadsWithEnospc) {
  MiniCluster cluster(ClusterOptions{.extra_storage_conf = "reserved_space = 100%"});
  // The storage joins but is never writable: the tracker has nowhere to store.
  ASSERT_TRUE(cluster.Start().ok());
  auto client = cluster.NewClient();
  auto id = client->UploadBuffer("no room", {});
  EXPECT_EQ(id.status().code(), StatusCode::kResourceExhausted) << id.status().ToString();
  // A client that goes to the storage directly gets ENOSPC (28) from the storage itself.
  auto conn = net::BlockingConn::Connect("127.0.0.1", cluster.storage(0, 0).port(), 2000);
  ASSERT_TRUE(conn.ok());
  std::string body;
  body.push_back('\xFF');
  proto::AppendU64(&body, 5);
  proto::AppendFixed(&body, "txt", 6);
  body += "hello";
  auto r = (*conn)->Call(proto::kStorageUpload, body);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 28);
  EXPECT_TRUE(r->body.empty());
}

}  // namespace
}  // namespace depot::testing
