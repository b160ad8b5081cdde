#include "opsd/store.h"

#include <dirent.h>
#include <stdlib.h>

#include <gtest/gtest.h>

namespace depot::opsd {
namespace {

std::string TempDir() {
  std::string t = testing::TempDir() + "opsd_store_XXXXXX";
  char* d = mkdtemp(t.data());
  EXPECT_NE(d, nullptr);
  return t;
}

TEST(StoreTest, InsertReplaceRemoveSurviveReopen) {
  std::string dir = TempDir();
  int64_t id = 0;
  {
    auto store = Store::Open(dir, true);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    auto users = (*store)->AddCollection("users", {"username"}, {"username"});
    ASSERT_TRUE(users.ok());
    Txn t(store->get());
    auto d = t.Insert(*users, json{{"username", "alice"}});
    ASSERT_TRUE(d.ok());
    id = (**d)["id"].get<int64_t>();
    EXPECT_EQ((**d)["version"], 1);
    // Not visible before the commit.
    EXPECT_EQ((*users)->Get(id), nullptr);
    ASSERT_TRUE(t.Commit().ok());
    EXPECT_NE((*users)->Get(id), nullptr);
  }
  {
    auto store = Store::Open(dir, true);
    ASSERT_TRUE(store.ok());
    auto users = (*store)->AddCollection("users", {"username"}, {"username"});
    ASSERT_TRUE(users.ok());
    Doc d = (*users)->FindUnique("username", "ALICE");  // case-insensitive
    ASSERT_NE(d, nullptr);
    EXPECT_EQ((*d)["id"], id);
    {
      Txn t(store->get());
      // Stale version: refused.
      EXPECT_EQ(t.Replace(*users, id, json{{"username", "alice2"}}, 7).status().code(),
                StatusCode::kBusy);
      auto r = t.Replace(*users, id, json{{"username", "alice2"}}, 1);
      ASSERT_TRUE(r.ok());
      EXPECT_EQ((**r)["version"], 2);
      ASSERT_TRUE(t.Commit().ok());
    }
    EXPECT_EQ((*users)->FindUnique("username", "alice"), nullptr);
    EXPECT_NE((*users)->FindUnique("username", "alice2"), nullptr);
    {
      Txn t(store->get());
      // A new record gets a new id, never a reused one.
      auto d2 = t.Insert(*users, json{{"username", "bob"}});
      ASSERT_TRUE(d2.ok());
      EXPECT_GT((**d2)["id"].get<int64_t>(), id);
      ASSERT_TRUE(t.Remove(*users, id, std::nullopt).ok());
      ASSERT_TRUE(t.Commit().ok());
    }
    EXPECT_EQ((*users)->Get(id), nullptr);
    EXPECT_EQ((*users)->size(), 1u);
  }
}

TEST(StoreTest, UniqueFieldsClashInsideAndAcrossTransactions) {
  auto store = Store::Open(TempDir(), false);
  ASSERT_TRUE(store.ok());
  auto roles = (*store)->AddCollection("roles", {"name"}, {"name"});
  ASSERT_TRUE(roles.ok());
  {
    Txn t(store->get());
    ASSERT_TRUE(t.Insert(*roles, json{{"name", "ops"}}).ok());
    EXPECT_EQ(t.Insert(*roles, json{{"name", "OPS"}}).status().code(), StatusCode::kAlreadyExists);
    ASSERT_TRUE(t.Commit().ok());
  }
  Txn t(store->get());
  EXPECT_EQ(t.Insert(*roles, json{{"name", "Ops"}}).status().code(), StatusCode::kAlreadyExists);
  // Renaming the holder frees the name within the same transaction.
  Doc ops = (*roles)->FindUnique("name", "ops");
  ASSERT_TRUE(t.Replace(*roles, (*ops)["id"], json{{"name", "dev"}}, std::nullopt).ok());
  EXPECT_TRUE(t.Insert(*roles, json{{"name", "ops"}}).ok());
}

TEST(StoreTest, UncommittedTransactionChangesNothing) {
  std::string dir = TempDir();
  auto store = Store::Open(dir, true);
  ASSERT_TRUE(store.ok());
  auto c = (*store)->AddCollection("runs", {});
  ASSERT_TRUE(c.ok());
  {
    Txn t(store->get());
    ASSERT_TRUE(t.Insert(*c, json{{"kind", "x"}}).ok());
    t.PutRaw("audit/0000000000000001", "{}");
  }  // dropped
  EXPECT_EQ((*c)->size(), 0u);
  auto raw = (*store)->GetRaw("audit/0000000000000001");
  ASSERT_TRUE(raw.ok());
  EXPECT_FALSE(raw->has_value());
}

TEST(StoreTest, ScanBackwardNewestFirstWithCursor) {
  auto store = Store::Open(TempDir(), false);
  ASSERT_TRUE(store.ok());
  {
    Txn t(store->get());
    for (int i = 1; i <= 5; ++i) {
      char k[40];
      snprintf(k, sizeof k, "audit/%016d", i);
      t.PutRaw(k, std::to_string(i));
    }
    t.PutRaw("b/after", "x");
    ASSERT_TRUE(t.Commit().ok());
  }
  std::vector<std::string> got;
  ASSERT_TRUE((*store)->ScanBackward("audit/", "", [&](const std::string&, const std::string& v) {
    got.push_back(v);
    return true;
  }).ok());
  EXPECT_EQ(got, (std::vector<std::string>{"5", "4", "3", "2", "1"}));
  got.clear();
  ASSERT_TRUE((*store)->ScanBackward("audit/", "audit/0000000000000003",
                                     [&](const std::string&, const std::string& v) {
                                       got.push_back(v);
                                       return true;
                                     }).ok());
  EXPECT_EQ(got, (std::vector<std::string>{"2", "1"}));
}

// Regression: sequences outside collections (audit event ids) restarted at 1 after a reopen and
// overwrote the oldest audit events.
TEST(StoreTest, EverySequenceContinuesAfterReopen) {
  std::string dir = TempDir();
  for (int round = 0; round < 2; ++round) {
    auto store = Store::Open(dir, true);
    ASSERT_TRUE(store.ok());
    Txn t(store->get());
    EXPECT_EQ(t.NextId("audit"), round * 2 + 1);
    EXPECT_EQ(t.NextId("audit"), round * 2 + 2);
    ASSERT_TRUE(t.Commit().ok());
  }
}

TEST(StoreTest, SortedViewFollowsChanges) {
  auto store = Store::Open(TempDir(), false);
  ASSERT_TRUE(store.ok());
  auto c = (*store)->AddCollection("users", {});
  ASSERT_TRUE(c.ok());
  auto names = [&](bool desc) {
    std::vector<std::string> out;
    for (const Doc& d : *(*c)->Sorted("name", desc)) out.push_back((*d)["name"]);
    return out;
  };
  {
    Txn t(store->get());
    for (const char* n : {"carol", "alice", "bob"}) ASSERT_TRUE(t.Insert(*c, json{{"name", n}}).ok());
    ASSERT_TRUE(t.Commit().ok());
  }
  EXPECT_EQ(names(false), (std::vector<std::string>{"alice", "bob", "carol"}));
  EXPECT_EQ(names(true), (std::vector<std::string>{"carol", "bob", "alice"}));
  {
    Txn t(store->get());
    ASSERT_TRUE(t.Insert(*c, json{{"name", "aaron"}}).ok());
    ASSERT_TRUE(t.Remove(*c, 1, std::nullopt).ok());  // carol
    ASSERT_TRUE(t.Commit().ok());
  }
  EXPECT_EQ(names(false), (std::vector<std::string>{"aaron", "alice", "bob"}));
}

// Regression: file IDs and token hashes were matched case-insensitively, so a case variant of a
// recorded file ID passed the "recorded file" check.
TEST(StoreTest, UnfoldedUniqueFieldsMatchExactly) {
  auto store = Store::Open(TempDir(), false);
  ASSERT_TRUE(store.ok());
  auto files = (*store)->AddCollection("files", {"file_id"});
  ASSERT_TRUE(files.ok());
  Txn t(store->get());
  ASSERT_TRUE(t.Insert(*files, json{{"file_id", "group1/M00/00/00/AbC.txt"}}).ok());
  EXPECT_TRUE(t.Insert(*files, json{{"file_id", "group1/M00/00/00/abc.txt"}}).ok());
  ASSERT_TRUE(t.Commit().ok());
  EXPECT_EQ((*files)->FindUnique("file_id", "group1/M00/00/00/ABC.txt"), nullptr);
  EXPECT_EQ((*(*files)->FindUnique("file_id", "group1/M00/00/00/AbC.txt"))["id"], 1);
}

// Regression: numbers set in this process (signed) and read back from LevelDB (unsigned) sorted
// by their JSON kind, not their value, after a restart.
TEST(StoreTest, SortingMixesNumberKindsByValue) {
  std::vector<Doc> docs = {std::make_shared<const json>(json{{"t", 5}}),
                           std::make_shared<const json>(json::parse(R"({"t": 3})")),
                           std::make_shared<const json>(json{{"t", uint64_t{4}}}),
                           std::make_shared<const json>(json{{"t", -1}})};
  SortDocs(&docs, "t", false);
  std::vector<int64_t> got;
  for (const Doc& d : docs) got.push_back((*d)["t"].get<int64_t>());
  EXPECT_EQ(got, (std::vector<int64_t>{-1, 3, 4, 5}));
}

TEST(StoreTest, CorruptRecordIsReportedAtLoad) {
  std::string dir = TempDir();
  {
    auto store = Store::Open(dir, true);
    ASSERT_TRUE(store.ok());
    Txn t(store->get());
    t.PutRaw("r/users/000000000001", "{not json");
    ASSERT_TRUE(t.Commit().ok());
  }
  auto store = Store::Open(dir, true);
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->AddCollection("users", {}).status().code(), StatusCode::kCorruption);
}

}  // namespace
}  // namespace depot::opsd
