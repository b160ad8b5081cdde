#include "tracker/cluster_map.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/proto/file_id.h"

namespace depot::tracker {
namespace {

using proto::StorageState;

JoinInfo MakeJoin(const std::string& group, const std::string& ip, int port = 23000,
                  int store_path_count = 1, int upload_priority = 10) {
  JoinInfo j;
  j.group = group;
  j.ip = ip;
  j.port = port;
  j.http_port = 8888;
  j.store_path_count = store_path_count;
  j.upload_priority = upload_priority;
  j.version = "depot-test";
  j.join_time = 1000;
  j.up_time = 2000;
  return j;
}

// One heartbeat with the given (total, free) per store path, in MB.
HeartbeatInfo MakeHb(const std::string& id, std::vector<StorePathSpace> paths,
                     int64_t reserved_mb = 100) {
  HeartbeatInfo hb;
  hb.id = id;
  hb.paths = std::move(paths);
  hb.reserved_mb = reserved_mb;
  return hb;
}

uint32_t Ip(const std::string& s) {
  auto r = proto::ParseIpv4(s);
  EXPECT_TRUE(r.ok()) << s;
  return r.ok() ? *r : 0;
}

class ClusterMapTest : public ::testing::Test {
 protected:
  // Joins and heartbeats a member at time `now_` so that it is ACTIVE with `free_mb` per path.
  std::string AddActive(ClusterMap& map, const std::string& group, const std::string& ip,
                        int64_t free_mb = 1000, int port = 23000, int paths = 1,
                        int priority = 10) {
    auto id = map.Join(MakeJoin(group, ip, port, paths, priority), now_);
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    std::vector<StorePathSpace> space(paths, StorePathSpace{10000, free_mb});
    Status s = map.Heartbeat(*id, MakeHb(*id, space), now_);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return *id;
  }

  static StorageState StateOf(ClusterMap& map, const std::string& group, const std::string& id) {
    for (const auto& m : map.Members(group)) {
      if (m.id == id) return m.state;
    }
    return StorageState::kNone;
  }

  int64_t now_ = 1'700'000'000;
};

TEST_F(ClusterMapTest, JoinMakesOnlineAndHeartbeatActive) {
  ClusterMap map(Policies{});
  auto id = map.Join(MakeJoin("group1", "10.0.0.1", 23000), now_);
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(*id, "10.0.0.1:23000");
  EXPECT_EQ(*id, MemberId("10.0.0.1", 23000));
  EXPECT_EQ(StateOf(map, "group1", *id), StorageState::kOnline);
  // ONLINE is not yet a place to store or read.
  auto t = map.PickStore(std::nullopt);
  EXPECT_EQ(t.status().code(), StatusCode::kResourceExhausted) << t.status().ToString();
  EXPECT_FALSE(map.PickFetch("group1", Ip("10.0.0.1"), false).ok());

  ASSERT_TRUE(map.Heartbeat(*id, MakeHb(*id, {{10000, 5000}}), now_ + 1).ok());
  EXPECT_EQ(StateOf(map, "group1", *id), StorageState::kActive);
  t = map.PickStore(std::nullopt);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->group, "group1");
  EXPECT_EQ(t->ip, "10.0.0.1");
  EXPECT_EQ(t->port, 23000);
  EXPECT_EQ(t->store_path, 0);
}

TEST_F(ClusterMapTest, JoinRejectsBadInfo) {
  ClusterMap map(Policies{});
  EXPECT_TRUE(map.Join(MakeJoin("", "10.0.0.1"), now_).status().IsInvalidArgument());
  EXPECT_TRUE(map.Join(MakeJoin("bad/group", "10.0.0.1"), now_).status().IsInvalidArgument());
  EXPECT_TRUE(map.Join(MakeJoin("group_name_too_long", "10.0.0.1"), now_)
                  .status()
                  .IsInvalidArgument());
  EXPECT_TRUE(map.Join(MakeJoin("group1", "10.0.0.1", 0), now_).status().IsInvalidArgument());
  EXPECT_TRUE(map.Join(MakeJoin("group1", "10.0.0.1", 65536), now_).status().IsInvalidArgument());
  EXPECT_TRUE(
      map.Join(MakeJoin("group1", "10.0.0.1", 23000, 0), now_).status().IsInvalidArgument());
  EXPECT_TRUE(
      map.Join(MakeJoin("group1", "10.0.0.1", 23000, 257), now_).status().IsInvalidArgument());
  EXPECT_TRUE(map.AllGroupStats().empty()) << "a rejected join must not create a group";
}

TEST_F(ClusterMapTest, HeartbeatFromUnknownIdIsNotFound) {
  ClusterMap map(Policies{});
  EXPECT_TRUE(map.Heartbeat("10.0.0.9:23000", MakeHb("10.0.0.9:23000", {{1, 1}}), now_)
                  .IsNotFound());
  AddActive(map, "group1", "10.0.0.1");
  EXPECT_TRUE(map.Heartbeat("10.0.0.1:23001", MakeHb("10.0.0.1:23001", {{1, 1}}), now_)
                  .IsNotFound());
}

TEST_F(ClusterMapTest, ExpireStaleMakesOfflineAndHeartbeatMustRejoin) {
  ClusterMap map(Policies{});  // storage_timeout = 30
  std::string id = AddActive(map, "group1", "10.0.0.1");
  map.ExpireStale(now_ + 30);  // exactly the timeout: still fine
  EXPECT_EQ(StateOf(map, "group1", id), StorageState::kActive);
  ASSERT_TRUE(map.PickStore(std::nullopt).ok());

  map.ExpireStale(now_ + 31);
  EXPECT_EQ(StateOf(map, "group1", id), StorageState::kOffline);
  EXPECT_EQ(map.PickStore(std::nullopt).status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(map.PickStore(std::string("group1")).status().code(), StatusCode::kResourceExhausted);
  EXPECT_TRUE(map.PickFetch("group1", Ip("10.0.0.1"), false).status().IsNotFound());

  // A late heartbeat does not revive it: the storage must join again.
  Status s = map.Heartbeat(id, MakeHb(id, {{10000, 5000}}), now_ + 32);
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();
  EXPECT_EQ(StateOf(map, "group1", id), StorageState::kOffline);

  ASSERT_TRUE(map.Join(MakeJoin("group1", "10.0.0.1"), now_ + 33).ok());
  EXPECT_EQ(StateOf(map, "group1", id), StorageState::kOnline);
  ASSERT_TRUE(map.Heartbeat(id, MakeHb(id, {{10000, 5000}}), now_ + 34).ok());
  EXPECT_EQ(StateOf(map, "group1", id), StorageState::kActive);
  EXPECT_TRUE(map.PickStore(std::nullopt).ok());
}

TEST_F(ClusterMapTest, HeartbeatsKeepAMemberAlive) {
  ClusterMap map(Policies{});
  std::string id = AddActive(map, "group1", "10.0.0.1");
  for (int i = 1; i <= 10; ++i) {
    ASSERT_TRUE(map.Heartbeat(id, MakeHb(id, {{10000, 5000}}), now_ + 20 * i).ok());
    map.ExpireStale(now_ + 20 * i + 25);
    EXPECT_EQ(StateOf(map, "group1", id), StorageState::kActive) << i;
  }
}

TEST_F(ClusterMapTest, JoinedMemberThatNeverHeartbeatsExpires) {
  ClusterMap map(Policies{});
  auto id = map.Join(MakeJoin("group1", "10.0.0.1"), now_);
  ASSERT_TRUE(id.ok());
  map.ExpireStale(now_ + 31);
  EXPECT_EQ(StateOf(map, "group1", *id), StorageState::kOffline);
}

TEST_F(ClusterMapTest, StorageTimeoutIsThePolicy) {
  Policies p;
  p.storage_timeout = 5;
  ClusterMap map(p);
  std::string id = AddActive(map, "group1", "10.0.0.1");
  map.ExpireStale(now_ + 5);
  EXPECT_EQ(StateOf(map, "group1", id), StorageState::kActive);
  map.ExpireStale(now_ + 6);
  EXPECT_EQ(StateOf(map, "group1", id), StorageState::kOffline);
}

TEST_F(ClusterMapTest, RoundRobinAlternatesBetweenTwoGroups) {
  ClusterMap map(Policies{});
  AddActive(map, "group1", "10.0.0.1");
  AddActive(map, "group2", "10.0.0.2");
  std::vector<std::string> picked;
  for (int i = 0; i < 6; ++i) {
    auto t = map.PickStore(std::nullopt);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    picked.push_back(t->group);
    EXPECT_EQ(t->ip, t->group == "group1" ? "10.0.0.1" : "10.0.0.2");
  }
  for (int i = 1; i < 6; ++i) EXPECT_NE(picked[i], picked[i - 1]) << i;
  EXPECT_EQ(std::set<std::string>(picked.begin(), picked.end()),
            (std::set<std::string>{"group1", "group2"}));
}

TEST_F(ClusterMapTest, RoundRobinSkipsAFullGroup) {
  ClusterMap map(Policies{});
  AddActive(map, "group1", "10.0.0.1", /*free_mb=*/50);  // below reserved (100)
  AddActive(map, "group2", "10.0.0.2");
  for (int i = 0; i < 4; ++i) {
    auto t = map.PickStore(std::nullopt);
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(t->group, "group2");
  }
}

TEST_F(ClusterMapTest, RoundRobinAlternatesBetweenMembers) {
  ClusterMap map(Policies{});
  AddActive(map, "group1", "10.0.0.1");
  AddActive(map, "group1", "10.0.0.2");
  std::vector<std::string> ips;
  for (int i = 0; i < 4; ++i) {
    auto t = map.PickStore(std::string("group1"));
    ASSERT_TRUE(t.ok());
    ips.push_back(t->ip);
  }
  EXPECT_NE(ips[0], ips[1]);
  EXPECT_EQ(ips[0], ips[2]);
  EXPECT_EQ(ips[1], ips[3]);
}

TEST_F(ClusterMapTest, SpecifiedLookupAlwaysPicksStoreGroup) {
  Policies p;
  p.store_lookup = "specified";
  p.store_group = "group2";
  ClusterMap map(p);
  AddActive(map, "group1", "10.0.0.1", 90000);
  AddActive(map, "group2", "10.0.0.2", 1000);
  AddActive(map, "group3", "10.0.0.3", 90000);
  for (int i = 0; i < 5; ++i) {
    auto t = map.PickStore(std::nullopt);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    EXPECT_EQ(t->group, "group2");
    EXPECT_EQ(t->ip, "10.0.0.2");
  }
  auto all = map.PickStoreAll(std::nullopt);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].group, "group2");
  // A group named by the client wins over the policy.
  auto t = map.PickStore(std::string("group3"));
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->group, "group3");
}

TEST_F(ClusterMapTest, SpecifiedLookupOfAnUnknownOrFullGroupFails) {
  Policies p;
  p.store_lookup = "specified";
  p.store_group = "group9";
  ClusterMap map(p);
  AddActive(map, "group1", "10.0.0.1");
  EXPECT_TRUE(map.PickStore(std::nullopt).status().IsNotFound());

  Policies q = p;
  q.store_group = "group1";
  ClusterMap full(q);
  AddActive(full, "group1", "10.0.0.1", /*free_mb=*/100);  // == reserved
  AddActive(full, "group2", "10.0.0.2");
  // Specified means specified: no fallback to another group.
  EXPECT_EQ(full.PickStore(std::nullopt).status().code(), StatusCode::kResourceExhausted);
}

TEST_F(ClusterMapTest, MostFreeLookupPicksTheGroupWithMostFreeSpace) {
  Policies p;
  p.store_lookup = "most_free";
  ClusterMap map(p);
  std::string a = AddActive(map, "group1", "10.0.0.1", 1000);
  std::string b = AddActive(map, "group2", "10.0.0.2", 5000);
  AddActive(map, "group3", "10.0.0.3", 3000);
  for (int i = 0; i < 3; ++i) {
    auto t = map.PickStore(std::nullopt);
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(t->group, "group2");
  }
  // Space changes with the next heartbeats.
  ASSERT_TRUE(map.Heartbeat(a, MakeHb(a, {{10000, 9000}}), now_ + 1).ok());
  ASSERT_TRUE(map.Heartbeat(b, MakeHb(b, {{10000, 200}}), now_ + 1).ok());
  auto t = map.PickStore(std::nullopt);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->group, "group1");
}

TEST_F(ClusterMapTest, MostFreeServerPicksTheMemberWithMostFreeSpace) {
  Policies p;
  p.store_server = "most_free";
  ClusterMap map(p);
  AddActive(map, "group1", "10.0.0.1", 1000);
  AddActive(map, "group1", "10.0.0.2", 8000);
  AddActive(map, "group1", "10.0.0.3", 4000);
  for (int i = 0; i < 3; ++i) {
    auto t = map.PickStore(std::string("group1"));
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(t->ip, "10.0.0.2");
  }
}

TEST_F(ClusterMapTest, FirstByPriorityPicksTheLowestUploadPriority) {
  Policies p;
  p.store_server = "first_by_priority";
  ClusterMap map(p);
  AddActive(map, "group1", "10.0.0.1", 9000, 23000, 1, /*priority=*/20);
  AddActive(map, "group1", "10.0.0.2", 1000, 23000, 1, /*priority=*/5);
  AddActive(map, "group1", "10.0.0.3", 5000, 23000, 1, /*priority=*/10);
  for (int i = 0; i < 3; ++i) {
    auto t = map.PickStore(std::string("group1"));
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(t->ip, "10.0.0.2");
  }
  // When the first is full, the next by priority takes the upload.
  ASSERT_TRUE(map.Heartbeat("10.0.0.2:23000", MakeHb("10.0.0.2:23000", {{10000, 10}}), now_).ok());
  auto t = map.PickStore(std::string("group1"));
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->ip, "10.0.0.3");
}

TEST_F(ClusterMapTest, MemberAtReservedSpaceIsNotWritable) {
  ClusterMap map(Policies{});
  std::string id = AddActive(map, "group1", "10.0.0.1");
  // free == reserved: full.
  ASSERT_TRUE(map.Heartbeat(id, MakeHb(id, {{10000, 500}}, 500), now_).ok());
  auto t = map.PickStore(std::string("group1"));
  EXPECT_EQ(t.status().code(), StatusCode::kResourceExhausted) << t.status().ToString();
  EXPECT_EQ(map.PickStore(std::nullopt).status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(map.PickStoreAll(std::string("group1")).status().code(),
            StatusCode::kResourceExhausted);
  // Still readable.
  auto f = map.PickFetch("group1", Ip("10.0.0.1"), false);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ((*f)[0].ip, "10.0.0.1");
  auto gs = map.GroupStat("group1");
  ASSERT_TRUE(gs.ok());
  EXPECT_EQ(gs->readable_count, 1);
  EXPECT_EQ(gs->writable_count, 0);

  // One MB more than reserved: writable again.
  ASSERT_TRUE(map.Heartbeat(id, MakeHb(id, {{10000, 501}}, 500), now_).ok());
  EXPECT_TRUE(map.PickStore(std::string("group1")).ok());
}

TEST_F(ClusterMapTest, StorePathSkipsFullPaths) {
  ClusterMap map(Policies{});
  auto id = map.Join(MakeJoin("group1", "10.0.0.1", 23000, 3), now_);
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(map.Heartbeat(*id, MakeHb(*id, {{1000, 50}, {1000, 600}, {1000, 100}}, 100), now_)
                  .ok());
  for (int i = 0; i < 4; ++i) {
    auto t = map.PickStore(std::nullopt);
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(t->store_path, 1);
  }
}

TEST_F(ClusterMapTest, StorePathRoundRobinAndMostFree) {
  {
    ClusterMap map(Policies{});
    auto id = map.Join(MakeJoin("group1", "10.0.0.1", 23000, 2), now_);
    ASSERT_TRUE(id.ok());
    ASSERT_TRUE(map.Heartbeat(*id, MakeHb(*id, {{1000, 500}, {1000, 900}}), now_).ok());
    std::vector<int> paths;
    for (int i = 0; i < 4; ++i) paths.push_back(map.PickStore(std::nullopt)->store_path);
    EXPECT_EQ(paths, (std::vector<int>{0, 1, 0, 1}));
  }
  {
    Policies p;
    p.store_path = "most_free";
    ClusterMap map(p);
    auto id = map.Join(MakeJoin("group1", "10.0.0.1", 23000, 3), now_);
    ASSERT_TRUE(id.ok());
    ASSERT_TRUE(
        map.Heartbeat(*id, MakeHb(*id, {{1000, 500}, {1000, 200}, {1000, 900}}), now_).ok());
    for (int i = 0; i < 3; ++i) EXPECT_EQ(map.PickStore(std::nullopt)->store_path, 2);
  }
}

TEST_F(ClusterMapTest, UnknownGroupIsNotFound) {
  ClusterMap map(Policies{});
  AddActive(map, "group1", "10.0.0.1");
  EXPECT_TRUE(map.PickStore(std::string("group2")).status().IsNotFound());
  EXPECT_TRUE(map.PickStoreAll(std::string("group2")).status().IsNotFound());
  EXPECT_TRUE(map.PickFetch("group2", Ip("10.0.0.1"), false).status().IsNotFound());
  EXPECT_TRUE(map.PickFetch("group2", Ip("10.0.0.1"), true).status().IsNotFound());
  EXPECT_TRUE(map.PickUpdate("group2", Ip("10.0.0.1")).status().IsNotFound());
  EXPECT_TRUE(map.GroupStat("group2").status().IsNotFound());
  EXPECT_TRUE(map.StorageStats("group2", "").status().IsNotFound());
  EXPECT_TRUE(map.Members("group2").empty());
}

TEST_F(ClusterMapTest, EmptyClusterCannotStore) {
  ClusterMap map(Policies{});
  EXPECT_EQ(map.PickStore(std::nullopt).status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(map.PickStoreAll(std::nullopt).status().code(), StatusCode::kResourceExhausted);
  EXPECT_TRUE(map.AllGroupStats().empty());
}

TEST_F(ClusterMapTest, PickStoreAllListsWritableMembers) {
  ClusterMap map(Policies{});
  AddActive(map, "group1", "10.0.0.1", 1000, 23000);
  AddActive(map, "group1", "10.0.0.2", 1000, 23001);
  AddActive(map, "group1", "10.0.0.3", /*free_mb=*/10);              // full
  ASSERT_TRUE(map.Join(MakeJoin("group1", "10.0.0.4"), now_).ok());  // ONLINE only
  AddActive(map, "group2", "10.0.0.5");
  auto all = map.PickStoreAll(std::string("group1"));
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  std::map<std::string, int> got;
  for (const auto& t : *all) {
    EXPECT_EQ(t.group, "group1");
    got[t.ip] = t.port;
  }
  EXPECT_EQ(got, (std::map<std::string, int>{{"10.0.0.1", 23000}, {"10.0.0.2", 23001}}));
}

TEST_F(ClusterMapTest, PickFetchOffersOnlyMembersThatHoldTheFile) {
  ClusterMap map(Policies{});
  std::string m1 = AddActive(map, "group1", "10.0.0.1");
  std::string src = AddActive(map, "group1", "10.0.0.2", 1000, 23002);
  std::string m3 = AddActive(map, "group1", "10.0.0.3");
  constexpr uint32_t kCreated = 5000;
  // No sync report yet: only the source is known to hold the file.
  for (int i = 0; i < 4; ++i) {
    auto one = map.PickFetch("group1", Ip("10.0.0.2"), false, kCreated);
    ASSERT_TRUE(one.ok()) << one.status().ToString();
    ASSERT_EQ(one->size(), 1u);
    EXPECT_EQ((*one)[0].ip, "10.0.0.2");
    EXPECT_EQ((*one)[0].port, 23002);
    EXPECT_EQ((*one)[0].group, "group1");
  }
  auto all = map.PickFetch("group1", Ip("10.0.0.2"), true, kCreated);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 1u);

  // The source reports that 10.0.0.1 holds everything created up to kCreated, 10.0.0.3 only
  // up to a second before.
  HeartbeatInfo hb = MakeHb(src, {{10000, 1000}});
  hb.sync.push_back({m1, kCreated, 0, 0, true});
  hb.sync.push_back({m3, kCreated - 1, 4, 2, true});
  ASSERT_TRUE(map.Heartbeat(src, hb, now_).ok());
  all = map.PickFetch("group1", Ip("10.0.0.2"), true, kCreated);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].ip, "10.0.0.2");  // the source first
  EXPECT_EQ((*all)[1].ip, "10.0.0.1");
  std::set<std::string> seen;
  for (int i = 0; i < 6; ++i) {
    auto one = map.PickFetch("group1", Ip("10.0.0.2"), false, kCreated);
    ASSERT_TRUE(one.ok());
    seen.insert((*one)[0].ip);
  }
  EXPECT_EQ(seen, (std::set<std::string>{"10.0.0.1", "10.0.0.2"}));  // reads spread over holders
  // An older file is held by all three.
  all = map.PickFetch("group1", Ip("10.0.0.2"), true, kCreated - 10);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 3u);

  auto upd = map.PickUpdate("group1", Ip("10.0.0.2"), kCreated);
  ASSERT_TRUE(upd.ok());
  EXPECT_EQ(upd->ip, "10.0.0.2");
}

TEST_F(ClusterMapTest, RestartedTrackerSendsClientsElsewhereUntilTheSourceRejoins) {
  // Regression: right after a tracker restart, a file's source that had not joined again was
  // taken for dead and every member offered, so fresh files were read from members lacking them.
  ClusterMap map(Policies{});  // storage_timeout 30
  map.Restore(MakeJoin("group1", "10.0.0.1"));
  map.Started(now_);
  AddActive(map, "group1", "10.0.0.2");
  auto early = map.PickFetch("group1", Ip("10.0.0.1"), false, 100, now_ + 1);
  EXPECT_TRUE(early.status().IsNotFound()) << early.status().ToString();
  EXPECT_TRUE(map.PickUpdate("group1", Ip("10.0.0.1"), 100, now_ + 1).status().IsNotFound());
  // After the grace period the FastDFS fallback applies again: any ACTIVE member.
  auto late = map.PickFetch("group1", Ip("10.0.0.1"), false, 100, now_ + 31);
  ASSERT_TRUE(late.ok()) << late.status().ToString();
  EXPECT_EQ((*late)[0].ip, "10.0.0.2");
  // A source that has joined since is no longer waited for (it is ACTIVE: it holds its files).
  AddActive(map, "group1", "10.0.0.1");
  auto joined = map.PickFetch("group1", Ip("10.0.0.1"), true, 100, now_ + 2);
  ASSERT_TRUE(joined.ok());
  EXPECT_EQ((*joined)[0].ip, "10.0.0.1");
}

TEST_F(ClusterMapTest, ASourceBetweenItsJoinAndFirstHeartbeatIsNotTakenForDead) {
  // Regression: a source that had joined but not yet sent its first heartbeat (ONLINE) counted
  // as down, so every ACTIVE member was offered for its newest files (ENOENT at the member).
  ClusterMap map(Policies{});
  AddActive(map, "group1", "10.0.0.1");
  auto id = map.Join(MakeJoin("group1", "10.0.0.2"), now_);
  ASSERT_TRUE(id.ok());
  auto early = map.PickFetch("group1", Ip("10.0.0.2"), true, 100, now_ + 100);
  EXPECT_TRUE(early.status().IsNotFound()) << early.status().ToString();
  ASSERT_TRUE(map.Heartbeat(*id, MakeHb(*id, {{10000, 1000}}), now_).ok());
  auto later = map.PickFetch("group1", Ip("10.0.0.2"), true, 100, now_ + 100);
  ASSERT_TRUE(later.ok()) << later.status().ToString();
  EXPECT_EQ((*later)[0].ip, "10.0.0.2");
}

TEST_F(ClusterMapTest, MembersCatchingUpAreNotOffered) {
  ClusterMap map(Policies{});
  AddActive(map, "group1", "10.0.0.1");
  auto id = map.Join(MakeJoin("group1", "10.0.0.2"), now_);
  ASSERT_TRUE(id.ok());
  HeartbeatInfo hb = MakeHb(*id, {{10000, 1000}});
  hb.repl_state = "syncing";
  ASSERT_TRUE(map.Heartbeat(*id, hb, now_).ok());
  auto members = map.Members("group1");
  for (const auto& m : members) {
    if (m.id == *id) EXPECT_EQ(m.state, StorageState::kSyncing);
  }
  for (int i = 0; i < 4; ++i) {
    auto st = map.PickStore(std::string("group1"));
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(st->ip, "10.0.0.1");
    auto f = map.PickFetch("group1", Ip("10.0.0.9"), false, 100);  // unknown source: any ACTIVE
    ASSERT_TRUE(f.ok());
    EXPECT_EQ((*f)[0].ip, "10.0.0.1");
  }
  hb.repl_state = "active";
  ASSERT_TRUE(map.Heartbeat(*id, hb, now_).ok());
  auto all = map.PickStoreAll(std::string("group1"));
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 2u);
}

TEST_F(ClusterMapTest, PickFetchFallsBackWhenTheSourceIsDown) {
  ClusterMap map(Policies{});
  AddActive(map, "group1", "10.0.0.1");
  now_ += 20;
  AddActive(map, "group1", "10.0.0.2");
  map.ExpireStale(now_ + 15);  // 10.0.0.1 is 35 s late, 10.0.0.2 15 s
  auto one = map.PickFetch("group1", Ip("10.0.0.1"), false);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ((*one)[0].ip, "10.0.0.2");
  auto all = map.PickFetch("group1", Ip("10.0.0.1"), true);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 1u);
  auto upd = map.PickUpdate("group1", Ip("10.0.0.1"));
  ASSERT_TRUE(upd.ok());
  EXPECT_EQ(upd->ip, "10.0.0.2");

  // A source that is not a member at all (file from a removed server): any active member.
  auto other = map.PickFetch("group1", Ip("192.168.9.9"), false);
  ASSERT_TRUE(other.ok());
  EXPECT_EQ((*other)[0].ip, "10.0.0.2");
}

TEST_F(ClusterMapTest, GroupStatFields) {
  ClusterMap map(Policies{});
  auto a = map.Join(MakeJoin("group1", "10.0.0.1", 23000, 2), now_);
  auto b = map.Join(MakeJoin("group1", "10.0.0.2", 23000, 1), now_);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(map.Heartbeat(*a, MakeHb(*a, {{3000, 1500}, {3000, 1000}}, 100), now_).ok());
  ASSERT_TRUE(map.Heartbeat(*b, MakeHb(*b, {{4000, 700}}, 300), now_).ok());
  ASSERT_TRUE(map.Join(MakeJoin("group1", "10.0.0.3"), now_).ok());  // ONLINE, not counted
  auto s = map.GroupStat("group1");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->group_name, "group1");
  EXPECT_EQ(s->storage_count, 3);
  EXPECT_EQ(s->readable_count, 2);
  EXPECT_EQ(s->writable_count, 2);
  // Members mirror each other: the group has what its smallest active member has.
  EXPECT_EQ(s->free_mb, 700);
  EXPECT_EQ(s->total_mb, 4000);
  EXPECT_EQ(s->reserved_mb, 300);
  EXPECT_EQ(s->store_path_count, 2);
  EXPECT_EQ(s->storage_port, 23000);
  EXPECT_EQ(s->subdir_count_per_path, 256);
  EXPECT_EQ(s->current_trunk_file_id, -1);

  AddActive(map, "group2", "10.0.0.9");
  auto all = map.AllGroupStats();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].group_name, "group1");
  EXPECT_EQ(all[1].group_name, "group2");
  EXPECT_EQ(all[1].storage_count, 1);
  EXPECT_EQ(all[1].free_mb, 1000);
}

TEST_F(ClusterMapTest, StorageStatsFields) {
  ClusterMap map(Policies{});
  auto id = map.Join(MakeJoin("group1", "10.0.0.1", 23000, 2, /*upload_priority=*/7), now_);
  ASSERT_TRUE(id.ok());
  HeartbeatInfo hb = MakeHb(*id, {{3000, 1500}, {2000, 500}}, 200);
  hb.current_write_path = 1;
  hb.conn_alloc = 1024;
  hb.conn_current = 3;
  hb.conn_max = 9;
  hb.counters[proto::kCntUpload] = 42;
  hb.counters[proto::kCntUpload + 1] = 41;
  hb.last_source_update = now_ - 5;
  ASSERT_TRUE(map.Heartbeat(*id, hb, now_ + 2).ok());
  auto full = map.Join(MakeJoin("group1", "10.0.0.2"), now_);
  ASSERT_TRUE(full.ok());
  ASSERT_TRUE(map.Heartbeat(*full, MakeHb(*full, {{1000, 10}}, 100), now_).ok());
  ASSERT_TRUE(map.Join(MakeJoin("group1", "10.0.0.3"), now_).ok());

  auto stats = map.StorageStats("group1", "");
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  ASSERT_EQ(stats->size(), 3u);
  std::map<std::string, proto::StorageStat> by_ip;
  for (const auto& s : *stats) by_ip[s.ip] = s;
  const proto::StorageStat& s = by_ip["10.0.0.1"];
  EXPECT_EQ(s.status, static_cast<uint8_t>(StorageState::kActive));
  EXPECT_EQ(s.id, "10.0.0.1:23000");
  EXPECT_EQ(s.version, "depot-test");
  EXPECT_EQ(s.join_time, 1000);
  EXPECT_EQ(s.up_time, 2000);
  EXPECT_EQ(s.total_mb, 5000);
  EXPECT_EQ(s.free_mb, 2000);
  EXPECT_EQ(s.reserved_mb, 200);
  EXPECT_EQ(s.upload_priority, 7);
  EXPECT_EQ(s.store_path_count, 2);
  EXPECT_EQ(s.current_write_path, 1);
  EXPECT_EQ(s.storage_port, 23000);
  EXPECT_EQ(s.conn_alloc, 1024u);
  EXPECT_EQ(s.conn_current, 3u);
  EXPECT_EQ(s.conn_max, 9u);
  EXPECT_EQ(s.counters[proto::kCntUpload], 42);
  EXPECT_EQ(s.counters[proto::kCntUpload + 1], 41);
  EXPECT_EQ(s.last_source_update, now_ - 5);
  EXPECT_EQ(s.last_heartbeat_time, now_ + 2);
  EXPECT_EQ(s.rw_mode, 6);
  EXPECT_EQ(by_ip["10.0.0.2"].status, static_cast<uint8_t>(StorageState::kActive));
  EXPECT_EQ(by_ip["10.0.0.2"].rw_mode, 4) << "active but full: read-only";
  EXPECT_EQ(by_ip["10.0.0.3"].status, static_cast<uint8_t>(StorageState::kOnline));
  EXPECT_EQ(by_ip["10.0.0.3"].rw_mode, 0);

  // Filter by id or by ip.
  auto one = map.StorageStats("group1", "10.0.0.2:23000");
  ASSERT_TRUE(one.ok());
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ((*one)[0].ip, "10.0.0.2");
  one = map.StorageStats("group1", "10.0.0.3");
  ASSERT_TRUE(one.ok());
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ((*one)[0].ip, "10.0.0.3");
  EXPECT_TRUE(map.StorageStats("group1", "10.0.0.99").status().IsNotFound());
}

TEST_F(ClusterMapTest, RestoreAddsAnOfflineMember) {
  ClusterMap map(Policies{});
  JoinInfo info = MakeJoin("group1", "10.0.0.1", 23000, 2);
  map.Restore(info);
  auto members = map.Members("group1");
  ASSERT_EQ(members.size(), 1u);
  EXPECT_EQ(members[0].id, "10.0.0.1:23000");
  EXPECT_EQ(members[0].state, StorageState::kOffline);
  EXPECT_EQ(members[0].info.store_path_count, 2);
  auto s = map.GroupStat("group1");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->storage_count, 1);
  EXPECT_EQ(s->readable_count, 0);
  EXPECT_EQ(s->writable_count, 0);
  EXPECT_EQ(s->store_path_count, 2);
  EXPECT_EQ(map.PickStore(std::nullopt).status().code(), StatusCode::kResourceExhausted);
  // A restored member must join before its heartbeats count.
  EXPECT_TRUE(map.Heartbeat("10.0.0.1:23000", MakeHb("10.0.0.1:23000", {{1000, 900}}), now_)
                  .IsNotFound());
  ASSERT_TRUE(map.Join(info, now_).ok());
  EXPECT_EQ(map.Members("group1")[0].state, StorageState::kOnline);
  ASSERT_TRUE(
      map.Heartbeat("10.0.0.1:23000", MakeHb("10.0.0.1:23000", {{1000, 900}, {1000, 900}}), now_)
          .ok());
  EXPECT_TRUE(map.PickStore(std::nullopt).ok());
}

TEST_F(ClusterMapTest, RejoiningInAnotherGroupMovesTheMember) {
  // Regression: a storage reconfigured from group "b-old" to "a-new" (same ip:port) stayed
  // listed in its old group, and its heartbeats updated that stale entry (found first), so it
  // never became ACTIVE in the new group while the old group kept offering it.
  ClusterMap map2(Policies{});
  AddActive(map2, "b-old", "10.0.0.5");
  auto rejoin = map2.Join(MakeJoin("a-new", "10.0.0.5"), now_ + 1);
  ASSERT_TRUE(rejoin.ok());
  EXPECT_TRUE(map2.Members("b-old").empty());
  ASSERT_TRUE(map2.Heartbeat(*rejoin, MakeHb(*rejoin, {{10000, 5000}}), now_ + 2).ok());
  EXPECT_EQ(StateOf(map2, "a-new", *rejoin), StorageState::kActive);
  auto t = map2.PickStore(std::nullopt);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->group, "a-new");
  EXPECT_TRUE(map2.PickStore(std::string("b-old")).status().IsNotFound());

  // Old group sorting first is the case that broke heartbeats.
  ClusterMap map3(Policies{});
  AddActive(map3, "a-old", "10.0.0.6");
  auto moved = map3.Join(MakeJoin("z-new", "10.0.0.6"), now_ + 1);
  ASSERT_TRUE(moved.ok());
  ASSERT_TRUE(map3.Heartbeat(*moved, MakeHb(*moved, {{10000, 5000}}), now_ + 2).ok());
  EXPECT_EQ(StateOf(map3, "z-new", *moved), StorageState::kActive);
  EXPECT_TRUE(map3.Members("a-old").empty());
  auto all = map3.AllGroupStats();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].group_name, "z-new");
}

}  // namespace
}  // namespace depot::tracker

namespace depot::tracker {
namespace {

TEST(ClusterMapConnectionTest, LostConnectionMarksOfflineUnlessRejoined) {
  ClusterMap map(Policies{});
  JoinInfo j;
  j.group = "group1";
  j.ip = "10.0.0.9";
  j.port = 23000;
  uint64_t first = 0, second = 0;
  auto id = map.Join(j, 100, &first);
  ASSERT_TRUE(id.ok());
  HeartbeatInfo hb;
  hb.id = *id;
  hb.paths = {{1000, 900}};
  ASSERT_TRUE(map.Heartbeat(*id, hb, 100).ok());
  // The storage reconnected (new join) before the old connection's close was noticed:
  ASSERT_TRUE(map.Join(j, 101, &second).ok());
  ASSERT_NE(first, second);
  ASSERT_TRUE(map.Heartbeat(*id, hb, 101).ok());
  map.ConnectionLost(*id, first);  // stale: ignored
  EXPECT_TRUE(map.PickStore(std::nullopt).ok());
  map.ConnectionLost(*id, second);  // the live connection dropped: OFFLINE at once
  EXPECT_EQ(map.PickStore(std::nullopt).status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(map.Members("group1")[0].state, proto::StorageState::kOffline);
}

}  // namespace
}  // namespace depot::tracker
