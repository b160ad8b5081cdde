#include "storage/meta_store.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>

namespace depot::storage {
namespace {

using namespace std::string_literals;

// ---- ParseMeta / EncodeMeta -----------------------------------------------------------------

TEST(MetaFormatTest, EmptyInputIsAnEmptyMap) {
  auto m = ParseMeta("");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_TRUE(m->empty());
  EXPECT_EQ(EncodeMeta({}), "");
}

TEST(MetaFormatTest, ParsesRecords) {
  auto m = ParseMeta("width\x02" "1024\x01height\x02" "768\x01" "author\x02" "bob"s);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(*m, (MetaMap{{"width", "1024"}, {"height", "768"}, {"author", "bob"}}));
}

TEST(MetaFormatTest, EmptyValueIsAllowed) {
  auto m = ParseMeta("k\x02"s);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(*m, (MetaMap{{"k", ""}}));
}

TEST(MetaFormatTest, EncodeIsSortedByKey) {
  MetaMap m;
  m["zeta"] = "1";
  m["alpha"] = "2";
  m["mid"] = "3";
  EXPECT_EQ(EncodeMeta(m), "alpha\x02" "2\x01mid\x02" "3\x01zeta\x02" "1"s);
  // Unsorted input encodes sorted.
  auto parsed = ParseMeta("b\x02" "2\x01" "a\x02" "1"s);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(EncodeMeta(*parsed), "a\x02" "1\x01" "b\x02" "2"s);
}

TEST(MetaFormatTest, RoundTrip) {
  MetaMap m{{"a", "1"},
            {"empty", ""},
            {std::string(64, 'k'), std::string(256, 'v')},
            {"spaces and = signs", "value with spaces"},
            {"utf8", "\xc3\xa9t\xc3\xa9"}};
  std::string bytes = EncodeMeta(m);
  auto back = ParseMeta(bytes);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, m);
  EXPECT_EQ(EncodeMeta(*back), bytes);
}

TEST(MetaFormatTest, KeyLengthLimit) {
  auto ok = ParseMeta(std::string(64, 'k') + "\x02v");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->begin()->first.size(), 64u);
  auto bad = ParseMeta(std::string(65, 'k') + "\x02v");
  EXPECT_TRUE(bad.status().IsInvalidArgument()) << bad.status().ToString();
  // Also when the long key is not the first record.
  bad = ParseMeta("a\x02" "1\x01"s + std::string(65, 'k') + "\x02v");
  EXPECT_TRUE(bad.status().IsInvalidArgument());
}

TEST(MetaFormatTest, ValueLengthLimit) {
  auto ok = ParseMeta("k\x02" + std::string(256, 'v'));
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->at("k").size(), 256u);
  auto bad = ParseMeta("k\x02" + std::string(257, 'v'));
  EXPECT_TRUE(bad.status().IsInvalidArgument()) << bad.status().ToString();
  bad = ParseMeta("k\x02" + std::string(257, 'v') + "\x01z\x02" "1");
  EXPECT_TRUE(bad.status().IsInvalidArgument());
}

TEST(MetaFormatTest, EmptyKeyRejected) {
  EXPECT_TRUE(ParseMeta("\x02value"s).status().IsInvalidArgument());
  EXPECT_TRUE(ParseMeta("a\x02" "1\x01\x02" "2"s).status().IsInvalidArgument());
}

TEST(MetaFormatTest, RecordWithoutSeparatorRejected) {
  EXPECT_TRUE(ParseMeta("novalue"s).status().IsInvalidArgument());
  EXPECT_TRUE(ParseMeta("a\x02" "1\x01novalue"s).status().IsInvalidArgument());
  // An empty record: a stray \x01 at the end, at the start, or doubled.
  EXPECT_TRUE(ParseMeta("a\x02" "1\x01"s).status().IsInvalidArgument());
  EXPECT_TRUE(ParseMeta("\x01" "a\x02" "1"s).status().IsInvalidArgument());
  EXPECT_TRUE(ParseMeta("a\x02" "1\x01\x01" "b\x02" "2"s).status().IsInvalidArgument());
  EXPECT_TRUE(ParseMeta("\x01"s).status().IsInvalidArgument());
}

// ---- MetaStore on a real LevelDB ------------------------------------------------------------

class MetaStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "depot_meta_store_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }

  std::unique_ptr<MetaStore> Open(bool sync = false) {
    auto r = MetaStore::Open(dir_ + "/data", sync);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : nullptr;
  }

  std::string dir_;
};

TEST_F(MetaStoreTest, PutGetDelete) {
  auto db = Open();
  ASSERT_NE(db, nullptr);
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/data/storage.db"));

  std::string value = "k\x02v\x01" "binary\0bytes"s;
  ASSERT_TRUE(db->Put("m/M00/00/00/abc.jpg", value).ok());
  auto got = db->Get("m/M00/00/00/abc.jpg");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ(**got, value);

  // Overwrite.
  ASSERT_TRUE(db->Put("m/M00/00/00/abc.jpg", "second").ok());
  got = db->Get("m/M00/00/00/abc.jpg");
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ(**got, "second");

  // An empty value is a value, not a missing key.
  ASSERT_TRUE(db->Put("empty", "").ok());
  got = db->Get("empty");
  ASSERT_TRUE(got.ok());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ(**got, "");

  ASSERT_TRUE(db->Delete("m/M00/00/00/abc.jpg").ok());
  got = db->Get("m/M00/00/00/abc.jpg");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_FALSE(got->has_value());
  // Deleting what is not there is fine.
  EXPECT_TRUE(db->Delete("m/never-written").ok());
}

TEST_F(MetaStoreTest, MissingKeyIsAnEmptyOptional) {
  auto db = Open();
  ASSERT_NE(db, nullptr);
  auto got = db->Get("m/missing");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_FALSE(got->has_value());
}

TEST_F(MetaStoreTest, KeysAreExact) {
  auto db = Open();
  ASSERT_NE(db, nullptr);
  ASSERT_TRUE(db->Put("m/a", "1").ok());
  ASSERT_TRUE(db->Put("m/ab", "2").ok());
  EXPECT_EQ(**db->Get("m/a"), "1");
  EXPECT_EQ(**db->Get("m/ab"), "2");
  EXPECT_FALSE(db->Get("m/")->has_value());
  EXPECT_FALSE(db->Get("m/abc")->has_value());
}

TEST_F(MetaStoreTest, DataSurvivesCloseAndReopen) {
  for (bool sync : {false, true}) {
    SCOPED_TRACE(sync ? "sync" : "no sync");
    {
      auto db = Open(sync);
      ASSERT_NE(db, nullptr);
      ASSERT_TRUE(db->Put("sys/join_time", "1700000000").ok());
      ASSERT_TRUE(db->Put("m/kept", EncodeMeta({{"a", "1"}})).ok());
      ASSERT_TRUE(db->Put("m/gone", "x").ok());
      ASSERT_TRUE(db->Delete("m/gone").ok());
    }
    auto db = Open(sync);
    ASSERT_NE(db, nullptr);
    auto t = db->Get("sys/join_time");
    ASSERT_TRUE(t.ok() && t->has_value());
    EXPECT_EQ(**t, "1700000000");
    auto kept = db->Get("m/kept");
    ASSERT_TRUE(kept.ok() && kept->has_value());
    auto meta = ParseMeta(**kept);
    ASSERT_TRUE(meta.ok());
    EXPECT_EQ(*meta, (MetaMap{{"a", "1"}}));
    auto gone = db->Get("m/gone");
    ASSERT_TRUE(gone.ok());
    EXPECT_FALSE(gone->has_value());
  }
}

TEST_F(MetaStoreTest, SecondOpenWhileOpenFails) {
  auto db = Open();
  ASSERT_NE(db, nullptr);
  auto second = MetaStore::Open(dir_ + "/data", false);
  EXPECT_FALSE(second.ok()) << "LevelDB's lock must keep a second opener out";
}

TEST_F(MetaStoreTest, OpenFailsWhereTheDirectoryCannotBeMade) {
  // A regular file where the directory should be.
  std::string file = dir_ + "/plain-file";
  FILE* f = fopen(file.c_str(), "w");
  ASSERT_NE(f, nullptr);
  fclose(f);
  auto r = MetaStore::Open(file + "/data", false);
  EXPECT_FALSE(r.ok());
}

}  // namespace
}  // namespace depot::storage
