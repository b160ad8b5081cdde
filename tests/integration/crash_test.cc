// kill -9 of a storage server in the middle of 50 concurrent uploads with durable writes: after a
// restart every acknowledged upload downloads intact and no partial file is visible (every file
// under data/ matches the size and CRC32 its name records; tmp/ is empty).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "common/base/fs.h"
#include "common/base/hash.h"
#include "common/net/blocking_conn.h"
#include "common/proto/file_id.h"
#include "common/proto/protocol.h"
#include "tests/harness/harness.h"

namespace depot::testing {
namespace {

TEST(CrashTest, KillNineDuringConcurrentDurableUploadsLosesNothingAcknowledged) {
  MiniCluster cluster(ClusterOptions{.durable_writes = true});
  ASSERT_TRUE(cluster.Start().ok());
  constexpr int kUploaders = 50;
  std::mutex mu;
  std::vector<std::pair<std::string, std::string>> acked;  // id, content
  std::atomic<int> acks{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kUploaders; ++t) {
    threads.emplace_back([&, t] {
      auto client = cluster.NewClient();
      for (int i = 0; !stop; ++i) {
        // Sizes from a few bytes to 700 KiB, so that some uploads are mid-body at the kill.
        size_t size = static_cast<size_t>((t * 7919 + i * 104729) % (700 * 1024)) + 1;
        std::string data = PatternBytes(size, static_cast<uint64_t>(t * 100000 + i));
        auto id = client->UploadBuffer(data, {});
        if (!id.ok()) continue;
        std::lock_guard<std::mutex> l(mu);
        acked.emplace_back(*id, std::move(data));
        acks++;
      }
    });
  }
  bool progressed = WaitFor([&] { return acks.load() >= 150; }, 60000);
  cluster.storage(0, 0).Kill9();
  stop = true;
  for (auto& th : threads) th.join();
  ASSERT_TRUE(progressed) << "uploads did not progress";
  size_t acked_at_kill = acked.size();
  ASSERT_GE(acked_at_kill, 150u);

  ASSERT_TRUE(cluster.storage(0, 0).Start().ok());
  ASSERT_TRUE(cluster.WaitAllActive().ok());
  auto client = cluster.NewClient();
  for (const auto& [id, data] : acked) {
    auto back = client->DownloadToBuffer(id);
    ASSERT_TRUE(back.ok()) << "acknowledged upload lost: " << id << ": " << back.status().ToString();
    ASSERT_TRUE(*back == data) << "acknowledged upload corrupted: " << id;
  }
  // No partial file is visible: every file under data/ is whole.
  std::string store = cluster.StorePath(0, 0, 0);
  std::vector<std::string> files;
  for (auto& f : FilesUnder(store + "/data")) files.push_back(std::move(f.path));
  EXPECT_GE(files.size(), acked_at_kill);
  for (const auto& f : files) {
    std::string name = f.substr(f.rfind('/') + 1);
    std::string rel = f.substr(store.size() + 6);  // XX/YY/name
    auto id = proto::ParseFileId("group1/M00/" + rel);
    ASSERT_TRUE(id.ok()) << f;
    auto content = ReadSmallFile(f, 1 << 30);
    ASSERT_TRUE(content.ok());
    EXPECT_EQ(content->size(), proto::SizeFromWord(id->fields.size_word)) << "partial file " << f;
    EXPECT_EQ(Crc32(*content), id->fields.crc32) << "torn file " << f;
  }
  auto tmp = FilesUnder(store + "/tmp");
  EXPECT_TRUE(tmp.empty()) << "leftover temp files after restart: " << tmp.size();
  std::printf("acknowledged before kill -9: %zu, files on disk after restart: %zu\n",
              acked_at_kill, files.size());
}

// Regression: a durable upload whose client disconnected while it waited for the group commit
// used to close its file descriptor while the commit thread still held the same number; the
// commit could then name another upload's data. Clients that hang up after their last byte race
// normal uploads here; every file on disk must match its name and every acknowledged upload its
// bytes.
TEST(CrashTest, ClientsHangingUpDuringTheGroupCommitCorruptNothing) {
  MiniCluster cluster(ClusterOptions{.durable_writes = true});
  ASSERT_TRUE(cluster.Start().ok());
  int port = cluster.storage(0, 0).port();
  std::mutex mu;
  std::vector<std::pair<std::string, std::string>> acked;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      auto client = cluster.NewClient();
      for (int i = 0; i < 40; ++i) {
        std::string data = PatternBytes(static_cast<size_t>(1000 + (t * 40 + i) * 37),
                                        static_cast<uint64_t>(t * 1000 + i));
        if (t % 2 == 0) {
          auto id = client->UploadBuffer(data, {});
          if (!id.ok()) continue;
          std::lock_guard<std::mutex> l(mu);
          acked.emplace_back(*id, std::move(data));
        } else {
          // The whole upload, then hang up without reading the reply.
          auto conn = net::BlockingConn::Connect("127.0.0.1", port, 2000);
          if (!conn.ok()) continue;
          std::string body;
          body.push_back('\0');
          proto::AppendU64(&body, data.size());
          proto::AppendFixed(&body, "bin", 6);
          body += data;
          std::string frame = proto::EncodeFrame(proto::kStorageUpload, 0, body);
          (void)(*conn)->SendAll(frame.data(), frame.size());
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_GE(acked.size(), 100u);
  auto client = cluster.NewClient();
  for (const auto& [id, data] : acked) {
    auto back = client->DownloadToBuffer(id);
    ASSERT_TRUE(back.ok()) << id << ": " << back.status().ToString();
    ASSERT_TRUE(*back == data) << "acknowledged upload holds other bytes: " << id;
  }
  std::string store = cluster.StorePath(0, 0, 0);
  std::vector<std::string> files;
  for (auto& f : FilesUnder(store + "/data")) files.push_back(std::move(f.path));
  for (const auto& f : files) {
    auto id = proto::ParseFileId("group1/M00/" + f.substr(store.size() + 6));
    ASSERT_TRUE(id.ok()) << f;
    auto content = ReadSmallFile(f, 1 << 30);
    ASSERT_TRUE(content.ok());
    EXPECT_EQ(Crc32(*content), id->fields.crc32) << "file named with another upload's data: " << f;
  }
  EXPECT_TRUE(cluster.storage(0, 0).Running());
}

}  // namespace
}  // namespace depot::testing
