// Group replication under failures, with real daemons (issue 7, "Done means" b, d, e, f, g and
// fsck): kill -9 of a member during a stream of uploads and deletes, read routing right after an
// upload, write quorum with the loss of a source's whole disk, a tracker restart under traffic, a
// torn binlog tail (a torn create, and a torn delete with nothing to announce again), and fsck
// finding and repairing a file removed behind a member's back. Every test ends with direct
// downloads from each member (WaitConverged / CheckMembers).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/net/blocking_conn.h"
#include "common/proto/file_id.h"
#include "common/proto/protocol.h"
#include "tests/harness/harness.h"
#include "tests/integration/replication_util.h"

namespace depot::testing {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

ClusterOptions Options(int trackers, int per_group, std::string extra_storage_conf = "") {
  ClusterOptions o;
  o.trackers = trackers;
  o.per_group = per_group;
  o.extra_storage_conf = std::move(extra_storage_conf);
  return o;
}

int64_t MsSince(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

// The source member's address, as the file ID records it.
std::string SourceIp(const std::string& file_id) {
  auto id = proto::ParseFileId(file_id);
  return id.ok() ? proto::IpToString(id->fields.source_ip) : std::string();
}

// Index (in group 0) of the member whose address is `ip`, -1 if none.
int MemberByIp(MiniCluster& c, int n, const std::string& ip) {
  for (int m = 0; m < n; ++m) {
    if (c.storage(0, m).host() == ip) return m;
  }
  return -1;
}

// base_path of member m of group 0 (the harness uses the daemon's directory).
std::string BasePath(MiniCluster& c, int m) {
  return c.dir() + "/storage-group1-" + std::to_string(m + 1);
}

// The state the tracker(s) reached through `client` report for member `d` ("" if not listed).
std::string TrackerState(Client& client, Daemon& d) {
  auto st = client.ClusterStatus();
  if (!st.ok()) return "";
  for (const auto& g : *st) {
    for (const auto& m : g.members) {
      if (m.ip == d.host() && m.port == d.port()) return m.state_name;
    }
  }
  return "";
}

// Waits until every member of group 0 is ACTIVE and reports a connected pusher to each of its n-1
// peers in a heartbeat sent at least 2 s after `since` (unix seconds; older reports may predate a
// restart): with replication = sync, the moment uploads can meet a write quorum of n.
bool WaitPushersConnected(Client& client, int n, int64_t since, int timeout_ms) {
  return WaitFor(
      [&] {
        auto st = client.ClusterStatus();
        if (!st.ok() || st->empty()) return false;
        int ready = 0;
        for (const auto& m : (*st)[0].members) {
          int connected = 0;
          for (const auto& p : m.sync) connected += p.connected ? 1 : 0;
          if (m.state_name == "ACTIVE" && connected >= n - 1 && m.last_heartbeat >= since + 2) {
            ++ready;
          }
        }
        return ready == n;
      },
      timeout_ms);
}

// Asks one tracker QUERY_FETCH_ALL (105) through a raw frame: every member it names.
Result<std::vector<std::pair<std::string, int>>> QueryFetchAll(int tracker_port,
                                                                const std::string& file_id) {
  DEPOT_ASSIGN_OR_RETURN(auto conn, net::BlockingConn::Connect("127.0.0.1", tracker_port, 2000));
  DEPOT_ASSIGN_OR_RETURN(auto r, conn->Call(proto::kTrackerQueryFetchAll, GroupAndName(file_id),
                                            1 << 16));
  if (r.status != 0) return Status::IOError("query fetch all: status " + std::to_string(r.status));
  DEPOT_ASSIGN_OR_RETURN(auto targets, proto::DecodeFetchAll(r.body));
  std::vector<std::pair<std::string, int>> out;
  for (const auto& t : targets) out.emplace_back(t.ip, t.port);
  return out;
}

// Uploads to the member at host:port itself (no tracker in between): the file ID, or an error.
Result<std::string> DirectUpload(const std::string& host, int port, const std::string& data) {
  DEPOT_ASSIGN_OR_RETURN(auto conn, net::BlockingConn::Connect(host, port, 2000));
  std::string body(1, static_cast<char>(proto::kStorePathAny));
  proto::AppendU64(&body, data.size());
  proto::AppendFixed(&body, "", proto::kExtLen);
  body += data;
  DEPOT_ASSIGN_OR_RETURN(auto r, conn->Call(proto::kStorageUpload, body, 1024));
  if (r.status != 0) return Status::IOError("direct upload: status " + std::to_string(r.status));
  if (r.body.size() <= proto::kGroupNameLen) return Status::Corruption("short upload reply");
  return std::string(proto::TrimFixed(std::string_view(r.body).substr(0, proto::kGroupNameLen))) +
         "/" + r.body.substr(proto::kGroupNameLen);
}

// Cuts `bytes` off the end of the highest-numbered binlog segment in `dir` ("" when done).
std::string CutBinlogTail(const std::string& dir, uintmax_t bytes) {
  std::string last;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::string name = e.path().filename().string();
    if (name.rfind("binlog.", 0) == 0 && (last.empty() || e.path().string() > last)) {
      last = e.path().string();
    }
  }
  if (last.empty()) return "no binlog segment in " + dir;
  uintmax_t size = fs::file_size(last, ec);
  if (ec || size < 32 + bytes) return "segment " + last + " too small";
  if (truncate(last.c_str(), static_cast<off_t>(size - bytes)) != 0) return "truncate failed";
  return "";
}

// Removes everything of a storage's base_path but its conf and log files: its store path, binlog
// and LevelDB (a lost disk).
void WipeBasePath(const std::string& base) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(base, ec)) {
    std::string name = e.path().filename().string();
    if (name.rfind("storage.", 0) == 0) continue;  // storage.conf, .log, .stderr, .ready
    fs::remove_all(e.path(), ec);
  }
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

size_t CountLines(const std::string& path) {
  std::string t = ReadText(path);
  return static_cast<size_t>(std::count(t.begin(), t.end(), '\n'));
}

// Every member agrees about each of `ids` (all hold the same bytes, or none holds it): for
// operations whose outcome the client could not learn (an error mid-request).
std::string CheckAgree(const std::vector<Daemon*>& members,
                       const std::map<std::string, std::string>& ids) {
  for (const auto& [id, bytes] : ids) {
    std::optional<std::optional<std::string>> first;
    for (Daemon* d : members) {
      auto r = DirectDownload(d->host(), d->port(), id);
      if (!r.ok) return d->host() + ": " + id + ": " + r.error;
      if (r.bytes && *r.bytes != bytes) return d->host() + " has other bytes for " + id;
      if (!first) {
        first = r.bytes;
      } else if (first->has_value() != r.bytes.has_value()) {
        return "members disagree about " + id;
      }
    }
  }
  return "";
}

size_t MixedSize(std::mt19937_64& rng, int i) {
  if (i % 40 == 0) return 0;
  if (i % 23 == 0) return 300 * 1024 + rng() % 50000;  // several stream chunks
  return rng() % 12000;
}

// b. kill -9 of one member of three during a stream of uploads and deletes; uploads go on on the
// other two; the member restarts and the group converges with nothing lost or resurrected.
TEST(ReplicationFailureTest, KillNineOfOneMemberDuringUploadsAndDeletes) {
  MiniCluster cluster(Options(1, 3));
  ASSERT_TRUE(cluster.Start().ok());
  auto client = cluster.NewClient();
  ASSERT_NE(client, nullptr);

  std::mutex mu;
  Expected want;                                // acknowledged and not deleted / deleted
  std::map<std::string, std::string> unknown;   // deletes whose outcome is unknown
  std::vector<std::string> failures_while_down;
  std::atomic<bool> stop{false}, down{false};
  std::atomic<int> ops{0}, uploads_while_down{0}, not_found_deletes{0}, other_failures{0};

  std::thread writer([&] {
    std::mt19937_64 rng(21);
    std::vector<std::string> deletable;
    for (int i = 0; !stop; ++i) {
      bool was_down = down.load();
      if (i % 3 == 2 && !deletable.empty()) {
        // Half the time the file just uploaded (its create may not have reached the peers yet).
        size_t k = rng() % 2 == 0 ? deletable.size() - 1 : rng() % deletable.size();
        std::string id = deletable[k];
        deletable[k] = deletable.back();
        deletable.pop_back();
        Status s = client->Delete(id);
        std::lock_guard<std::mutex> l(mu);
        if (s.ok()) {
          want.deleted.insert(id);
          want.live.erase(id);
        } else if (s.IsNotFound()) {
          // Routed to a member that lacks it (its source is down): not deleted.
          not_found_deletes++;
        } else {
          unknown[id] = want.live[id];
          want.live.erase(id);
          other_failures++;
        }
      } else {
        std::string data = PatternBytes(MixedSize(rng, i), 5000 + static_cast<uint64_t>(i));
        auto id = client->UploadBuffer(data, {});
        bool whole_op_down = was_down && down.load();
        std::lock_guard<std::mutex> l(mu);
        if (id.ok()) {
          want.live[*id] = data;
          deletable.push_back(*id);
          if (whole_op_down) uploads_while_down++;
        } else if (whole_op_down) {
          failures_while_down.push_back(id.status().ToString());
        } else {
          other_failures++;  // e.g. in flight at the kill
        }
      }
      ops++;
      std::this_thread::sleep_for(std::chrono::milliseconds(3));
    }
  });

  auto t0 = Clock::now();
  EXPECT_TRUE(WaitFor([&] { return ops >= 150 && MsSince(t0) >= 1500; }, 30000));
  Daemon& victim = cluster.storage(0, 1);
  victim.Kill9();
  down = true;
  auto t1 = Clock::now();
  EXPECT_TRUE(WaitFor([&] { return uploads_while_down >= 60 && MsSince(t1) >= 1500; }, 30000))
      << "uploads did not go on while a member was down";
  down = false;
  ASSERT_TRUE(victim.Start().ok());
  int base = ops;
  auto t2 = Clock::now();
  EXPECT_TRUE(WaitFor([&] { return ops >= base + 150 && MsSince(t2) >= 1500; }, 30000));
  stop = true;
  writer.join();

  {
    std::lock_guard<std::mutex> l(mu);
    EXPECT_TRUE(failures_while_down.empty())
        << failures_while_down.size() << " uploads failed while the member was down, first: "
        << failures_while_down.front();
    EXPECT_GE(uploads_while_down.load(), 60);
    std::printf("b: %zu live, %zu deleted, %zu unknown, %d NotFound deletes, %d other failures\n",
                want.live.size(), want.deleted.size(), unknown.size(), not_found_deletes.load(),
                other_failures.load());
  }
  ASSERT_TRUE(cluster.WaitAllActive().ok());
  auto members = GroupMembers(cluster, 0, 3);
  EXPECT_EQ(WaitConverged(members, want, 60000), "");
  EXPECT_EQ(CheckAgree(members, unknown), "");
}

// d. Right after an upload, QUERY_FETCH (102) and QUERY_FETCH_ALL (105) name only members that
// hold the file, although peers receive it 300 ms late; once they do, they are named too.
TEST(ReplicationFailureTest, FetchRoutingNeverNamesAMemberThatLacksTheFile) {
  MiniCluster cluster(Options(1, 3, "sync_delay_ms = 300"));
  ASSERT_TRUE(cluster.Start().ok());
  auto client = cluster.NewClient();
  ASSERT_NE(client, nullptr);
  int tracker_port = cluster.tracker(0).port();

  std::mutex mu;
  std::vector<std::string> violations;
  Expected want;
  std::atomic<int> non_source_named{0}, non_source_listed{0}, answers{0};

  // Asks once by 102 and once by 105 and downloads from every member named.
  auto probe = [&](const std::string& id, const std::string& data) {
    std::string src = SourceIp(id);
    auto note = [&](const std::string& v) {
      std::lock_guard<std::mutex> l(mu);
      violations.push_back(v);
    };
    auto node = client->QueryFetch(id);
    if (!node.ok()) {
      note("query fetch " + id + ": " + node.status().ToString());
    } else {
      auto r = DirectDownload(node->ip, node->port, id);
      if (!r.ok || !r.bytes || *r.bytes != data) {
        note("102 named " + node->ip + " for " + id + " (source " + src + ") which lacks it" +
             (r.ok ? "" : ": " + r.error));
      }
      answers++;
      if (node->ip != src) non_source_named++;
    }
    auto all = QueryFetchAll(tracker_port, id);
    if (!all.ok()) {
      note("query fetch all " + id + ": " + all.status().ToString());
      return;
    }
    if (all->empty() || all->front().first != src) note("105 does not name the source first");
    for (const auto& [ip, port] : *all) {
      auto r = DirectDownload(ip, port, id);
      if (!r.ok || !r.bytes || *r.bytes != data) {
        note("105 named " + ip + " for " + id + " (source " + src + ") which lacks it");
      }
      if (ip != src) non_source_listed++;
    }
  };

  std::vector<std::pair<std::string, std::string>> uploaded;
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        std::string data = PatternBytes(static_cast<size_t>(200 + (t * 10 + i) * 311), 900 + t * 10 + i);
        auto id = client->UploadBuffer(data, {});
        if (!id.ok()) {
          std::lock_guard<std::mutex> l(mu);
          violations.push_back("upload: " + id.status().ToString());
          continue;
        }
        {
          std::lock_guard<std::mutex> l(mu);
          want.live[*id] = data;
          uploaded.emplace_back(*id, data);
        }
        for (int q = 0; q < 20; ++q) {
          probe(*id, data);
          std::this_thread::sleep_for(std::chrono::milliseconds(75));
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  // Routing spreads once the peers have the files (and their sources have reported it).
  EXPECT_TRUE(WaitFor(
      [&] {
        for (size_t k = uploaded.size() >= 3 ? uploaded.size() - 3 : 0; k < uploaded.size(); ++k) {
          probe(uploaded[k].first, uploaded[k].second);
        }
        return non_source_named > 0 && non_source_listed > 0;
      },
      20000))
      << "no read was ever routed to a member other than the source";
  {
    std::lock_guard<std::mutex> l(mu);
    EXPECT_TRUE(violations.empty()) << violations.size() << " violations, first: "
                                    << violations.front();
    EXPECT_EQ(want.live.size(), 30u);
  }
  std::printf("d: %d answers, %d named a non-source member\n", answers.load(),
              non_source_named.load());
  EXPECT_EQ(WaitConverged(GroupMembers(cluster, 0, 3), want, 30000), "");
}

// e. replication = sync, write_quorum = 2: an acknowledged upload survives the loss of its
// source's whole disk right after the ack; with one of two members stopped, uploads fail with
// Unavailable (EAGAIN) at once.
TEST(ReplicationFailureTest, SyncQuorumUploadSurvivesLossOfItsSource) {
  MiniCluster cluster(Options(1, 2, "replication = sync\nwrite_quorum = 2"));
  ASSERT_TRUE(cluster.Start().ok());
  auto client = cluster.NewClient();
  ASSERT_NE(client, nullptr);
  Expected want;
  std::mt19937_64 rng(5);
  auto members = GroupMembers(cluster, 0, 2);
  // ACTIVE is not enough: uploads need the pushers to the peer connected (else EAGAIN).
  ASSERT_TRUE(WaitPushersConnected(*client, 2, 0, 15000));
  for (int round = 0; round < 4; ++round) {
    // The loop's last upload is the one whose source dies right after its ack.
    std::string last_id;
    for (int i = 0; i < 3; ++i) {
      size_t size = round == 2 && i == 2 ? (1 << 20) + 17 : MixedSize(rng, round * 3 + i + 1);
      std::string data = PatternBytes(size, 100 + static_cast<uint64_t>(round * 3 + i));
      auto id = client->UploadBuffer(data, {});
      ASSERT_TRUE(id.ok()) << "round " << round << ": " << id.status().ToString();
      want.live[*id] = data;
      last_id = *id;
    }
    int src = MemberByIp(cluster, 2, SourceIp(last_id));
    ASSERT_GE(src, 0) << last_id;
    int other = 1 - src;
    Daemon& dead = cluster.storage(0, src);
    Daemon& alive = cluster.storage(0, other);
    dead.Kill9();
    WipeBasePath(BasePath(cluster, src));
    // The other member holds every acknowledged file, right now.
    EXPECT_EQ(CheckMembers({&alive}, want), "") << "round " << round;
    // Through the tracker, once it has noticed the source is gone.
    ASSERT_TRUE(WaitFor([&] { return TrackerState(*client, dead) != "ACTIVE"; }, 15000));
    for (const auto& [id, bytes] : want.live) {
      auto got = client->DownloadToBuffer(id);
      ASSERT_TRUE(got.ok()) << "round " << round << ": " << id << ": " << got.status().ToString();
      EXPECT_EQ(*got, bytes) << id;
    }
    // The member comes back with an empty disk, catches up, and both hold everything.
    int64_t restarted = time(nullptr);
    ASSERT_TRUE(dead.Start().ok());
    ASSERT_TRUE(cluster.WaitAllActive(30000).ok()) << "round " << round;
    EXPECT_EQ(WaitConverged(members, want, 30000), "") << "round " << round;
    // Then uploads are acknowledged again: the other member's pusher has noticed that its old
    // connection died with the member, and has connected again.
    ASSERT_TRUE(WaitPushersConnected(*client, 2, restarted, 15000)) << "round " << round;
  }

  // One member stopped: the quorum of 2 cannot be met; uploads fail with EAGAIN, promptly.
  Daemon& stopped = cluster.storage(0, 1);
  stopped.Stop();
  ASSERT_TRUE(WaitFor([&] { return TrackerState(*client, stopped) != "ACTIVE"; }, 15000));
  for (int i = 0; i < 3; ++i) {
    auto t = Clock::now();
    auto id = client->UploadBuffer(PatternBytes(1000, 7000 + static_cast<uint64_t>(i)), {});
    int64_t ms = MsSince(t);
    ASSERT_FALSE(id.ok()) << "upload acknowledged with one live member: " << *id;
    EXPECT_EQ(id.status().code(), StatusCode::kUnavailable) << id.status().ToString();
    EXPECT_NE(id.status().ToString().find("EAGAIN"), std::string::npos) << id.status().ToString();
    // Far below network_timeout (30 s), which would mean it waited for a quorum in vain.
    EXPECT_LT(ms, 10000) << id.status().ToString();
  }
  int64_t restarted = time(nullptr);
  ASSERT_TRUE(stopped.Start().ok());
  ASSERT_TRUE(cluster.WaitAllActive(30000).ok());
  ASSERT_TRUE(WaitPushersConnected(*client, 2, restarted, 15000));
  for (int i = 0; i < 5; ++i) {
    std::string data = PatternBytes(5000 + static_cast<size_t>(i), 8000 + static_cast<uint64_t>(i));
    auto id = client->UploadBuffer(data, {});
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    want.live[*id] = data;
  }
  EXPECT_EQ(WaitConverged(members, want, 30000), "");
}

// f. Two trackers; tracker 0 is killed -9 and restarted while a client uploads, downloads and
// deletes: every operation succeeds, the storages rejoin it, and the group converges.
TEST(ReplicationFailureTest, TrackerKillAndRestartUnderTraffic) {
  MiniCluster cluster(Options(2, 2));
  ASSERT_TRUE(cluster.Start().ok());
  auto client = cluster.NewClient();
  ASSERT_NE(client, nullptr);
  std::mutex mu;
  Expected want;
  std::vector<std::string> failures;
  std::atomic<bool> stop{false};
  std::atomic<int> ops{0};
  std::thread writer([&] {
    std::mt19937_64 rng(3);
    std::vector<std::string> ids;
    for (int i = 0; !stop; ++i) {
      auto fail = [&](const std::string& what) {
        std::lock_guard<std::mutex> l(mu);
        failures.push_back(what);
      };
      std::string data = PatternBytes(MixedSize(rng, i), 300 + static_cast<uint64_t>(i));
      auto id = client->UploadBuffer(data, {});
      if (!id.ok()) {
        fail("upload: " + id.status().ToString());
      } else {
        std::lock_guard<std::mutex> l(mu);
        want.live[*id] = data;
        ids.push_back(*id);
      }
      // Read the file just uploaded and one of the 20 before it.
      for (int r = 0; r < 2 && !ids.empty(); ++r) {
        std::string rid = ids[ids.size() - 1 - (r == 0 ? 0 : rng() % std::min<size_t>(ids.size(), 20))];
        std::string expect;
        {
          std::lock_guard<std::mutex> l(mu);
          expect = want.live[rid];
        }
        auto got = client->DownloadToBuffer(rid);
        if (!got.ok()) {
          fail("download " + rid + " (source " + SourceIp(rid) + "): " + got.status().ToString());
        } else if (*got != expect) {
          fail("download " + rid + ": other bytes");
        }
      }
      if (i % 4 == 3 && ids.size() > 10) {
        std::string did = ids.front();
        ids.erase(ids.begin());
        Status s = client->Delete(did);
        if (!s.ok()) {
          fail("delete " + did + ": " + s.ToString());
        } else {
          std::lock_guard<std::mutex> l(mu);
          want.live.erase(did);
          want.deleted.insert(did);
        }
      }
      ops++;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  auto t0 = Clock::now();
  EXPECT_TRUE(WaitFor([&] { return ops >= 50 && MsSince(t0) >= 1000; }, 30000));
  cluster.tracker(0).Kill9();
  int base = ops;
  auto t1 = Clock::now();
  EXPECT_TRUE(WaitFor([&] { return ops >= base + 50 && MsSince(t1) >= 1500; }, 30000));
  ASSERT_TRUE(cluster.tracker(0).Start().ok());
  base = ops;
  auto t2 = Clock::now();
  EXPECT_TRUE(WaitFor([&] { return ops >= base + 100 && MsSince(t2) >= 3000; }, 30000));
  EXPECT_TRUE(cluster.WaitAllActive(20000).ok());  // the storages rejoined tracker 0
  base = ops;
  EXPECT_TRUE(WaitFor([&] { return ops >= base + 20; }, 30000));
  stop = true;
  writer.join();
  {
    std::lock_guard<std::mutex> l(mu);
    std::string list;
    for (size_t k = 0; k < failures.size() && k < 8; ++k) list += "\n  " + failures[k];
    EXPECT_TRUE(failures.empty()) << failures.size() << " client operations failed:" << list;
    std::printf("f: %d operations, %zu live, %zu deleted\n", ops.load(), want.live.size(),
                want.deleted.size());
  }
  EXPECT_EQ(WaitConverged(GroupMembers(cluster, 0, 2), want, 60000), "");
}

// g. A torn binlog tail: member 2 is killed -9 and its binlog's last record cut in half; it
// restarts with a new epoch, says so in its log, and the group converges on later changes.
TEST(ReplicationFailureTest, TornBinlogTailIsCutAndTheGroupConverges) {
  MiniCluster cluster(Options(1, 2));
  ASSERT_TRUE(cluster.Start().ok());
  auto client = cluster.NewClient();
  ASSERT_NE(client, nullptr);
  auto members = GroupMembers(cluster, 0, 2);
  Expected want;
  std::mt19937_64 rng(9);
  for (int i = 0; i < 40; ++i) {
    std::string data = PatternBytes(MixedSize(rng, i + 1), 20000 + static_cast<uint64_t>(i));
    auto id = client->UploadBuffer(data, {});
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    want.live[*id] = data;
  }
  ASSERT_EQ(WaitConverged(members, want, 30000), "");
  // The last change of member 2 is one of its own uploads: the record the cut tears.
  Daemon& m2 = cluster.storage(0, 1);
  std::string torn_id;
  for (int i = 0; i < 20 && torn_id.empty(); ++i) {
    std::string data = PatternBytes(3000 + static_cast<size_t>(i), 21000 + static_cast<uint64_t>(i));
    auto id = client->UploadBuffer(data, {});
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    want.live[*id] = data;
    ASSERT_EQ(WaitConverged(members, want, 30000), "");
    if (SourceIp(*id) == m2.host()) torn_id = *id;
  }
  ASSERT_FALSE(torn_id.empty()) << "no upload went to member 2";
  // It stays converged for a second: time for member 2's pusher to have its flush answered and
  // its position hint (`sync/out/<peer>`, just past the record cut below) saved.
  EXPECT_FALSE(WaitFor([&] { return !CheckMembers(members, want).empty(); }, 1000));

  std::string binlog_dir = BasePath(cluster, 1) + "/binlog";
  size_t epochs_before = CountLines(binlog_dir + "/epochs");
  ASSERT_GE(epochs_before, 1u);
  m2.Kill9();
  ASSERT_EQ(CutBinlogTail(binlog_dir, 20), "");
  ASSERT_TRUE(m2.Start().ok());
  EXPECT_NE(ReadText(m2.log_path()).find("torn tail"), std::string::npos)
      << "the restarted member's log does not mention the torn tail";
  ASSERT_TRUE(cluster.WaitAllActive().ok());

  // The first record of the new epoch is an upload to member 2 itself: it takes the place in the
  // binlog of the record that was cut, and must reach member 1 all the same.
  std::string first_data = PatternBytes(4321, 21999);
  auto first = DirectUpload(m2.host(), m2.port(), first_data);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  want.live[*first] = first_data;
  EXPECT_EQ(WaitConverged(members, want, 15000), "") << "the first upload after the cut";

  // More changes through the cluster, among them the delete of the file whose record was torn.
  std::vector<std::string> ids;
  for (int i = 0; i < 30; ++i) {
    std::string data = PatternBytes(MixedSize(rng, i + 3), 22000 + static_cast<uint64_t>(i));
    auto id = client->UploadBuffer(data, {});
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    want.live[*id] = data;
    ids.push_back(*id);
  }
  std::vector<std::string> to_delete = {torn_id};
  for (size_t i = 0; i < ids.size(); i += 3) to_delete.push_back(ids[i]);
  for (auto it = want.live.begin(); to_delete.size() < 16 && it != want.live.end(); ++it) {
    if (std::find(to_delete.begin(), to_delete.end(), it->first) == to_delete.end()) {
      to_delete.push_back(it->first);
    }
  }
  for (const auto& id : to_delete) {
    Status s = client->Delete(id);
    ASSERT_TRUE(s.ok()) << id << ": " << s.ToString();
    want.live.erase(id);
    want.deleted.insert(id);
  }
  EXPECT_EQ(WaitConverged(members, want, 30000), "");
  EXPECT_EQ(CountLines(binlog_dir + "/epochs"), epochs_before + 1);
}

// g'. The same with a torn delete: member 2's last record is a delete it made (already applied by
// member 1), and no file is left to announce again after the cut, so the first record of the new
// epoch takes exactly the bytes of the torn one. It must reach member 1 all the same: a pusher
// must not resume from a position past the cut.
TEST(ReplicationFailureTest, TornDeleteRecordThenTheNextChangeStillReachesThePeer) {
  MiniCluster cluster(Options(1, 2));
  ASSERT_TRUE(cluster.Start().ok());
  auto client = cluster.NewClient();
  ASSERT_NE(client, nullptr);
  auto members = GroupMembers(cluster, 0, 2);
  Daemon& m2 = cluster.storage(0, 1);
  Expected want;
  std::vector<std::string> on_m1, on_m2;
  for (int i = 0; i < 20; ++i) {
    std::string data = PatternBytes(static_cast<size_t>(500 + i * 50), 40000 + static_cast<uint64_t>(i));
    auto id = client->UploadBuffer(data, {});
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    want.live[*id] = data;
    (SourceIp(*id) == m2.host() ? on_m2 : on_m1).push_back(*id);
  }
  ASSERT_FALSE(on_m2.empty());
  ASSERT_EQ(WaitConverged(members, want, 30000), "");
  // Everything is deleted; member 2's deletes (of its own files) come last.
  for (const auto* list : {&on_m1, &on_m2}) {
    for (const auto& id : *list) {
      Status s = client->Delete(id);
      ASSERT_TRUE(s.ok()) << id << ": " << s.ToString();
      want.live.erase(id);
      want.deleted.insert(id);
    }
    ASSERT_EQ(WaitConverged(members, want, 30000), "");
  }
  // Stays converged for a second: member 2's pusher has saved its position past the last delete.
  EXPECT_FALSE(WaitFor([&] { return !CheckMembers(members, want).empty(); }, 1000));

  std::string binlog_dir = BasePath(cluster, 1) + "/binlog";
  size_t epochs_before = CountLines(binlog_dir + "/epochs");
  m2.Kill9();
  ASSERT_EQ(CutBinlogTail(binlog_dir, 20), "");
  ASSERT_TRUE(m2.Start().ok());
  EXPECT_NE(ReadText(m2.log_path()).find("torn tail"), std::string::npos);
  ASSERT_TRUE(cluster.WaitAllActive().ok());

  std::string data = PatternBytes(2500, 41000);
  auto first = DirectUpload(m2.host(), m2.port(), data);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  want.live[*first] = data;
  ASSERT_EQ(WaitConverged(members, want, 15000), "") << "the first upload after the cut";
  for (int i = 0; i < 10; ++i) {
    std::string more = PatternBytes(static_cast<size_t>(700 + i), 42000 + static_cast<uint64_t>(i));
    auto id = client->UploadBuffer(more, {});
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    want.live[*id] = more;
  }
  EXPECT_EQ(WaitConverged(members, want, 15000), "");
  EXPECT_EQ(CountLines(binlog_dir + "/epochs"), epochs_before + 1);
}

// fsck: a data file removed behind member 2's back is reported (exit 5, the file ID), repaired
// (--repair, exit 0), and then fsck is clean and member 2 serves the file again.
TEST(ReplicationFailureTest, FsckFindsAndRepairsAFileRemovedBehindAMembersBack) {
  MiniCluster cluster(Options(1, 2));
  ASSERT_TRUE(cluster.Start().ok());
  auto client = cluster.NewClient();
  ASSERT_NE(client, nullptr);
  auto members = GroupMembers(cluster, 0, 2);
  Expected want;
  std::vector<std::string> ids;
  for (int i = 0; i < 50; ++i) {
    std::string data = PatternBytes(static_cast<size_t>(100 + i * 97), 30000 + static_cast<uint64_t>(i));
    auto id = client->UploadBuffer(data, {});
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    want.live[*id] = data;
    ids.push_back(*id);
  }
  ASSERT_EQ(WaitConverged(members, want, 30000), "");

  const std::string& victim = ids[17];
  auto fid = proto::ParseFileId(victim);
  ASSERT_TRUE(fid.ok());
  std::string path = cluster.StorePath(0, 1, 0) + "/" + fid->RelativePath();
  ASSERT_EQ(unlink(path.c_str()), 0) << path;
  Daemon& m2 = cluster.storage(0, 1);
  ASSERT_FALSE(DirectDownload(m2.host(), m2.port(), victim).bytes.has_value());

  auto depot = [&](std::vector<std::string> args, bool json = false) {
    std::vector<std::string> argv = {"depot", "--trackers", cluster.TrackerList()};
    if (json) argv.push_back("--json");
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProgram(argv);
  };
  const std::string secret = cluster.secret();
  auto first = depot({"fsck", "--secret", secret});
  EXPECT_EQ(first.exit_code, 5) << first.out << first.err;
  EXPECT_NE(first.out.find(victim), std::string::npos) << first.out;

  auto first_json = depot({"fsck", "--secret", secret}, true);
  EXPECT_EQ(first_json.exit_code, 5) << first_json.err;
  auto fj = nlohmann::json::parse(first_json.out, nullptr, false);
  ASSERT_FALSE(fj.is_discarded()) << first_json.out;
  EXPECT_EQ(fj["clean"], false);
  ASSERT_EQ(fj["problems"].size(), 1u) << first_json.out;
  EXPECT_EQ(fj["problems"][0]["file_id"], victim);
  EXPECT_EQ(fj["problems"][0]["kind"], "missing");
  EXPECT_EQ(fj["problems"][0]["member"], m2.host() + ":" + std::to_string(m2.port()));

  auto repair = depot({"fsck", "--repair", "--secret", secret});
  EXPECT_EQ(repair.exit_code, 0) << repair.out << repair.err;
  auto again = depot({"fsck", "--secret", secret});
  EXPECT_EQ(again.exit_code, 0) << again.out << again.err;
  auto got = DirectDownload(m2.host(), m2.port(), victim);
  ASSERT_TRUE(got.bytes.has_value()) << got.error;
  EXPECT_EQ(*got.bytes, want.live[victim]);

  auto last_json = depot({"fsck", "--secret", secret}, true);
  EXPECT_EQ(last_json.exit_code, 0) << last_json.err;
  auto lj = nlohmann::json::parse(last_json.out, nullptr, false);
  ASSERT_FALSE(lj.is_discarded()) << last_json.out;
  EXPECT_EQ(lj["clean"], true);
  EXPECT_EQ(lj["files"], 50);
  EXPECT_EQ(lj["members"], 2);
  EXPECT_EQ(CheckMembers(members, want), "");
}

}  // namespace
}  // namespace depot::testing
