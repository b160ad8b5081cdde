// depot-dhtd end to end (doc/dht.md): real dht nodes on 127.0.0.1 through the harness, driven by
// DhtClient and by raw frames sent to one node at a time (to check what each node holds).
//   1. operation semantics on 2 nodes, every record on both;
//   2. concurrent Add and PutIfAbsent from many clients;
//   3. kill -9 of one node: everything keeps working; the restarted node catches up;
//   4. a 3rd node joins: it pulls exactly its share while readers see no failure and no miss;
//   5. bad input: no handshake, oversized keys and values, garbage bodies;
//   6. stalled replicas: the coordinator answers in time, hints reach them once they resume;
//   7. anti-entropy repairs a replica that missed a record and settles equal versions;
//   8. a member learnt after the start-up is pulled from;
//   9. a client with a stale ring after a join: non-owners refuse, the write reaches the owner.
#include <gtest/gtest.h>

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <atomic>
#include <cerrno>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/net/blocking_conn.h"
#include "common/proto/protocol.h"
#include "dht/dht_client.h"
#include "dht/dht_proto.h"
#include "dht/node_pool.h"
#include "dht/ring.h"
#include "tests/harness/harness.h"

namespace depot::testing {
namespace {

using dht::DhtClient;
using dht::DhtClientOptions;
using dht::Record;

const std::string kSecret = "dht-test-secret";

class DhtCluster {
 public:
  ~DhtCluster() {
    if (::testing::Test::HasFailure()) {
      for (const auto& d : nodes_) {
        std::fprintf(stderr, "---- %s (last lines)\n%s", d->dir().c_str(), d->LogTail(40).c_str());
      }
    }
    for (auto& d : nodes_) d->Stop();
  }

  // Starts node i (a new one when i == size()) with `peers`; port 0 the first time, its old port
  // on a restart (the port is part of the node's id).
  Status Start(size_t i, const std::vector<std::string>& peers) {
    if (i == nodes_.size()) {
      std::string dir = tmp_.path() + "/dht-" + std::to_string(i + 1);
      nodes_.push_back(std::make_unique<Daemon>("depot-dhtd", dir, "dht"));
      ports_.push_back(0);
    }
    Daemon& d = *nodes_[i];
    std::string peer_list;
    for (const auto& p : peers) peer_list += (peer_list.empty() ? "" : ",") + p;
    std::ostringstream c;
    c << "bind_addr = 127.0.0.1\nport = " << ports_[i] << "\nadvertise_address = 127.0.0.1:0\n"
      << "peers = " << peer_list << "\nmetrics_port = 0\ndata_path = " << d.dir() << "/data\n"
      << "log_file = " << d.log_path() << "\nlog_level = debug\ncluster_secret = " << kSecret
      << "\n" << extra_;
    d.set_config(c.str());
    DEPOT_RETURN_IF_ERROR(d.Start(30000));
    ports_[i] = d.port();
    return Status::OK();
  }

  std::string Id(size_t i) const { return "127.0.0.1:" + std::to_string(ports_[i]); }
  Daemon& node(size_t i) { return *nodes_[i]; }
  size_t size() const { return nodes_.size(); }

  std::unique_ptr<DhtClient> NewClient(int refresh_ms = 2000, int replicas = 2) {
    DhtClientOptions o;
    for (size_t i = 0; i < nodes_.size(); ++i) o.seeds.push_back(Id(i));
    o.secret = kSecret;
    o.refresh_ms = refresh_ms;
    o.replicas = replicas;
    return std::make_unique<DhtClient>(std::move(o));
  }
  // Appended to every node's dht.conf from the next Start on.
  void set_extra(std::string conf) { extra_ = std::move(conf); }

 private:
  std::string extra_;
  TempDir tmp_;
  std::vector<std::unique_ptr<Daemon>> nodes_;
  std::vector<int> ports_;
};

// Talks to one node only, with raw dht frames.
class Direct {
 public:
  Direct() : pool_(kSecret, 5000) {}

  // The record a node holds (tombstones included); nullopt on ENOENT.
  std::optional<Record> Get(const std::string& node, const std::string& key) {
    auto r = pool_.Call(node, dht::kDhtGet, dht::EncodeKeyRequest({key}), 1 << 20);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok() || r->status == ENOENT) return std::nullopt;
    EXPECT_EQ(r->status, 0) << node << " " << key;
    auto rec = dht::DecodeRecord(r->body);
    EXPECT_TRUE(rec.ok());
    return rec.ok() ? std::optional<Record>(*rec) : std::nullopt;
  }

  // Every live key a node holds.
  std::map<std::string, Record> All(const std::string& node) {
    std::map<std::string, Record> out;
    dht::ScanRequest req;
    for (;;) {
      auto r = pool_.Call(node, dht::kDhtScan, dht::EncodeScanRequest(req), 4 << 20);
      EXPECT_TRUE(r.ok() && r->status == 0);
      if (!r.ok() || r->status != 0) return out;
      auto page = dht::DecodeScanReply(r->body);
      EXPECT_TRUE(page.ok());
      if (!page.ok()) return out;
      for (auto& [k, rec] : page->entries) out[k] = rec;
      if (!page->more || page->entries.empty()) return out;
      req.start = page->entries.back().first;
    }
  }

  // One raw call to one node: the status, -1 when the call failed.
  int Call(const std::string& node, uint8_t cmd, const std::string& body,
           std::string* reply_body = nullptr) {
    auto r = pool_.Call(node, cmd, body, 1 << 20);
    if (!r.ok()) return -1;
    if (reply_body) *reply_body = r->body;
    return r->status;
  }
  int Replicate(const std::string& node, const std::string& key, const Record& rec) {
    return Call(node, dht::kDhtReplicate, dht::EncodeReplicateRequest({key, rec}));
  }

  std::vector<std::string> Nodes(const std::string& node) {
    auto r = pool_.Call(node, dht::kDhtNodes, {}, 1 << 16);
    if (!r.ok() || r->status != 0) return {};
    auto n = dht::DecodeNodeList(r->body);
    return n.ok() ? *n : std::vector<std::string>{};
  }

 private:
  dht::NodePool pool_;
};

std::string Key(int i) { return "group1/fp-" + std::to_string(i); }

TEST(DhtTest, OperationsOnTwoNodesAndEveryRecordOnBoth) {
  DhtCluster c;
  ASSERT_TRUE(c.Start(0, {}).ok());
  ASSERT_TRUE(c.Start(1, {c.Id(0)}).ok());
  auto client = c.NewClient();
  std::vector<std::string> both = {c.Id(0), c.Id(1)};
  std::sort(both.begin(), both.end());
  EXPECT_EQ(client->Nodes(), both);

  auto absent = client->Get("k1");
  ASSERT_TRUE(absent.ok()) << absent.status().ToString();
  EXPECT_FALSE(absent->has_value());

  auto p = client->PutIfAbsent("k1", "content-a", 1);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->version, 1u);
  Record cur;
  auto again = client->PutIfAbsent("k1", "content-b", 7, &cur);
  EXPECT_EQ(again.status().code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(cur.value, "content-a");
  EXPECT_EQ(cur.version, 1u);

  auto g = client->Get("k1");
  ASSERT_TRUE(g.ok() && g->has_value());
  EXPECT_EQ((*g)->value, "content-a");
  EXPECT_EQ((*g)->count, 1);

  auto a = client->Add("k1", 2);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->count, 3);
  EXPECT_EQ(a->version, 2u);
  EXPECT_TRUE(client->Add("nope", 1).status().IsNotFound());

  auto bad = client->CompareAndSet("k1", 1, "x", 0, &cur);
  EXPECT_EQ(bad.status().code(), StatusCode::kBusy);
  EXPECT_EQ(cur.version, 2u);
  auto cas = client->CompareAndSet("k1", 2, "content-c", 5);
  ASSERT_TRUE(cas.ok());
  EXPECT_EQ(cas->version, 3u);
  EXPECT_TRUE(client->CompareAndSet("nope", 1, "x", 0).status().IsNotFound());

  EXPECT_EQ(client->Remove("k1", 9).code(), StatusCode::kBusy);
  ASSERT_TRUE(client->Remove("k1", 3).ok());
  EXPECT_TRUE(client->Remove("k1").IsNotFound());
  g = client->Get("k1");
  ASSERT_TRUE(g.ok());
  EXPECT_FALSE(g->has_value());
  auto re = client->PutIfAbsent("k1", "content-d", 1);
  ASSERT_TRUE(re.ok());
  EXPECT_EQ(re->version, 5u);  // the tombstone had version 4

  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(client->PutIfAbsent(Key(i), "v" + std::to_string(i), i).ok());
  }
  Direct direct;
  for (int i = 0; i < 40; ++i) {
    auto on0 = direct.Get(c.Id(0), Key(i));
    auto on1 = direct.Get(c.Id(1), Key(i));
    ASSERT_TRUE(on0.has_value() && on1.has_value()) << Key(i);
    EXPECT_EQ(*on0, *on1);
    EXPECT_EQ(on0->value, "v" + std::to_string(i));
  }
  EXPECT_EQ(direct.Get(c.Id(0), "k1")->version, 5u);
  EXPECT_EQ(direct.Get(c.Id(1), "k1")->version, 5u);

  auto scan = client->ScanPrefix("group1/fp-1");
  ASSERT_TRUE(scan.ok());
  ASSERT_EQ(scan->size(), 11u);  // fp-1, fp-10..fp-19
  EXPECT_EQ((*scan)[0].first, "group1/fp-1");
  EXPECT_EQ((*scan)[1].first, "group1/fp-10");
  EXPECT_EQ(client->ScanPrefix("")->size(), 41u);

  auto stats = client->Stats();
  ASSERT_TRUE(stats.ok());
  ASSERT_EQ(stats->size(), 2u);
  for (const auto& s : *stats) {
    EXPECT_TRUE(s.up);
    EXPECT_EQ(s.keys, 41u);
    EXPECT_EQ(s.references, 1 + 39 * 40 / 2);
  }
}

TEST(DhtTest, ConcurrentAddsAndPutIfAbsent) {
  DhtCluster c;
  ASSERT_TRUE(c.Start(0, {}).ok());
  ASSERT_TRUE(c.Start(1, {c.Id(0)}).ok());
  ASSERT_TRUE(c.NewClient()->PutIfAbsent("counter", "v", 0).ok());

  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&] {
      auto client = c.NewClient();
      for (int i = 0; i < 50; ++i) {
        if (!client->Add("counter", 1).ok()) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  threads.clear();
  EXPECT_EQ(failures.load(), 0);
  auto g = c.NewClient()->Get("counter");
  ASSERT_TRUE(g.ok() && g->has_value());
  EXPECT_EQ((*g)->count, 800);
  EXPECT_EQ((*g)->version, 801u);
  Direct direct;
  EXPECT_EQ(direct.Get(c.Id(0), "counter")->count, 800);
  EXPECT_EQ(direct.Get(c.Id(1), "counter")->count, 800);

  std::atomic<int> created{0}, existed{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      auto client = c.NewClient();
      auto r = client->PutIfAbsent("race", "from-" + std::to_string(t), 1);
      if (r.ok()) {
        ++created;
      } else if (r.status().code() == StatusCode::kAlreadyExists) {
        ++existed;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(created.load(), 1);
  EXPECT_EQ(existed.load(), 7);
}

TEST(DhtTest, KillNineOfOneNodeThenItCatchesUp) {
  DhtCluster c;
  ASSERT_TRUE(c.Start(0, {}).ok());
  ASSERT_TRUE(c.Start(1, {c.Id(0)}).ok());
  auto client = c.NewClient();
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(client->PutIfAbsent(Key(i), "v", 1).ok());

  c.node(1).Kill9();
  // Every operation keeps working through the survivor.
  for (int i = 0; i < 100; ++i) {
    auto g = client->Get(Key(i));
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    ASSERT_TRUE(g->has_value()) << Key(i);
  }
  for (int i = 0; i < 100; i += 2) ASSERT_TRUE(client->Add(Key(i), 10).ok()) << Key(i);
  for (int i = 100; i < 200; ++i) ASSERT_TRUE(client->PutIfAbsent(Key(i), "new", 2).ok());
  for (int i = 0; i < 30; i += 3) ASSERT_TRUE(client->Remove(Key(i)).ok());
  for (int i = 1; i < 30; i += 3) {
    auto g = client->Get(Key(i));
    ASSERT_TRUE(g.ok() && g->has_value());
    ASSERT_TRUE(client->CompareAndSet(Key(i), (*g)->version, "cas", 4).ok());
  }

  ASSERT_TRUE(c.Start(1, {c.Id(0)}).ok());
  Direct direct;
  for (int i = 0; i < 200; ++i) {
    auto want = direct.Get(c.Id(0), Key(i));
    auto got = direct.Get(c.Id(1), Key(i));
    ASSERT_EQ(want.has_value(), got.has_value()) << Key(i);
    if (want) {
      EXPECT_EQ(*want, *got) << Key(i);
    }
    if (i < 30 && i % 3 == 0) {
      EXPECT_FALSE(got.has_value()) << Key(i) << " was removed";
    }
  }
  EXPECT_EQ(direct.All(c.Id(1)).size(), 190u);
  // Writes after the restart reach it again.
  ASSERT_TRUE(client->Add(Key(199), 1).ok());
  EXPECT_EQ(direct.Get(c.Id(1), Key(199))->count, 3);
}

TEST(DhtTest, ThirdNodeJoinsAndPullsItsShareWhileReadsNeverMiss) {
  DhtCluster c;
  ASSERT_TRUE(c.Start(0, {}).ok());
  ASSERT_TRUE(c.Start(1, {c.Id(0)}).ok());
  constexpr int kKeys = 3000;
  {
    auto client = c.NewClient();
    for (int i = 0; i < kKeys; ++i) {
      ASSERT_TRUE(client->PutIfAbsent(Key(i), "value-" + std::to_string(i), 1).ok()) << i;
    }
  }

  std::atomic<bool> stop{false};
  std::atomic<int> reads{0}, failures{0}, misses{0};
  std::thread reader([&] {
    auto client = c.NewClient(/*refresh_ms=*/100);
    std::mt19937 rng(7);
    while (!stop) {
      int i = static_cast<int>(rng() % kKeys);
      auto g = client->Get(Key(i));
      ++reads;
      if (!g.ok()) {
        ++failures;
      } else if (!g->has_value() || (*g)->value != "value-" + std::to_string(i)) {
        ++misses;
      }
    }
  });

  ASSERT_TRUE(c.Start(2, {c.Id(0), c.Id(1)}).ok());
  // Let the reader run on the 3-node view for a while.
  int before = reads.load();
  ASSERT_TRUE(WaitFor([&] { return reads.load() > before + 2000; }, 20000));
  stop = true;
  reader.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(misses.load(), 0);

  Direct direct;
  std::vector<std::string> all = {c.Id(0), c.Id(1), c.Id(2)};
  std::sort(all.begin(), all.end());
  for (size_t i = 0; i < 3; ++i) {
    auto n = direct.Nodes(c.Id(i));
    std::sort(n.begin(), n.end());
    EXPECT_EQ(n, all) << "membership seen by " << c.Id(i);
  }
  dht::Ring ring(all);
  auto held = direct.All(c.Id(2));
  int owned = 0;
  for (int i = 0; i < kKeys; ++i) owned += ring.Owns(c.Id(2), Key(i), 2) ? 1 : 0;
  double share = static_cast<double>(held.size()) / (kKeys * 2);
  EXPECT_GT(share, 0.2);
  EXPECT_LT(share, 0.5);
  EXPECT_EQ(static_cast<int>(held.size()), owned) << "it holds exactly the keys it owns";
  for (const auto& [key, rec] : held) {
    EXPECT_TRUE(ring.Owns(c.Id(2), key, 2)) << key;
    EXPECT_EQ(rec.version, 1u);
  }
  // The new node now serves its keys (as coordinator or replica).
  auto client = c.NewClient();
  for (int i = 0; i < 200; ++i) {
    auto g = client->Get(Key(i));
    ASSERT_TRUE(g.ok() && g->has_value()) << Key(i);
  }
}

TEST(DhtTest, BadInputIsRefusedAndTheNodeSurvives) {
  DhtCluster c;
  ASSERT_TRUE(c.Start(0, {}).ok());
  auto client = c.NewClient();
  ASSERT_TRUE(client->PutIfAbsent("good", "v", 1).ok());

  // No handshake: refused (13) and the connection is closed.
  {
    auto conn = net::BlockingConn::Connect("127.0.0.1", c.node(0).port(), 2000);
    ASSERT_TRUE(conn.ok());
    (*conn)->set_timeout_ms(2000);
    auto r = (*conn)->Call(dht::kDhtGet, dht::EncodeKeyRequest({"good"}), 1 << 20);
    EXPECT_TRUE(!r.ok() || r->status == EACCES) << (r.ok() ? r->status : -1);
  }
  // Wrong secret.
  {
    DhtClientOptions o;
    o.seeds = {c.Id(0)};
    o.secret = "not-the-secret";
    DhtClient wrong(o);
    EXPECT_FALSE(wrong.Get("good").ok());
  }
  // Oversized key and value: the client refuses them, and so does the node.
  EXPECT_TRUE(client->PutIfAbsent(std::string(513, 'k'), "v", 1).status().IsInvalidArgument());
  EXPECT_TRUE(client->PutIfAbsent("k", std::string(8193, 'v'), 1).status().IsInvalidArgument());
  auto conn = net::BlockingConn::Connect("127.0.0.1", c.node(0).port(), 2000);
  ASSERT_TRUE(conn.ok());
  (*conn)->set_timeout_ms(5000);
  ASSERT_TRUE((*conn)->Authenticate(kSecret).ok());
  auto call = [&](uint8_t cmd, const std::string& body) {
    auto r = (*conn)->Call(cmd, body, 1 << 20);
    return r.ok() ? static_cast<int>(r->status) : -1;
  };
  EXPECT_EQ(call(dht::kDhtPutIfAbsent, dht::EncodePutRequest({std::string(513, 'k'), 1, "v"})),
            EINVAL);
  EXPECT_EQ(call(dht::kDhtPutIfAbsent, dht::EncodePutRequest({"k", 1, std::string(8193, 'v')})),
            EINVAL);
  // Garbage bodies for every command: an error status, the connection and node keep serving.
  std::mt19937 rng(3);
  for (uint8_t cmd = dht::kDhtReplicate; cmd != 0; ++cmd) {
    for (size_t len : {0, 1, 3, 17, 100}) {
      std::string garbage(len, '\0');
      for (auto& ch : garbage) ch = static_cast<char>(rng());
      if (cmd == dht::kDhtNodes || cmd == dht::kDhtStats) {
        if (len == 0) continue;  // an empty body is their valid request
      }
      EXPECT_EQ(call(cmd, garbage), EINVAL) << "cmd " << int(cmd) << " len " << len;
    }
  }
  // A body over the command's bound: refused, and that connection is closed.
  EXPECT_NE(call(dht::kDhtGet, std::string(4096, 'x')), 0);
  EXPECT_TRUE(c.node(0).Running());
  auto g = client->Get("good");
  ASSERT_TRUE(g.ok() && g->has_value());
  EXPECT_EQ((*g)->count, 1);
}

// Keys whose preference list (of `replicas`) on `ring` starts with `node`.
std::vector<std::string> KeysCoordinatedBy(const dht::Ring& ring, const std::string& node,
                                           int replicas, int n) {
  std::vector<std::string> out;
  for (int i = 0; static_cast<int>(out.size()) < n; ++i) {
    std::string k = "group1/coord-" + std::to_string(i);
    if (ring.Preference(k, replicas)[0] == node) out.push_back(k);
  }
  return out;
}

TEST(DhtTest, StalledReplicasNeitherDelayTheCoordinatorNorMissWrites) {
  DhtCluster c;
  // Three copies of every key; no anti-entropy: only hints can repair the stalled replicas.
  c.set_extra("replicas = 3\nanti_entropy_interval = 0\n");
  ASSERT_TRUE(c.Start(0, {}).ok());
  ASSERT_TRUE(c.Start(1, {c.Id(0)}).ok());
  ASSERT_TRUE(c.Start(2, {c.Id(0), c.Id(1)}).ok());
  std::vector<std::string> all = {c.Id(0), c.Id(1), c.Id(2)};
  dht::Ring ring(all);
  auto keys = KeysCoordinatedBy(ring, c.Id(0), 3, 8);
  auto client = c.NewClient(/*refresh_ms=*/3600 * 1000, /*replicas=*/3);
  ASSERT_EQ(client->Nodes().size(), 3u);
  // The coordinator now has pooled connections to both replicas.
  for (const auto& k : keys) ASSERT_TRUE(client->PutIfAbsent(k, "v", 1).ok()) << k;

  // Both replicas stall (a connection to them opens, nothing answers).
  ASSERT_EQ(kill(c.node(1).pid(), SIGSTOP), 0);
  ASSERT_EQ(kill(c.node(2).pid(), SIGSTOP), 0);
  Direct direct;
  auto t0 = std::chrono::steady_clock::now();
  std::string body;
  EXPECT_EQ(direct.Call(c.Id(0), dht::kDhtAdd, dht::EncodeAddRequest({keys[0], 1}), &body), 0);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - t0).count();
  // The REPLICATE calls run in parallel and the coordinator waits for them a bounded time: well
  // under the clients' 1 s deadline (sequential 400 ms calls, each retried once, took 1.6 s).
  EXPECT_LT(ms, 900) << "the coordinator waited for its stalled replicas";
  // Clients (1 s deadline) keep writing through the coordinator.
  for (const auto& k : keys) ASSERT_TRUE(client->Add(k, 10).ok()) << k;
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(client->PutIfAbsent(keys[i] + "-new", "n", 3).ok());
  }

  ASSERT_EQ(kill(c.node(1).pid(), SIGCONT), 0);
  ASSERT_EQ(kill(c.node(2).pid(), SIGCONT), 0);
  // The hints reach them: every replica ends with the coordinator's records.
  auto converged = [&] {
    for (int i = 0; i < static_cast<int>(keys.size()); ++i) {
      for (const std::string& k : {keys[i], keys[i] + "-new"}) {
        if (i >= 5 && k != keys[i]) continue;
        auto want = direct.Get(c.Id(0), k);
        for (size_t n = 1; n < 3; ++n) {
          if (direct.Get(c.Id(n), k) != want) return false;
        }
      }
    }
    return true;
  };
  EXPECT_TRUE(WaitFor(converged, 30000)) << "the stalled replicas never got the missed writes";
  EXPECT_EQ(direct.Get(c.Id(1), keys[0])->count, 12);
  EXPECT_EQ(direct.Get(c.Id(2), keys[1])->count, 11);
}

TEST(DhtTest, AntiEntropyRepairsMissedRecordsAndSettlesEqualVersions) {
  DhtCluster c;
  c.set_extra("anti_entropy_interval = 1\n");
  ASSERT_TRUE(c.Start(0, {}).ok());
  ASSERT_TRUE(c.Start(1, {c.Id(0)}).ok());
  Direct direct;
  // A record only node 0 holds (its REPLICATE was lost, and no hint is left), and two
  // coordinators' writes of the same version with different contents.
  const Record lost{3, 5, false, "lost"};
  const Record a{4, 1, false, "content-a"}, b{4, 2, false, "content-b"};
  ASSERT_EQ(direct.Replicate(c.Id(0), "missed", lost), 0);
  ASSERT_EQ(direct.Replicate(c.Id(0), "tie", a), 0);
  ASSERT_EQ(direct.Replicate(c.Id(1), "tie", b), 0);
  ASSERT_EQ(direct.Replicate(c.Id(1), "tie2", a), 0);
  ASSERT_EQ(direct.Replicate(c.Id(0), "tie2", b), 0);
  auto converged = [&] {
    return direct.Get(c.Id(1), "missed") == std::optional<Record>(lost) &&
           direct.Get(c.Id(0), "tie") == std::optional<Record>(b) &&
           direct.Get(c.Id(1), "tie") == std::optional<Record>(b) &&
           direct.Get(c.Id(0), "tie2") == std::optional<Record>(b) &&
           direct.Get(c.Id(1), "tie2") == std::optional<Record>(b);
  };
  EXPECT_TRUE(WaitFor(converged, 15000));
  EXPECT_EQ(direct.Get(c.Id(1), "missed"), std::optional<Record>(lost));
  EXPECT_EQ(direct.Get(c.Id(0), "tie"), std::optional<Record>(b));
  EXPECT_EQ(direct.Get(c.Id(1), "tie"), std::optional<Record>(b));
}

TEST(DhtTest, MembersLearntAfterTheStartArePulledFrom) {
  DhtCluster c;
  c.set_extra("anti_entropy_interval = 0\n");  // no periodic rounds: only the pull on learning
  // Two separate one-node clusters, each with its own keys.
  ASSERT_TRUE(c.Start(0, {}).ok());
  ASSERT_TRUE(c.Start(1, {}).ok());
  for (size_t n = 0; n < 2; ++n) {
    DhtClientOptions o;
    o.seeds = {c.Id(n)};
    o.secret = kSecret;
    DhtClient one(o);
    ASSERT_EQ(one.Nodes().size(), 1u);
    for (int i = 0; i < 30; ++i) {
      ASSERT_TRUE(one.PutIfAbsent(Key(i) + "-on-" + std::to_string(n), "v", 1).ok());
    }
  }
  Direct direct;
  // Node 0 learns of node 1 (and node 1 of node 0 through the membership refresh).
  ASSERT_EQ(direct.Call(c.Id(0), dht::kDhtJoin, dht::EncodeJoinRequest(c.Id(1))), 0);
  // With 2 replicas on 2 nodes each owns every key: each pulls the other's.
  EXPECT_TRUE(WaitFor([&] {
    return direct.All(c.Id(0)).size() == 60u && direct.All(c.Id(1)).size() == 60u;
  }, 20000)) << direct.All(c.Id(0)).size() << " " << direct.All(c.Id(1)).size();
}

TEST(DhtTest, StaleClientAfterAJoinWritesOnlyThroughOwners) {
  DhtCluster c;
  // One copy per key: a client with the 2-node ring may have no owner at all in its list.
  c.set_extra("replicas = 1\n");
  ASSERT_TRUE(c.Start(0, {}).ok());
  ASSERT_TRUE(c.Start(1, {c.Id(0)}).ok());
  constexpr int kKeys = 200;
  auto stale = c.NewClient(/*refresh_ms=*/3600 * 1000, /*replicas=*/1);
  for (int i = 0; i < kKeys; ++i) ASSERT_TRUE(stale->PutIfAbsent(Key(i), "v", 1).ok());
  ASSERT_EQ(stale->Nodes().size(), 2u);

  ASSERT_TRUE(c.Start(2, {c.Id(0), c.Id(1)}).ok());
  std::vector<std::string> all = {c.Id(0), c.Id(1), c.Id(2)};
  dht::Ring ring(all);
  Direct direct;
  // A node refuses a key it does not own, reads included.
  int refused = 0;
  for (int i = 0; i < kKeys; ++i) {
    for (const auto& n : all) {
      if (ring.Owns(n, Key(i), 1)) continue;
      EXPECT_EQ(direct.Call(n, dht::kDhtAdd, dht::EncodeAddRequest({Key(i), 1})), EAGAIN);
      EXPECT_EQ(direct.Call(n, dht::kDhtGet, dht::EncodeKeyRequest({Key(i)})), EAGAIN);
      ++refused;
    }
  }
  EXPECT_GT(refused, 0);

  // The stale client (its view still has 2 nodes) reaches the owner of every key. What the old
  // owners hold of the keys that moved to the new node (read with SCAN: GET is refused now):
  dht::Ring old_ring({c.Id(0), c.Id(1)});
  std::map<std::string, std::map<std::string, Record>> before;
  for (size_t n = 0; n < 2; ++n) before[c.Id(n)] = direct.All(c.Id(n));
  std::map<std::string, Record> old_copies;
  for (int i = 0; i < kKeys; ++i) {
    if (ring.Preference(Key(i), 1)[0] != c.Id(2)) continue;
    old_copies[Key(i)] = before[old_ring.Preference(Key(i), 1)[0]].at(Key(i));
  }
  EXPECT_GT(old_copies.size(), 0u);
  for (int i = 0; i < kKeys; ++i) {
    auto a = stale->Add(Key(i), 4);
    ASSERT_TRUE(a.ok()) << Key(i) << ": " << a.status().ToString();
    EXPECT_EQ(a->count, 5);
    ASSERT_TRUE(stale->PutIfAbsent(Key(i) + "-new", "n", 1).ok()) << Key(i);
  }
  std::map<std::string, std::map<std::string, Record>> held;
  for (const auto& n : all) held[n] = direct.All(n);
  for (int i = 0; i < kKeys; ++i) {
    std::string owner = ring.Preference(Key(i), 1)[0];
    ASSERT_EQ(held[owner].count(Key(i)), 1u) << Key(i);
    EXPECT_EQ(held[owner][Key(i)].count, 5) << Key(i);
    std::string nk = Key(i) + "-new";
    std::string new_owner = ring.Preference(nk, 1)[0];
    for (const auto& n : all) {
      EXPECT_EQ(held[n].count(nk), n == new_owner ? 1u : 0u) << nk << " on " << n;
    }
  }
  // The old owners' copies of the moved keys were not touched.
  for (const auto& [key, rec] : old_copies) {
    EXPECT_EQ(held[old_ring.Preference(key, 1)[0]].at(key), rec) << key;
  }
}

}  // namespace
}  // namespace depot::testing
