// The metadata codec shared by storage and clients.
#include "common/proto/metadata.h"

#include <gtest/gtest.h>

namespace depot::proto {
namespace {

TEST(MetadataTest, EncodeSortsAndParseRoundTrips) {
  MetaMap m{{"width", "1024"}, {"author", "ann"}, {"empty", ""}};
  std::string bytes = EncodeMeta(m);
  EXPECT_EQ(bytes, std::string("author\x02") + "ann\x01" + "empty\x02\x01" + "width\x02" + "1024");
  auto back = ParseMeta(bytes);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, m);
}

TEST(MetadataTest, SeparatorsInsideAKeyOrValueAreRefused) {
  // A client must not be able to smuggle a second record into one value.
  EXPECT_TRUE(ValidateMetaEntry("k", "a\x01x\x02y").IsInvalidArgument());
  EXPECT_TRUE(ValidateMetaEntry("k\x02", "v").IsInvalidArgument());
  EXPECT_TRUE(ParseMeta(std::string("k\x02v\x02w")).status().IsInvalidArgument());
  EXPECT_TRUE(ValidateMetaEntry(std::string(64, 'k'), std::string(256, 'v')).ok());
  EXPECT_TRUE(ValidateMetaEntry(std::string(65, 'k'), "v").IsInvalidArgument());
  EXPECT_TRUE(ValidateMetaEntry("k", std::string(257, 'v')).IsInvalidArgument());
  EXPECT_TRUE(ValidateMetaEntry("", "v").IsInvalidArgument());
}

}  // namespace
}  // namespace depot::proto
