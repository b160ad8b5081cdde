// Round trips through real trackerd + storaged: sizes from 0 bytes to 200 MiB, ranged reads,
// delete, file info and metadata, all through libdepot.
#include <gtest/gtest.h>
#include <unistd.h>

#include "common/base/hash.h"
#include "tests/harness/harness.h"

namespace depot::testing {
namespace {

class RoundTripTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster_ = std::make_unique<MiniCluster>(ClusterOptions{.store_paths = 2});
    ASSERT_TRUE(cluster_->Start().ok());
    client_ = cluster_->NewClient();
    ASSERT_NE(client_, nullptr);
  }
  std::unique_ptr<MiniCluster> cluster_;
  std::unique_ptr<Client> client_;
};

TEST_F(RoundTripTest, SmallSizesAreByteIdentical) {
  for (size_t size : {size_t{0}, size_t{1}, size_t{4096}, size_t{1} << 20}) {
    std::string data = PatternBytes(size, size + 7);
    UploadOptions o;
    o.ext = "bin";
    auto id = client_->UploadBuffer(data, o);
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    EXPECT_EQ(id->substr(0, 7), "group1/");
    EXPECT_NE(id->find(".bin"), std::string::npos);
    auto back = client_->DownloadToBuffer(*id);
    ASSERT_TRUE(back.ok()) << size << ": " << back.status().ToString();
    EXPECT_EQ(back->size(), size);
    EXPECT_TRUE(*back == data) << "content differs for size " << size;
    auto info = client_->Info(*id);
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    EXPECT_EQ(info->size, size);
    EXPECT_EQ(info->crc32, Crc32(data));
    EXPECT_EQ(info->source_ip, "127.0.0.1");
    EXPECT_LE(std::abs(info->create_time - UnixSeconds()), 5);
  }
}

TEST_F(RoundTripTest, TwoHundredMiBStreamsThroughFiles) {
  std::string src = cluster_->dir() + "/big.src", dst = cluster_->dir() + "/big.dst";
  ASSERT_TRUE(WritePatternFile(src, 200ULL << 20, 42).ok());
  uint64_t last_progress = 0;
  auto id = client_->UploadFile(src, {}, [&](uint64_t done, uint64_t) { last_progress = done; });
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(last_progress, 200ULL << 20);
  ASSERT_TRUE(client_->DownloadToFile(*id, dst).ok());
  EXPECT_TRUE(FilesEqual(src, dst));
  auto info = client_->Info(*id);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->size, 200ULL << 20);
}

TEST_F(RoundTripTest, RangedDownload) {
  std::string data = PatternBytes(70000, 3);
  auto id = client_->UploadBuffer(data, {});
  ASSERT_TRUE(id.ok());
  auto part = client_->DownloadToBuffer(*id, 65530, 20);
  ASSERT_TRUE(part.ok()) << part.status().ToString();
  EXPECT_EQ(*part, data.substr(65530, 20));
  auto tail = client_->DownloadToBuffer(*id, 69990, 0);  // 0: to the end
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(*tail, data.substr(69990));
  auto clamped = client_->DownloadToBuffer(*id, 69990, 1000);  // past the end is clamped
  ASSERT_TRUE(clamped.ok());
  EXPECT_EQ(*clamped, data.substr(69990));
  auto at_eof = client_->DownloadToBuffer(*id, 70000, 0);  // FastDFS: EINVAL
  EXPECT_EQ(at_eof.status().code(), StatusCode::kInvalidArgument);
}

TEST_F(RoundTripTest, DeleteThenDownloadIsNotFound) {
  auto id = client_->UploadBuffer("short-lived", {});
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(client_->Delete(*id).ok());
  EXPECT_EQ(client_->DownloadToBuffer(*id).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(client_->Info(*id).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(client_->Delete(*id).code(), StatusCode::kNotFound);
}

TEST_F(RoundTripTest, MetadataOverwriteAndMerge) {
  UploadOptions o;
  o.meta = {{"width", "1024"}, {"height", "768"}};
  auto id = client_->UploadBuffer("picture", o);
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  auto m = client_->GetMeta(*id);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(*m, (std::map<std::string, std::string>{{"height", "768"}, {"width", "1024"}}));
  ASSERT_TRUE(client_->SetMeta(*id, {{"author", "ann"}}, /*merge=*/false).ok());
  m = client_->GetMeta(*id);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(*m, (std::map<std::string, std::string>{{"author", "ann"}}));
  ASSERT_TRUE(client_->SetMeta(*id, {{"author", "bob"}, {"tag", "x"}}, /*merge=*/true).ok());
  m = client_->GetMeta(*id);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(*m, (std::map<std::string, std::string>{{"author", "bob"}, {"tag", "x"}}));
  // A file without metadata answers NotFound (FastDFS: ENOENT).
  auto plain = client_->UploadBuffer("plain", {});
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(client_->GetMeta(*plain).status().code(), StatusCode::kNotFound);
  // Deleting the file removes its metadata.
  ASSERT_TRUE(client_->Delete(*id).ok());
  EXPECT_EQ(client_->GetMeta(*id).status().code(), StatusCode::kNotFound);
}

TEST_F(RoundTripTest, UploadsUseBothStorePaths) {
  std::set<char> paths;
  for (int i = 0; i < 8; ++i) {
    auto id = client_->UploadBuffer("x", {});
    ASSERT_TRUE(id.ok());
    paths.insert((*id)[9]);  // group1/M0?/
  }
  EXPECT_EQ(paths.size(), 2u);
}

TEST_F(RoundTripTest, FilesLandWhereTheIdSays) {
  auto id = client_->UploadBuffer("on disk", {});
  ASSERT_TRUE(id.ok());
  // group1/M01/XX/YY/name -> <store path 1>/data/XX/YY/name
  int path = (*id)[9] - '0';
  std::string rel = id->substr(11);
  std::string on_disk = cluster_->StorePath(0, 0, path) + "/data/" + rel;
  EXPECT_EQ(access(on_disk.c_str(), R_OK), 0) << on_disk;
}

}  // namespace
}  // namespace depot::testing
