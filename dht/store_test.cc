#include "dht/store.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>
#include <thread>
#include <vector>

namespace depot::dht {
namespace {

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/depot-dht-store-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    Reopen();
  }
  void TearDown() override {
    store_.reset();
    std::string cmd = "rm -rf " + dir_;
    (void)!system(cmd.c_str());
  }
  void Reopen() {
    store_.reset();
    auto s = Store::Open(dir_ + "/db", false);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
  }

  std::string dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(StoreTest, VersionRules) {
  Record cur;
  auto p = store_->PutIfAbsent("k", "v1", 1, &cur);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->version, 1u);
  EXPECT_EQ(p->count, 1);

  auto again = store_->PutIfAbsent("k", "other", 5, &cur);
  EXPECT_EQ(again.status().code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(cur, *p);

  auto a = store_->Add("k", 4);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->version, 2u);
  EXPECT_EQ(a->count, 5);
  EXPECT_EQ(a->value, "v1");
  EXPECT_TRUE(store_->Add("absent", 1).status().IsNotFound());

  auto bad = store_->CompareAndSet("k", 1, "v2", 9, &cur);
  EXPECT_EQ(bad.status().code(), StatusCode::kBusy);
  EXPECT_EQ(cur.version, 2u);
  auto c = store_->CompareAndSet("k", 2, "v2", 9, &cur);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->version, 3u);
  EXPECT_EQ(c->value, "v2");
  EXPECT_EQ(c->count, 9);
  EXPECT_TRUE(store_->CompareAndSet("absent", 0, "x", 1, &cur).status().IsNotFound());

  EXPECT_EQ(store_->live_keys(), 1u);
  EXPECT_EQ(store_->references(), 9);
  EXPECT_EQ(store_->Add("k", INT64_MAX).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(StoreTest, TombstonesKeepTheirVersion) {
  ASSERT_TRUE(store_->PutIfAbsent("k", "v", 2, nullptr).ok());  // v1
  Record cur;
  EXPECT_EQ(store_->Remove("k", 7, &cur).status().code(), StatusCode::kBusy);
  EXPECT_EQ(cur.version, 1u);
  auto t = store_->Remove("k", 1, &cur);
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(t->tombstone);
  EXPECT_EQ(t->version, 2u);
  EXPECT_EQ(store_->live_keys(), 0u);
  EXPECT_EQ(store_->references(), 0);

  // A removed key is absent for every operation but Get (which shows the tombstone).
  EXPECT_TRUE(store_->Remove("k", 0, &cur).status().IsNotFound());
  EXPECT_TRUE(store_->Add("k", 1).status().IsNotFound());
  EXPECT_TRUE(store_->CompareAndSet("k", 2, "x", 1, &cur).status().IsNotFound());
  auto g = store_->Get("k");
  ASSERT_TRUE(g.ok());
  ASSERT_TRUE(g->has_value());
  EXPECT_TRUE((*g)->tombstone);
  EXPECT_EQ((*g)->version, 2u);

  // Re-creating continues from the tombstone's version.
  auto p = store_->PutIfAbsent("k", "again", 1, nullptr);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->version, 3u);
  EXPECT_FALSE(p->tombstone);
  EXPECT_EQ(store_->live_keys(), 1u);
}

TEST_F(StoreTest, ApplyTakesOnlyHigherVersions) {
  Record r{5, 2, false, "five"};
  EXPECT_TRUE(*store_->Apply("k", r));
  EXPECT_FALSE(*store_->Apply("k", r));                          // the same record
  EXPECT_FALSE(*store_->Apply("k", Record{5, 1, false, "zzz"}));  // same version, smaller encoding
  EXPECT_FALSE(*store_->Apply("k", Record{4, 9, false, "four"}));
  EXPECT_EQ(**store_->Get("k"), r);
  EXPECT_TRUE(*store_->Apply("k", Record{6, 0, true, ""}));
  EXPECT_EQ(store_->live_keys(), 0u);
  EXPECT_FALSE(*store_->Apply("k", r));  // an old live copy does not resurrect it
  EXPECT_TRUE((*store_->Get("k"))->tombstone);
}

// Two coordinators wrote the same version with different contents: whatever the order in which
// a replica receives them, it keeps the one whose encoding (count, flags, value) is greater.
TEST_F(StoreTest, EqualVersionsConvergeOnTheGreaterEncoding) {
  const std::vector<std::pair<Record, Record>> ties = {
      {Record{5, 2, false, "a"}, Record{5, 3, false, "a"}},   // count decides
      {Record{5, 2, false, "b"}, Record{5, 2, false, "c"}},   // value decides
      {Record{5, 2, false, "b"}, Record{5, 2, true, ""}},     // flags decide: the tombstone
      {Record{5, 2, false, "zz"}, Record{5, 2, false, "aaa"}},  // value length first
  };
  int n = 0;
  for (const auto& [lo, hi] : ties) {
    EXPECT_TRUE(Supersedes(hi, lo)) << n;
    EXPECT_FALSE(Supersedes(lo, hi)) << n;
    EXPECT_FALSE(Supersedes(lo, lo)) << n;
    std::string a = "a" + std::to_string(n), b = "b" + std::to_string(n);
    ++n;
    // Replica a gets lo then hi, replica b hi then lo: both end with hi.
    EXPECT_TRUE(*store_->Apply(a, lo));
    EXPECT_TRUE(*store_->Apply(a, hi));
    EXPECT_TRUE(*store_->Apply(b, hi));
    EXPECT_FALSE(*store_->Apply(b, lo));
    EXPECT_EQ(**store_->Get(a), hi);
    EXPECT_EQ(**store_->Get(b), hi);
  }
  // A higher version still wins over any encoding.
  EXPECT_TRUE(Supersedes(Record{6, 0, false, ""}, Record{5, 9, true, "zzz"}));
  EXPECT_TRUE(*store_->Apply("a0", Record{6, 0, false, ""}));
  EXPECT_EQ((*store_->Get("a0"))->version, 6u);
  // The gauges follow the winner (a tombstone took b2 and a2).
  uint64_t live = 0;
  int64_t refs = 0;
  auto scanned = store_->Scan("", 100, true, nullptr, 1 << 20);  // kept alive for the loop
  ASSERT_TRUE(scanned.ok());
  for (const auto& [k, rec] : scanned->entries) {
    if (!rec.tombstone) {
      ++live;
      refs += rec.count;
    }
  }
  EXPECT_EQ(store_->live_keys(), live);
  EXPECT_EQ(store_->references(), refs);
}

TEST_F(StoreTest, ScanPagesFiltersAndSkipsTombstones) {
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(store_->PutIfAbsent("k" + std::to_string(i), "v", i, nullptr).ok());
  }
  ASSERT_TRUE(store_->Remove("k3", 0, nullptr).ok());
  auto p = store_->Scan("", 4, false, nullptr, 1 << 20);
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(p->entries.size(), 4u);
  EXPECT_EQ(p->entries[0].first, "k0");
  EXPECT_EQ(p->entries[3].first, "k4");  // k3 is a tombstone
  EXPECT_TRUE(p->more);
  auto rest = store_->Scan("k4", 100, false, nullptr, 1 << 20);
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(rest->entries.size(), 5u);
  EXPECT_EQ(rest->entries[0].first, "k5");
  EXPECT_FALSE(rest->more);
  auto with = store_->Scan("", 100, true, nullptr, 1 << 20);
  EXPECT_EQ(with->entries.size(), 10u);
  auto odd = store_->Scan("", 100, false,
                          [](std::string_view k) { return (k.back() - '0') % 2 == 1; }, 1 << 20);
  ASSERT_TRUE(odd.ok());
  EXPECT_EQ(odd->entries.size(), 4u);  // k1 k5 k7 k9
  auto small = store_->Scan("", 100, false, nullptr, 1);
  EXPECT_EQ(small->entries.size(), 1u);
  EXPECT_TRUE(small->more);
}

TEST_F(StoreTest, ReopenKeepsRecordsCountsAndMembership) {
  ASSERT_TRUE(store_->PutIfAbsent("a", "x", 3, nullptr).ok());
  ASSERT_TRUE(store_->PutIfAbsent("b", "y", 4, nullptr).ok());
  ASSERT_TRUE(store_->Add("b", 1).ok());
  ASSERT_TRUE(store_->PutIfAbsent("c", "z", 10, nullptr).ok());
  ASSERT_TRUE(store_->Remove("c", 0, nullptr).ok());
  ASSERT_TRUE(store_->AddNode("127.0.0.1:1").ok());
  ASSERT_TRUE(store_->AddNode("127.0.0.1:2").ok());
  Reopen();
  EXPECT_EQ(store_->live_keys(), 2u);
  EXPECT_EQ(store_->references(), 8);
  EXPECT_EQ((*store_->Get("b"))->version, 2u);
  EXPECT_EQ((*store_->Get("c"))->version, 2u);
  EXPECT_EQ(*store_->LoadNodes(), (std::vector<std::string>{"127.0.0.1:1", "127.0.0.1:2"}));
  // Membership keys are not data: scans do not see them.
  EXPECT_EQ(store_->Scan("", 100, true, nullptr, 1 << 20)->entries.size(), 3u);
}

TEST_F(StoreTest, ConcurrentAddsOnOneKeyAreSerialized) {
  ASSERT_TRUE(store_->PutIfAbsent("k", "v", 0, nullptr).ok());
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < 100; ++i) ASSERT_TRUE(store_->Add("k", 1).ok());
    });
  }
  for (auto& t : ts) t.join();
  auto g = store_->Get("k");
  EXPECT_EQ((*g)->count, 800);
  EXPECT_EQ((*g)->version, 801u);
}

}  // namespace
}  // namespace depot::dht
