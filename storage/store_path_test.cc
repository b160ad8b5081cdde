// StorePath on a real directory: pending files stay invisible until published, a name is never
// replaced, and crash recovery removes named-but-torn files of the recent write directories.
#include "storage/store_path.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <future>

#include "common/base/fs.h"
#include "common/base/hash.h"
#include "common/proto/file_id.h"

namespace depot::storage {
namespace {

class StorePathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/depot-store-path-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { std::system(("rm -rf " + root_).c_str()); }

  // A valid file name for `content` (size and CRC32 in the name).
  static std::string NameFor(const std::string& content, uint64_t r) {
    proto::FileNameFields f;
    f.source_ip = 0x7f000001;
    f.create_time = 1795757386;
    f.size_word = proto::MakeSizeWord(content.size(), false, r);
    f.crc32 = Crc32(content);
    return proto::MakeFileName(f, "bin", r);
  }
  std::string root_;
};

TEST_F(StorePathTest, PendingFileIsInvisibleUntilPublishedAndNamesAreNeverReplaced) {
  StorePath p(0, root_, /*durable=*/false, 1, 1);
  ASSERT_TRUE(p.Init().ok());
  auto f = p.CreatePending();
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  ASSERT_TRUE(WriteAll(f->fd, "abc", 3, "t").ok());
  char dir[16];
  std::snprintf(dir, sizeof dir, "/data/%02X/%02X/", f->dir1, f->dir2);
  std::string name = NameFor("abc", 1);
  EXPECT_NE(access((root_ + dir + name).c_str(), F_OK), 0);
  ASSERT_TRUE(p.Publish(&*f, name).ok());
  auto back = ReadSmallFile(root_ + dir + name);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, "abc");
  auto g = p.CreatePending();
  ASSERT_TRUE(g.ok());
  g->dir1 = f->dir1;
  g->dir2 = f->dir2;
  EXPECT_EQ(p.Publish(&*g, name).code(), StatusCode::kAlreadyExists);
}

TEST_F(StorePathTest, DurableCommitAcknowledgesPublishedFiles) {
  StorePath p(0, root_, /*durable=*/true, 1, 1);
  ASSERT_TRUE(p.Init().ok());
  auto f = p.CreatePending();
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(WriteAll(f->fd, "durable", 7, "t").ok());
  int d1 = f->dir1, d2 = f->dir2;
  std::promise<Status> done;
  p.Commit(std::move(*f), NameFor("durable", 2),
           [&](Status s, StorePath::PendingFile) { done.set_value(s); });
  ASSERT_TRUE(done.get_future().get().ok());
  char dir[16];
  std::snprintf(dir, sizeof dir, "/data/%02X/%02X/", d1, d2);
  EXPECT_TRUE(ReadSmallFile(root_ + dir + NameFor("durable", 2)).ok());
  // While running, the write directory is recorded for crash recovery.
  auto recent = ReadSmallFile(root_ + "/recent-dirs");
  ASSERT_TRUE(recent.ok());
  char rel[8];
  std::snprintf(rel, sizeof rel, "%02X/%02X", d1, d2);
  EXPECT_NE(recent->find(rel), std::string::npos);
}

TEST_F(StorePathTest, RecoveryRemovesTornFilesOfRecentDirectoriesOnly) {
  // What a crash between naming and syncing can leave: names whose data did not make it.
  ASSERT_TRUE(MakeDirs(root_ + "/data/0A/0B").ok());
  ASSERT_TRUE(MakeDirs(root_ + "/data/0C/0D").ok());
  std::string good = NameFor("complete content", 3);
  std::string torn = NameFor("content that was lost", 4);
  std::string zeroed = NameFor("zeros", 5);
  ASSERT_TRUE(WriteFileAtomic(root_ + "/data/0A/0B/" + good, "complete content", false).ok());
  ASSERT_TRUE(WriteFileAtomic(root_ + "/data/0A/0B/" + torn, "content t", false).ok());
  ASSERT_TRUE(WriteFileAtomic(root_ + "/data/0A/0B/" + zeroed, std::string(5, '\0'), false).ok());
  // An old directory (not listed) is not read at all, whatever it holds.
  ASSERT_TRUE(WriteFileAtomic(root_ + "/data/0C/0D/" + torn, "x", false).ok());
  ASSERT_TRUE(WriteFileAtomic(root_ + "/recent-dirs", "0A/0B\n", false).ok());

  StorePath p(0, root_, /*durable=*/true, 1, 1);
  ASSERT_TRUE(p.Init().ok());
  EXPECT_EQ(access((root_ + "/data/0A/0B/" + good).c_str(), F_OK), 0);
  EXPECT_NE(access((root_ + "/data/0A/0B/" + torn).c_str(), F_OK), 0);
  EXPECT_NE(access((root_ + "/data/0A/0B/" + zeroed).c_str(), F_OK), 0);
  EXPECT_EQ(access((root_ + "/data/0C/0D/" + torn).c_str(), F_OK), 0);
}

TEST_F(StorePathTest, CleanStopNeedsNoRecovery) {
  {
    StorePath p(0, root_, /*durable=*/true, 1, 1);
    ASSERT_TRUE(p.Init().ok());
    auto f = p.CreatePending();
    ASSERT_TRUE(f.ok());
    std::promise<Status> done;
    p.Commit(std::move(*f), NameFor("", 6), [&](Status s, StorePath::PendingFile) {
      done.set_value(s);
    });
    ASSERT_TRUE(done.get_future().get().ok());
    EXPECT_EQ(access((root_ + "/recent-dirs").c_str(), F_OK), 0);
  }
  EXPECT_NE(access((root_ + "/recent-dirs").c_str(), F_OK), 0);
}

}  // namespace
}  // namespace depot::storage
