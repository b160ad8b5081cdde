// Unit tests of the binlog (storage/binlog.{h,cc}): appends and reads, following a growing log,
// segment rotation, epochs across clean and unclean restarts, torn tails, corruption inside the
// log, the record codec and the read-routing watermarks. Each test works in its own mkdtemp
// directory under /tmp, removed at the end.
#include "storage/binlog.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/base/hash.h"

namespace depot::storage {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kPeerA = 0x1111222233334444ULL;
constexpr uint64_t kPeerB = 0xAAAABBBBCCCCDDDDULL;

std::string Name(int i) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "M00/%02X/%02X/file%06d.txt", i % 256, (i / 7) % 256, i);
  return buf;
}

class BinlogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/depot-binlog-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    dir_ = root_ + "/binlog";
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  std::unique_ptr<Binlog> Open(Binlog::Options o = {}, const std::string& dir = "") {
    auto log = Binlog::Open(dir.empty() ? dir_ : dir, o);
    EXPECT_TRUE(log.ok()) << log.status().ToString();
    return log.ok() ? std::move(*log) : nullptr;
  }

  // Every record from `start` to the current end.
  static std::vector<BinlogRecord> ReadAll(const Binlog* log, BinlogReader* r) {
    std::vector<BinlogRecord> out;
    for (;;) {
      auto n = r->Next();
      EXPECT_TRUE(n.ok()) << n.status().ToString();
      if (!n.ok() || !n->has_value()) break;
      out.push_back(std::move(**n));
      if (out.size() > 100000) {
        ADD_FAILURE() << "reader does not stop";
        break;
      }
    }
    (void)log;
    return out;
  }
  static std::vector<BinlogRecord> ReadAll(const Binlog* log) {
    BinlogReader r(log);
    return ReadAll(log, &r);
  }

  static std::vector<uint64_t> Seqs(const std::vector<BinlogRecord>& rs) {
    std::vector<uint64_t> out;
    for (const auto& r : rs) out.push_back(r.seq);
    return out;
  }

  static uint64_t FileSize(const std::string& path) {
    struct stat st;
    EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
    return static_cast<uint64_t>(st.st_size);
  }

  // Flips one byte of a file in place.
  static void FlipByte(const std::string& path, uint64_t at) {
    int fd = open(path.c_str(), O_RDWR);
    ASSERT_GE(fd, 0) << path;
    char c = 0;
    ASSERT_EQ(pread(fd, &c, 1, static_cast<off_t>(at)), 1);
    c = static_cast<char>(c ^ 0x5A);
    ASSERT_EQ(pwrite(fd, &c, 1, static_cast<off_t>(at)), 1);
    close(fd);
  }

  std::string root_, dir_;
};

// ---- appends and reads ----------------------------------------------------------------------

TEST_F(BinlogTest, NewBinlogHasOneEpochAndNothingToRead) {
  auto log = Open();
  ASSERT_NE(log, nullptr);
  EXPECT_NE(log->epoch(), 0u);
  ASSERT_EQ(log->epochs().size(), 1u);
  EXPECT_TRUE(log->IsOwn(log->epoch()));
  EXPECT_FALSE(log->IsOwn(kPeerA));
  EXPECT_FALSE(log->recovery().unclean);
  EXPECT_EQ(log->recovery().torn_bytes, 0u);
  EXPECT_EQ(log->last_seq(), 0u);
  EXPECT_GT(log->first_created(), 0u);
  EXPECT_TRUE(fs::exists(log->SegmentPath(0)));
  EXPECT_TRUE(fs::exists(dir_ + "/epochs"));
  EXPECT_TRUE(ReadAll(log.get()).empty());
}

TEST_F(BinlogTest, OwnAndAppliedRecordsReadBackInOrder) {
  auto log = Open();
  ASSERT_NE(log, nullptr);
  const uint64_t me = log->epoch();
  uint32_t before = static_cast<uint32_t>(UnixSeconds());

  auto r1 = log->AppendOwn(kOpCreate, Name(1));
  ASSERT_TRUE(r1.ok()) << r1.status().ToString();
  EXPECT_EQ(r1->seq, 1u);
  EXPECT_EQ(r1->origin, me);
  EXPECT_EQ(r1->oseq, 1u);
  auto r2 = log->AppendApplied(kPeerA, 7, kOpDelete, Name(2));
  ASSERT_TRUE(r2.ok()) << r2.status().ToString();
  EXPECT_EQ(r2->seq, 2u);
  EXPECT_EQ(r2->origin, kPeerA);
  EXPECT_EQ(r2->oseq, 7u);
  auto r3 = log->AppendOwn(kOpMeta, Name(3), 0, /*flags=*/1);
  ASSERT_TRUE(r3.ok());
  EXPECT_EQ(r3->seq, 3u);
  EXPECT_EQ(r3->oseq, 2u);
  auto r4 = log->AppendApplied(kPeerB, 1, kOpCreate, Name(4));
  ASSERT_TRUE(r4.ok());
  auto r5 = log->AppendApplied(kPeerA, 8, kOpMeta, Name(5), 1);
  ASSERT_TRUE(r5.ok());
  auto r6 = log->AppendOwn(kOpDelete, Name(6));
  ASSERT_TRUE(r6.ok());
  EXPECT_EQ(r6->oseq, 3u);
  EXPECT_EQ(log->last_seq(), 6u);
  uint32_t after = static_cast<uint32_t>(UnixSeconds());

  auto all = ReadAll(log.get());
  ASSERT_EQ(all.size(), 6u);
  struct Want {
    uint64_t origin, oseq;
    char op;
    uint8_t flags;
  };
  const Want want[] = {{me, 1, kOpCreate, 0},  {kPeerA, 7, kOpDelete, 0}, {me, 2, kOpMeta, 1},
                       {kPeerB, 1, kOpCreate, 0}, {kPeerA, 8, kOpMeta, 1}, {me, 3, kOpDelete, 0}};
  std::map<uint64_t, uint64_t> last_oseq;
  for (size_t i = 0; i < all.size(); ++i) {
    SCOPED_TRACE(i);
    const BinlogRecord& r = all[i];
    EXPECT_EQ(r.seq, i + 1);
    EXPECT_EQ(r.origin, want[i].origin);
    EXPECT_EQ(r.oseq, want[i].oseq);
    EXPECT_EQ(r.op, want[i].op);
    EXPECT_EQ(r.flags, want[i].flags);
    EXPECT_EQ(r.name, Name(static_cast<int>(i) + 1));
    EXPECT_GE(r.time, before);
    EXPECT_LE(r.time, after);
    EXPECT_EQ(log->IsOwn(r.origin), r.origin == me);
    // Numbers grow per origin.
    EXPECT_GT(r.oseq, last_oseq[r.origin]);
    last_oseq[r.origin] = r.oseq;
  }
  // What the appends returned is what the reader sees.
  EXPECT_EQ(all[0].watermark, r1->watermark);
  EXPECT_EQ(all[5].time, r6->time);
}

TEST_F(BinlogTest, BadAppendsAreRefusedAndLeaveNoTrace) {
  auto log = Open();
  ASSERT_NE(log, nullptr);
  EXPECT_TRUE(log->AppendOwn(kOpCreate, "").status().IsInvalidArgument());
  EXPECT_TRUE(log->AppendOwn('X', Name(1)).status().IsInvalidArgument());
  EXPECT_TRUE(log->AppendOwn(kOpCreate, std::string(Binlog::kMaxName + 1, 'n'))
                  .status()
                  .IsInvalidArgument());
  EXPECT_TRUE(log->AppendApplied(kPeerA, 1, 0, Name(1)).status().IsInvalidArgument());
  EXPECT_EQ(log->last_seq(), 0u);
  // The longest name is fine, and the oseq was not used up by the failures.
  auto r = log->AppendOwn(kOpCreate, std::string(Binlog::kMaxName, 'n'));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->seq, 1u);
  EXPECT_EQ(r->oseq, 1u);
  auto all = ReadAll(log.get());
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].name.size(), Binlog::kMaxName);
}

TEST_F(BinlogTest, ReaderFollowsGrowth) {
  auto log = Open();
  ASSERT_NE(log, nullptr);
  BinlogReader r(log.get());
  auto n = r.Next();
  ASSERT_TRUE(n.ok());
  EXPECT_FALSE(n->has_value());
  for (int i = 1; i <= 5; ++i) {
    ASSERT_TRUE(log->AppendOwn(kOpCreate, Name(i)).ok());
    n = r.Next();
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    ASSERT_TRUE(n->has_value()) << "record " << i << " not seen";
    EXPECT_EQ((*n)->seq, static_cast<uint64_t>(i));
    EXPECT_EQ((*n)->name, Name(i));
    // At the end again.
    n = r.Next();
    ASSERT_TRUE(n.ok());
    EXPECT_FALSE(n->has_value());
    EXPECT_EQ(r.pos(), log->end());
  }
  // Several at once.
  for (int i = 6; i <= 9; ++i) ASSERT_TRUE(log->AppendOwn(kOpDelete, Name(i)).ok());
  EXPECT_EQ(Seqs(ReadAll(log.get(), &r)), (std::vector<uint64_t>{6, 7, 8, 9}));
  // A reader started at a position sees only what follows it.
  BinlogReader late(log.get(), log->end());
  n = late.Next();
  ASSERT_TRUE(n.ok());
  EXPECT_FALSE(n->has_value());
  ASSERT_TRUE(log->AppendOwn(kOpCreate, Name(10)).ok());
  EXPECT_EQ(Seqs(ReadAll(log.get(), &late)), (std::vector<uint64_t>{10}));
  EXPECT_EQ(r.skipped_bytes(), 0u);
  EXPECT_EQ(late.skipped_bytes(), 0u);
}

TEST_F(BinlogTest, WaitBeyondWakesOnAppend) {
  auto log = Open();
  ASSERT_NE(log, nullptr);
  // Nothing beyond 0: returns after the timeout.
  auto t0 = std::chrono::steady_clock::now();
  log->WaitBeyond(0, 50);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(40));
  std::thread appender([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // lets the waiter block first
    ASSERT_TRUE(log->AppendOwn(kOpCreate, Name(1)).ok());
  });
  t0 = std::chrono::steady_clock::now();
  log->WaitBeyond(0, 20000);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
  EXPECT_EQ(log->last_seq(), 1u);
  appender.join();
  // Already beyond: returns at once.
  t0 = std::chrono::steady_clock::now();
  log->WaitBeyond(0, 20000);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
  // Wake() ends a wait (woken repeatedly until the waiter is back: a Wake() before the wait
  // starts does not count).
  std::atomic<bool> back{false};
  std::thread waker([&] {
    while (!back) {
      log->Wake();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  t0 = std::chrono::steady_clock::now();
  log->WaitBeyond(1, 20000);
  back = true;
  waker.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
}

// ---- segments -------------------------------------------------------------------------------

TEST_F(BinlogTest, SegmentsRotateAndReadersCrossThem) {
  Binlog::Options o;
  o.segment_bytes = 256;  // about three records a segment
  auto log = Open(o);
  ASSERT_NE(log, nullptr);
  BinlogReader follower(log.get());
  std::vector<uint64_t> followed;
  const int kRecords = 40;
  for (int i = 1; i <= kRecords; ++i) {
    auto r = (i % 3 == 0) ? log->AppendApplied(kPeerA, static_cast<uint64_t>(i), kOpCreate, Name(i))
                          : log->AppendOwn(kOpCreate, Name(i));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(r->seq, static_cast<uint64_t>(i));
    if (i % 4 == 0) {  // the follower reads now and then, crossing rotations as they happen
      for (auto& rec : ReadAll(log.get(), &follower)) followed.push_back(rec.seq);
    }
  }
  BinlogPos end = log->end();
  EXPECT_GE(end.segment, 8u) << "segments did not rotate";
  for (uint32_t s = 0; s <= end.segment; ++s) {
    SCOPED_TRACE(s);
    ASSERT_TRUE(fs::exists(log->SegmentPath(s)));
    // Every segment but a record longer than the limit stays within segment_bytes.
    EXPECT_LE(FileSize(log->SegmentPath(s)), o.segment_bytes);
  }
  for (auto& rec : ReadAll(log.get(), &follower)) followed.push_back(rec.seq);
  std::vector<uint64_t> want;
  for (int i = 1; i <= kRecords; ++i) want.push_back(static_cast<uint64_t>(i));
  EXPECT_EQ(followed, want);
  auto all = ReadAll(log.get());
  EXPECT_EQ(Seqs(all), want);
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i].name, Name(static_cast<int>(i) + 1));
  // A reader that starts in a middle segment.
  BinlogReader mid(log.get(), BinlogPos{3, 0});
  auto from_mid = ReadAll(log.get(), &mid);
  ASSERT_FALSE(from_mid.empty());
  EXPECT_EQ(from_mid.back().seq, static_cast<uint64_t>(kRecords));
  EXPECT_GT(from_mid.front().seq, 3u);
  EXPECT_EQ(from_mid.size(), kRecords - from_mid.front().seq + 1);

  // Reopened: appends continue in the last segment, reads still cross every segment.
  log.reset();
  log = Open(o);
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->last_seq(), static_cast<uint64_t>(kRecords));
  EXPECT_EQ(log->end().segment, end.segment);
  auto r = log->AppendOwn(kOpDelete, Name(kRecords + 1));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->seq, static_cast<uint64_t>(kRecords + 1));
  want.push_back(kRecords + 1);
  EXPECT_EQ(Seqs(ReadAll(log.get())), want);
}

TEST_F(BinlogTest, RecordLargerThanASegmentStillFits) {
  Binlog::Options o;
  o.segment_bytes = 64;  // smaller than any record with its segment header
  auto log = Open(o);
  ASSERT_NE(log, nullptr);
  for (int i = 1; i <= 5; ++i) ASSERT_TRUE(log->AppendOwn(kOpCreate, Name(i)).ok());
  EXPECT_EQ(log->end().segment, 4u);  // one record per segment
  EXPECT_EQ(Seqs(ReadAll(log.get())), (std::vector<uint64_t>{1, 2, 3, 4, 5}));
}

// ---- restarts and epochs --------------------------------------------------------------------

TEST_F(BinlogTest, CleanReopenKeepsTheEpochAndContinuesNumbers) {
  uint64_t epoch = 0;
  {
    auto log = Open();
    ASSERT_NE(log, nullptr);
    epoch = log->epoch();
    ASSERT_TRUE(log->AppendOwn(kOpCreate, Name(1)).ok());
    ASSERT_TRUE(log->AppendApplied(kPeerA, 3, kOpCreate, Name(2)).ok());
    ASSERT_TRUE(log->AppendOwn(kOpMeta, Name(3)).ok());
  }
  EXPECT_TRUE(fs::exists(dir_ + "/clean"));
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE(round);
    auto log = Open();
    ASSERT_NE(log, nullptr);
    EXPECT_FALSE(log->recovery().unclean);
    EXPECT_EQ(log->recovery().torn_bytes, 0u);
    EXPECT_EQ(log->recovery().corrupt_records, 0u);
    EXPECT_GT(log->recovery().last_time, 0u);
    EXPECT_EQ(log->epoch(), epoch);
    EXPECT_EQ(log->epochs().size(), 1u);
    // While open, a crash must be detectable: `clean` is gone.
    EXPECT_FALSE(fs::exists(dir_ + "/clean"));
    uint64_t seq = log->last_seq();
    EXPECT_EQ(seq, 3u + static_cast<uint64_t>(round));
    auto r = log->AppendOwn(kOpDelete, Name(10 + round));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->seq, seq + 1);
    EXPECT_EQ(r->origin, epoch);
    EXPECT_EQ(r->oseq, 3u + static_cast<uint64_t>(round));  // 1, 2 before the first reopen
  }
  auto log = Open();
  ASSERT_NE(log, nullptr);
  auto all = ReadAll(log.get());
  EXPECT_EQ(Seqs(all), (std::vector<uint64_t>{1, 2, 3, 4, 5}));
}

TEST_F(BinlogTest, ReopenWithoutCleanCloseTakesANewEpoch) {
  uint64_t first = 0;
  {
    auto log = Open();
    ASSERT_NE(log, nullptr);
    first = log->epoch();
    ASSERT_TRUE(log->AppendOwn(kOpCreate, Name(1)).ok());
    ASSERT_TRUE(log->AppendOwn(kOpCreate, Name(2)).ok());
  }
  // As if the process had died: no `clean` file.
  ASSERT_TRUE(fs::remove(dir_ + "/clean"));
  auto log = Open();
  ASSERT_NE(log, nullptr);
  EXPECT_TRUE(log->recovery().unclean);
  EXPECT_EQ(log->recovery().torn_bytes, 0u);
  ASSERT_EQ(log->epochs().size(), 2u);
  EXPECT_EQ(log->epochs()[0], first);
  EXPECT_NE(log->epoch(), first);
  EXPECT_TRUE(log->IsOwn(first));
  EXPECT_TRUE(log->IsOwn(log->epoch()));
  EXPECT_EQ(log->last_seq(), 2u);
  auto r = log->AppendOwn(kOpDelete, Name(1));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->seq, 3u);
  EXPECT_EQ(r->origin, log->epoch());
  EXPECT_EQ(r->oseq, 1u);  // numbers start again in the new epoch
  auto all = ReadAll(log.get());
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].origin, first);
  EXPECT_EQ(all[1].origin, first);
  EXPECT_EQ(all[2].origin, log->epoch());
  for (const auto& rec : all) EXPECT_TRUE(log->IsOwn(rec.origin));
  // The epochs file keeps both, in order, across a clean restart.
  uint64_t second = log->epoch();
  log.reset();
  log = Open();
  ASSERT_NE(log, nullptr);
  EXPECT_FALSE(log->recovery().unclean);
  EXPECT_EQ(log->epochs(), (std::vector<uint64_t>{first, second}));
  auto r2 = log->AppendOwn(kOpCreate, Name(5));
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->origin, second);
  EXPECT_EQ(r2->oseq, 2u);
}

TEST_F(BinlogTest, CopyOfAnOpenBinlogIsUnclean) {
  auto log = Open();
  ASSERT_NE(log, nullptr);
  ASSERT_TRUE(log->AppendOwn(kOpCreate, Name(1)).ok());
  ASSERT_TRUE(log->AppendApplied(kPeerA, 4, kOpCreate, Name(2)).ok());
  ASSERT_TRUE(log->Sync().ok());
  // A snapshot of the directory while the binlog is open is what a crash leaves behind.
  std::string copy = root_ + "/copy";
  fs::copy(dir_, copy, fs::copy_options::recursive);
  auto crashed = Open({}, copy);
  ASSERT_NE(crashed, nullptr);
  EXPECT_TRUE(crashed->recovery().unclean);
  ASSERT_EQ(crashed->epochs().size(), 2u);
  EXPECT_EQ(crashed->epochs()[0], log->epoch());
  EXPECT_TRUE(crashed->IsOwn(log->epoch()));
  EXPECT_TRUE(crashed->IsOwn(crashed->epoch()));
  EXPECT_FALSE(crashed->IsOwn(kPeerA));
  EXPECT_EQ(crashed->last_seq(), 2u);
  auto r = crashed->AppendOwn(kOpMeta, Name(1));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->oseq, 1u);
  EXPECT_EQ(Seqs(ReadAll(crashed.get())), (std::vector<uint64_t>{1, 2, 3}));
  // The original is untouched by all this.
  EXPECT_EQ(log->epochs().size(), 1u);
  EXPECT_EQ(log->last_seq(), 2u);
}

TEST_F(BinlogTest, TornTailIsCutAtOpen) {
  uint64_t first = 0;
  std::string seg;
  {
    auto log = Open();
    ASSERT_NE(log, nullptr);
    first = log->epoch();
    for (int i = 1; i <= 4; ++i) ASSERT_TRUE(log->AppendOwn(kOpCreate, Name(i)).ok());
    seg = log->SegmentPath(log->end().segment);
  }
  // Cut the last record in the middle.
  uint64_t size = FileSize(seg);
  ASSERT_EQ(truncate(seg.c_str(), static_cast<off_t>(size - 7)), 0);
  auto log = Open();
  ASSERT_NE(log, nullptr);
  const size_t rec_size = Binlog::Encode(BinlogRecord{4, 1, 4, 0, 0, kOpCreate, 0, Name(4)}).size();
  EXPECT_EQ(log->recovery().torn_bytes, rec_size - 7);
  EXPECT_TRUE(log->recovery().unclean);
  EXPECT_EQ(FileSize(seg), size - rec_size);
  ASSERT_EQ(log->epochs().size(), 2u);
  EXPECT_NE(log->epoch(), first);
  EXPECT_TRUE(log->IsOwn(first));
  EXPECT_EQ(log->last_seq(), 3u);
  // Appends and reads go on from the cut.
  auto r = log->AppendOwn(kOpCreate, Name(40));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->seq, 4u);
  EXPECT_EQ(r->oseq, 1u);
  ASSERT_TRUE(log->AppendApplied(kPeerA, 9, kOpDelete, Name(41)).ok());
  BinlogReader reader(log.get());
  auto all = ReadAll(log.get(), &reader);
  EXPECT_EQ(Seqs(all), (std::vector<uint64_t>{1, 2, 3, 4, 5}));
  ASSERT_EQ(all.size(), 5u);
  EXPECT_EQ(all[3].name, Name(40));
  EXPECT_EQ(all[3].origin, log->epoch());
  EXPECT_EQ(reader.skipped_bytes(), 0u);
  // A clean restart after that finds nothing wrong.
  log.reset();
  log = Open();
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->recovery().torn_bytes, 0u);
  EXPECT_FALSE(log->recovery().unclean);
  EXPECT_EQ(log->epochs().size(), 2u);
  EXPECT_EQ(log->last_seq(), 5u);
}

// Regression: the files to announce again after a cut tail were known only from the cut itself;
// a crash after the cut but before the announcement forgot them. A marker now outlives the cut
// until ClearReannounce().
TEST_F(BinlogTest, ReannounceMarkerSurvivesUntilCleared) {
  std::string seg;
  uint32_t last_good = 0;
  {
    auto log = Open();
    ASSERT_NE(log, nullptr);
    EXPECT_FALSE(log->reannounce_since().has_value());
    for (int i = 1; i <= 3; ++i) {
      auto r = log->AppendOwn(kOpCreate, Name(i));
      ASSERT_TRUE(r.ok());
      if (i == 2) last_good = r->time;
    }
    seg = log->SegmentPath(log->end().segment);
  }
  ASSERT_EQ(truncate(seg.c_str(), static_cast<off_t>(FileSize(seg) - 5)), 0);
  {
    auto log = Open();
    ASSERT_NE(log, nullptr);
    ASSERT_TRUE(log->reannounce_since().has_value());
    EXPECT_EQ(*log->reannounce_since(), last_good);
    // Not cleared (a crash before the files were announced): the next open still says so.
  }
  auto log = Open();
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->recovery().torn_bytes, 0u);
  ASSERT_TRUE(log->reannounce_since().has_value());
  EXPECT_EQ(*log->reannounce_since(), last_good);
  ASSERT_TRUE(log->ClearReannounce().ok());
  EXPECT_FALSE(log->reannounce_since().has_value());
  log.reset();
  log = Open();
  ASSERT_NE(log, nullptr);
  EXPECT_FALSE(log->reannounce_since().has_value());
}

TEST_F(BinlogTest, TornRecordHeaderIsCutAtOpen) {
  std::string seg;
  {
    auto log = Open();
    ASSERT_NE(log, nullptr);
    for (int i = 1; i <= 3; ++i) ASSERT_TRUE(log->AppendOwn(kOpCreate, Name(i)).ok());
    seg = log->SegmentPath(log->end().segment);
  }
  // Only 3 bytes of a fourth record's header made it.
  {
    int fd = open(seg.c_str(), O_WRONLY | O_APPEND);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, "\xDB\x01\x00", 3), 3);
    close(fd);
  }
  auto log = Open();
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->recovery().torn_bytes, 3u);
  EXPECT_TRUE(log->recovery().unclean);
  EXPECT_EQ(log->last_seq(), 3u);
  ASSERT_TRUE(log->AppendOwn(kOpCreate, Name(4)).ok());
  EXPECT_EQ(Seqs(ReadAll(log.get())), (std::vector<uint64_t>{1, 2, 3, 4}));
}

TEST_F(BinlogTest, EmptySegmentTornAtCreationIsRemoved) {
  Binlog::Options o;
  o.segment_bytes = 256;
  uint32_t last = 0;
  {
    auto log = Open(o);
    ASSERT_NE(log, nullptr);
    for (int i = 1; i <= 10; ++i) ASSERT_TRUE(log->AppendOwn(kOpCreate, Name(i)).ok());
    last = log->end().segment;
  }
  // A next segment whose header never reached the disk.
  std::string next = dir_ + "/binlog." + std::string(6 - std::to_string(last + 1).size(), '0') +
                     std::to_string(last + 1);
  {
    int fd = open(next.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
    ASSERT_GE(fd, 0) << next;
    ASSERT_EQ(write(fd, "DPBIN", 5), 5);
    close(fd);
  }
  auto log = Open(o);
  ASSERT_NE(log, nullptr);
  EXPECT_FALSE(fs::exists(next));
  EXPECT_TRUE(log->recovery().unclean);
  EXPECT_EQ(log->epochs().size(), 2u);
  EXPECT_EQ(log->last_seq(), 10u);
  ASSERT_TRUE(log->AppendOwn(kOpCreate, Name(11)).ok());
  auto all = ReadAll(log.get());
  ASSERT_EQ(all.size(), 11u);
  EXPECT_EQ(all.back().seq, 11u);
}

// ---- corruption -----------------------------------------------------------------------------

TEST_F(BinlogTest, ReaderSkipsExactlyACorruptRecord) {
  auto log = Open();
  ASSERT_NE(log, nullptr);
  std::vector<size_t> sizes;
  for (int i = 1; i <= 6; ++i) {
    auto r = log->AppendOwn(kOpCreate, Name(i));
    ASSERT_TRUE(r.ok());
    sizes.push_back(Binlog::Encode(*r).size());
  }
  std::string seg = log->SegmentPath(0);
  // A byte inside the name of record 3 goes bad (on disk, under the open binlog).
  uint64_t rec3 = Binlog::kSegmentHeader + sizes[0] + sizes[1];
  FlipByte(seg, rec3 + sizes[2] - 4);
  {
    BinlogReader reader(log.get());
    auto all = ReadAll(log.get(), &reader);
    EXPECT_EQ(Seqs(all), (std::vector<uint64_t>{1, 2, 4, 5, 6}));
    EXPECT_EQ(reader.skipped_bytes(), sizes[2]);
    // Appends after the damage are read as usual.
    ASSERT_TRUE(log->AppendOwn(kOpDelete, Name(7)).ok());
    auto more = ReadAll(log.get(), &reader);
    EXPECT_EQ(Seqs(more), (std::vector<uint64_t>{7}));
    EXPECT_EQ(reader.skipped_bytes(), sizes[2]);
  }
  // Damage to the first byte (the record magic) of record 5 as well.
  uint64_t rec5 = rec3 + sizes[2] + sizes[3];
  FlipByte(seg, rec5);
  {
    BinlogReader reader(log.get());
    EXPECT_EQ(Seqs(ReadAll(log.get(), &reader)), (std::vector<uint64_t>{1, 2, 4, 6, 7}));
    EXPECT_EQ(reader.skipped_bytes(), sizes[2] + sizes[4]);
  }
  // Reopened: the damage is seen, the log takes a new epoch, nothing valid is cut.
  uint64_t first = log->epoch();
  log.reset();
  log = Open();
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->recovery().corrupt_records, 2u);
  EXPECT_EQ(log->recovery().torn_bytes, 0u);
  EXPECT_TRUE(log->recovery().unclean);
  EXPECT_NE(log->epoch(), first);
  EXPECT_EQ(log->last_seq(), 7u);
  auto r = log->AppendOwn(kOpCreate, Name(8));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->seq, 8u);
  BinlogReader reader(log.get());
  EXPECT_EQ(Seqs(ReadAll(log.get(), &reader)), (std::vector<uint64_t>{1, 2, 4, 6, 7, 8}));
  EXPECT_EQ(reader.skipped_bytes(), sizes[2] + sizes[4]);
}

TEST_F(BinlogTest, CorruptRecordInAnOlderSegmentIsSkipped) {
  Binlog::Options o;
  o.segment_bytes = 256;
  auto log = Open(o);
  ASSERT_NE(log, nullptr);
  std::vector<BinlogRecord> recs;
  for (int i = 1; i <= 12; ++i) {
    auto r = log->AppendOwn(kOpCreate, Name(i));
    ASSERT_TRUE(r.ok());
    recs.push_back(*r);
  }
  ASSERT_GE(log->end().segment, 2u);
  // The first record of segment 1, whatever seq it has.
  BinlogReader probe(log.get(), BinlogPos{1, 0});
  auto first_of_1 = probe.Next();
  ASSERT_TRUE(first_of_1.ok() && first_of_1->has_value());
  uint64_t bad_seq = (*first_of_1)->seq;
  size_t bad_size = Binlog::Encode(**first_of_1).size();
  FlipByte(log->SegmentPath(1), Binlog::kSegmentHeader + 20);  // inside its origin field
  BinlogReader reader(log.get());
  auto all = ReadAll(log.get(), &reader);
  std::vector<uint64_t> want;
  for (uint64_t s = 1; s <= 12; ++s) {
    if (s != bad_seq) want.push_back(s);
  }
  EXPECT_EQ(Seqs(all), want);
  EXPECT_EQ(reader.skipped_bytes(), bad_size);
}

// A record whose length field is damaged so that it seems to run past the end of the file is not
// a torn tail when valid records follow it: readers must go on to them and Open must not cut them.
// DISABLED: fails today (binlog.cc treats such a record as a partial one: the reader stops there
// until enough bytes are appended after it, and Open cuts the valid records after it as a torn
// tail). Enable with the fix.
TEST_F(BinlogTest, DamagedLengthBeforeValidRecordsIsNotATornTail) {
  std::vector<size_t> sizes;
  auto log = Open();
  ASSERT_NE(log, nullptr);
  for (int i = 1; i <= 4; ++i) {
    auto r = log->AppendOwn(kOpCreate, Name(i));
    ASSERT_TRUE(r.ok());
    sizes.push_back(Binlog::Encode(*r).size());
  }
  std::string seg = log->SegmentPath(0);
  // Record 3's length grows by 256 (still under the limit), past the end of the segment.
  uint64_t rec3 = Binlog::kSegmentHeader + sizes[0] + sizes[1];
  {
    int fd = open(seg.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    char one = 1;
    ASSERT_EQ(pwrite(fd, &one, 1, static_cast<off_t>(rec3 + 2)), 1);
    close(fd);
  }
  {
    BinlogReader reader(log.get());
    EXPECT_EQ(Seqs(ReadAll(log.get(), &reader)), (std::vector<uint64_t>{1, 2, 4}))
        << "the reader stopped at the damaged record";
  }
  log.reset();
  log = Open();
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->recovery().torn_bytes, 0u) << "valid record 4 was cut as a torn tail";
  EXPECT_EQ(log->recovery().corrupt_records, 1u);
  EXPECT_EQ(log->last_seq(), 4u);
  BinlogReader reader(log.get());
  EXPECT_EQ(Seqs(ReadAll(log.get(), &reader)), (std::vector<uint64_t>{1, 2, 4}));
}

// ---- record codec ---------------------------------------------------------------------------

BinlogRecord Sample() {
  BinlogRecord r;
  r.seq = 0x0102030405060708ULL;
  r.origin = kPeerB;
  r.oseq = 0xFFFFFFFFFFFFFFF0ULL;
  r.time = 0xA1B2C3D4;
  r.watermark = 0x01020304;
  r.op = kOpMeta;
  r.flags = 0x81;
  r.name = "M00/AB/CD/wKgBAWZ-some_name.jpg";
  return r;
}

void ExpectSame(const BinlogRecord& a, const BinlogRecord& b) {
  EXPECT_EQ(a.seq, b.seq);
  EXPECT_EQ(a.origin, b.origin);
  EXPECT_EQ(a.oseq, b.oseq);
  EXPECT_EQ(a.time, b.time);
  EXPECT_EQ(a.watermark, b.watermark);
  EXPECT_EQ(a.op, b.op);
  EXPECT_EQ(a.flags, b.flags);
  EXPECT_EQ(a.name, b.name);
}

TEST(BinlogCodecTest, RoundTrip) {
  for (char op : {kOpCreate, kOpDelete, kOpMeta}) {
    for (size_t name_len : {size_t{1}, size_t{31}, Binlog::kMaxName}) {
      BinlogRecord r = Sample();
      r.op = op;
      r.name = std::string(name_len, 'x');
      std::string bytes = Binlog::Encode(r);
      EXPECT_EQ(bytes.size(), Binlog::kRecordHeader + 36 + name_len);
      EXPECT_EQ(static_cast<uint8_t>(bytes[0]), 0xDB);
      auto d = Binlog::Decode(bytes);
      ASSERT_TRUE(d.ok()) << d.status().ToString();
      EXPECT_EQ(d->second, bytes.size());
      ExpectSame(d->first, r);
      // Followed by more bytes: only the first record is taken.
      BinlogRecord r2 = Sample();
      r2.seq = 99;
      auto d2 = Binlog::Decode(bytes + Binlog::Encode(r2) + "junk");
      ASSERT_TRUE(d2.ok());
      EXPECT_EQ(d2->second, bytes.size());
      ExpectSame(d2->first, r);
    }
  }
}

TEST(BinlogCodecTest, TruncatedIsNotFound) {
  std::string bytes = Binlog::Encode(Sample());
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto d = Binlog::Decode(std::string_view(bytes).substr(0, n));
    EXPECT_EQ(d.status().code(), StatusCode::kNotFound) << "prefix " << n << ": "
                                                        << d.status().ToString();
  }
}

TEST(BinlogCodecTest, DamagedIsCorruption) {
  const std::string good = Binlog::Encode(Sample());
  // Every byte but the length field (a longer length reads as a partial record): magic,
  // version, checksum and every payload byte.
  for (size_t i = 0; i < good.size(); ++i) {
    if (i == 2 || i == 3) continue;
    for (uint8_t mask : {0x01, 0x80, 0xFF}) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ mask);
      auto d = Binlog::Decode(bad);
      EXPECT_EQ(d.status().code(), StatusCode::kCorruption)
          << "byte " << i << " ^ " << int(mask) << ": " << d.status().ToString();
    }
  }
  // A length below the fixed fields or above the largest name plus a range.
  for (uint16_t len : {0, 1, 35, 36 + 1024 + 16 + 1, 0xFFFF}) {
    std::string bad = good;
    bad[2] = static_cast<char>(len >> 8);
    bad[3] = static_cast<char>(len);
    EXPECT_EQ(Binlog::Decode(bad).status().code(), StatusCode::kCorruption) << len;
  }
  // A shorter length (the checksum no longer matches).
  std::string shorter = good;
  shorter[3] = static_cast<char>(shorter[3] - 1);
  EXPECT_EQ(Binlog::Decode(shorter).status().code(), StatusCode::kCorruption);
}

TEST(BinlogCodecTest, ValidChecksumButBadFieldsIsCorruption) {
  BinlogRecord r = Sample();
  r.op = 'X';
  EXPECT_EQ(Binlog::Decode(Binlog::Encode(r)).status().code(), StatusCode::kCorruption);
  r = Sample();
  r.seq = 0;
  EXPECT_EQ(Binlog::Decode(Binlog::Encode(r)).status().code(), StatusCode::kCorruption);
  r = Sample();
  r.oseq = 0;
  EXPECT_EQ(Binlog::Decode(Binlog::Encode(r)).status().code(), StatusCode::kCorruption);
  r = Sample();
  r.name = std::string(Binlog::kMaxName + 1, 'n');
  EXPECT_EQ(Binlog::Decode(Binlog::Encode(r)).status().code(), StatusCode::kCorruption);
  // name_len disagreeing with the record length, checksum recomputed.
  std::string bytes = Binlog::Encode(Sample());
  std::string payload = bytes.substr(Binlog::kRecordHeader);
  payload[35] = static_cast<char>(payload[35] - 1);
  uint32_t crc = Crc32(payload);
  for (int i = 0; i < 4; ++i) bytes[4 + i] = static_cast<char>(crc >> (24 - 8 * i));
  bytes.replace(Binlog::kRecordHeader, payload.size(), payload);
  EXPECT_EQ(Binlog::Decode(bytes).status().code(), StatusCode::kCorruption);
  // Unknown record version.
  bytes = Binlog::Encode(Sample());
  bytes[1] = 2;
  EXPECT_EQ(Binlog::Decode(bytes).status().code(), StatusCode::kCorruption);
}

// ---- watermarks -----------------------------------------------------------------------------

// Waits (at most ~2 s) until the clock has moved past `t`.
void WaitPastSecond(uint32_t t) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (static_cast<uint32_t>(UnixSeconds()) <= t && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_GT(static_cast<uint32_t>(UnixSeconds()), t);
}

TEST_F(BinlogTest, WatermarkStaysBelowACreateInProgress) {
  auto log = Open();
  ASSERT_NE(log, nullptr);
  uint32_t c1 = log->BeginCreate();
  EXPECT_GT(c1, 0u);
  // Time passes while the upload runs; other records are appended meanwhile.
  WaitPastSecond(c1);
  auto other = log->AppendOwn(kOpDelete, Name(1));
  ASSERT_TRUE(other.ok());
  EXPECT_LT(other->watermark, c1);
  EXPECT_LT(log->WatermarkNow(), c1);
  auto applied = log->AppendApplied(kPeerA, 1, kOpCreate, Name(2));
  ASSERT_TRUE(applied.ok());
  EXPECT_LT(applied->watermark, c1);
  // A second create in progress; the first one ends: the second now holds the watermark.
  uint32_t c2 = log->BeginCreate();
  EXPECT_GE(c2, c1);
  auto created = log->AppendOwn(kOpCreate, Name(3), c1);
  ASSERT_TRUE(created.ok());
  // The create of c1 is this record itself ("at or before"), c2 is still running.
  EXPECT_GE(created->watermark, c1);
  EXPECT_LT(created->watermark, c2);
  WaitPastSecond(c2);
  EXPECT_LT(log->WatermarkNow(), c2);
  EXPECT_GE(log->WatermarkNow(), c1);  // c1 is done: a reader past record 3 holds it
  auto next = log->AppendOwn(kOpMeta, Name(3));
  ASSERT_TRUE(next.ok());
  EXPECT_LT(next->watermark, c2);
  EXPECT_GE(next->watermark, c1);
  // The second upload is abandoned: nothing holds the watermark back any more.
  log->AbortCreate(c2);
  uint32_t now = static_cast<uint32_t>(UnixSeconds());
  EXPECT_GE(log->WatermarkNow(), now - 1);
  EXPECT_GE(log->WatermarkNow(), c2);
  auto last = log->AppendOwn(kOpMeta, Name(3));
  ASSERT_TRUE(last.ok());
  EXPECT_GE(last->watermark, c2);
  EXPECT_LT(last->watermark, last->time);
  // Aborting something unknown changes nothing.
  log->AbortCreate(12345);
  EXPECT_GE(log->WatermarkNow(), c2);
}

TEST_F(BinlogTest, SameSecondCreatesAreCountedSeparately) {
  auto log = Open();
  ASSERT_NE(log, nullptr);
  uint32_t a = log->BeginCreate();
  uint32_t b = log->BeginCreate();
  WaitPastSecond(std::max(a, b));
  ASSERT_TRUE(log->AppendOwn(kOpCreate, Name(1), a).ok());
  // b is still in progress even if it has the same time as a.
  EXPECT_LT(log->WatermarkNow(), b);
  ASSERT_TRUE(log->AppendOwn(kOpCreate, Name(2), b).ok());
  EXPECT_GE(log->WatermarkNow(), b);
}

TEST_F(BinlogTest, CaughtUpWatermarkOnlyAtTheEnd) {
  auto log = Open();
  ASSERT_NE(log, nullptr);
  // Empty log: a reader that passed seq 0 has passed everything.
  auto w = log->CaughtUpWatermark(0);
  ASSERT_TRUE(w.has_value());
  EXPECT_FALSE(log->CaughtUpWatermark(1).has_value());
  for (int i = 1; i <= 3; ++i) ASSERT_TRUE(log->AppendOwn(kOpCreate, Name(i)).ok());
  EXPECT_FALSE(log->CaughtUpWatermark(0).has_value());
  EXPECT_FALSE(log->CaughtUpWatermark(2).has_value());
  EXPECT_FALSE(log->CaughtUpWatermark(4).has_value());
  w = log->CaughtUpWatermark(log->last_seq());
  ASSERT_TRUE(w.has_value());
  EXPECT_GE(*w, static_cast<uint32_t>(UnixSeconds()) - 2);
  // A create in progress holds the caught-up watermark too.
  uint32_t c = log->BeginCreate();
  WaitPastSecond(c);
  w = log->CaughtUpWatermark(3);
  ASSERT_TRUE(w.has_value());
  EXPECT_LT(*w, c);
  ASSERT_TRUE(log->AppendOwn(kOpCreate, Name(4), c).ok());
  EXPECT_FALSE(log->CaughtUpWatermark(3).has_value());
  w = log->CaughtUpWatermark(4);
  ASSERT_TRUE(w.has_value());
  EXPECT_GE(*w, c);
}

}  // namespace
}  // namespace depot::storage

namespace depot::storage {
namespace {

// Appender changes carry their range after the name: written, read back and decoded exactly;
// the same bytes with a range op but no range (or a range on a create) are corrupt.
TEST(BinlogRangeRecordTest, RangesRoundTripThroughTheLogAndTheCodec) {
  char tmpl[] = "/tmp/depot-binlog-range-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string root = tmpl;
  {
    auto log = Binlog::Open(root + "/binlog");
    ASSERT_TRUE(log.ok());
    ASSERT_TRUE((*log)->AppendOwn(kOpCreate, Name(1)).ok());
    ASSERT_TRUE((*log)->AppendOwnRange(kOpAppend, Name(1), 12, 4096).ok());
    ASSERT_TRUE((*log)->AppendOwnRange(kOpModify, Name(1), 0, 5).ok());
    ASSERT_TRUE((*log)->AppendOwnRange(kOpTruncate, Name(1), 7, 0).ok());
    ASSERT_TRUE((*log)->AppendApplied(kPeerA, 9, kOpAppend, Name(2), 0, 1ULL << 40, 3).ok());
    EXPECT_FALSE((*log)->AppendOwnRange(kOpCreate, Name(1), 1, 1).ok());
    BinlogReader r(log->get());
    std::vector<BinlogRecord> got;
    for (;;) {
      auto n = r.Next();
      ASSERT_TRUE(n.ok());
      if (!*n) break;
      got.push_back(**n);
    }
    ASSERT_EQ(got.size(), 5u);
    EXPECT_EQ(got[1].op, kOpAppend);
    EXPECT_EQ(got[1].offset, 12u);
    EXPECT_EQ(got[1].length, 4096u);
    EXPECT_EQ(got[2].op, kOpModify);
    EXPECT_EQ(got[2].length, 5u);
    EXPECT_EQ(got[3].op, kOpTruncate);
    EXPECT_EQ(got[3].offset, 7u);
    EXPECT_EQ(got[4].origin, kPeerA);
    EXPECT_EQ(got[4].offset, 1ULL << 40);
    EXPECT_EQ(got[4].name, Name(2));
    EXPECT_EQ(got[0].offset, 0u);  // a create has no range
  }
  BinlogRecord rec;
  rec.seq = 3;
  rec.origin = kPeerB;
  rec.oseq = 3;
  rec.op = kOpAppend;
  rec.name = Name(5);
  rec.offset = 100;
  rec.length = 200;
  std::string bytes = Binlog::Encode(rec);
  EXPECT_EQ(bytes.size(), Binlog::kRecordHeader + 36 + rec.name.size() + 16);
  auto d = Binlog::Decode(bytes);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->first.offset, 100u);
  EXPECT_EQ(d->first.length, 200u);
  EXPECT_EQ(d->second, bytes.size());
  // The op changed to a create (CRC fixed up): the 16 range bytes no longer fit the name length.
  std::string as_create = bytes;
  as_create[Binlog::kRecordHeader + 32] = kOpCreate;
  uint32_t crc = Crc32(std::string_view(as_create).substr(Binlog::kRecordHeader));
  for (int i = 0; i < 4; ++i) as_create[4 + i] = static_cast<char>(crc >> (24 - 8 * i));
  EXPECT_EQ(Binlog::Decode(as_create).status().code(), StatusCode::kCorruption);
  std::error_code ec;
  fs::remove_all(root, ec);
}

}  // namespace
}  // namespace depot::storage
