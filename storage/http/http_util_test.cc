#include "storage/http/http_util.h"

#include <gtest/gtest.h>

#include "common/base/hash.h"

namespace depot::storage::http {
namespace {

// A real FastDFS-style name (tests/data/fastdfs-file-ids.txt has more).
constexpr const char* kName = "M00/1F/38/fwAAAWsJFUqAOD_FAAAADIJ3Nzo492.txt";

TEST(HttpTargetTest, ParsesAFileIdAndItsQuery) {
  auto t = ParseTarget(std::string("/group1/") + kName + "?token=AbC0&ts=1700000000&filename=a%20b.txt",
                       "group1");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->id.group, "group1");
  EXPECT_EQ(t->id.RemoteName(), kName);
  EXPECT_EQ(t->token, "AbC0");
  EXPECT_EQ(t->ts, 1700000000);
  EXPECT_EQ(t->filename, "a b.txt");
  EXPECT_FALSE(t->hop);
  EXPECT_EQ(t->query, "token=AbC0&ts=1700000000&filename=a%20b.txt");
  auto plain = ParseTarget(std::string("/group1/") + kName, "");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->ts, -1);
  EXPECT_TRUE(plain->query.empty());
  auto hop = ParseTarget(std::string("/group1/") + kName + "?a=1&depot_hop=1", "");
  ASSERT_TRUE(hop.ok());
  EXPECT_TRUE(hop->hop);
}

TEST(HttpTargetTest, AnythingButAFileIdIsRefused) {
  const std::string good = std::string("/group1/") + kName;
  for (std::string bad : {std::string("/group1/M00/../../etc/passwd"),
                          std::string("/group1/M00/%2e%2e/00/x.txt"),
                          std::string("/group1//M00/00/00/x.txt"),
                          std::string("/group1/M00/00/00/") + std::string(1, '\0') + "x",
                          std::string("/"), std::string(""), std::string("group1/") + kName,
                          std::string("/group1/MZZ/1F/38/fwAAAWsJFUqAOD_FAAAADIJ3Nzo492.txt"),
                          std::string("/bad group/") + kName, "/" + std::string(5000, 'a'),
                          good + "?ts=12x", good + "?filename=%zz", good + "?a=b\rLocation:x",
                          good + "?a=\x7f"}) {
    EXPECT_FALSE(ParseTarget(bad, "group1").ok()) << bad;
  }
  EXPECT_TRUE(ParseTarget(good, "group2").status().IsNotFound());
}

TEST(HttpRangeTest, SingleSuffixOpenAndMultiple) {
  auto r = ParseRange("bytes=0-9", 100, 16);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].first, 0u);
  EXPECT_EQ((*r)[0].last, 9u);
  r = ParseRange("bytes=-10", 100, 16);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)[0].first, 90u);
  EXPECT_EQ((*r)[0].last, 99u);
  r = ParseRange("bytes=95-", 100, 16);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)[0].first, 95u);
  EXPECT_EQ((*r)[0].last, 99u);
  r = ParseRange("bytes=90-200", 100, 16);  // clipped to the end
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)[0].last, 99u);
  r = ParseRange("Bytes= 0-0 , 5-6,, -1", 100, 16);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[2].first, 99u);
  r = ParseRange("bytes=-1000", 100, 16);  // suffix longer than the file: all of it
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)[0].first, 0u);
}

TEST(HttpRangeTest, UnsatisfiableTooManyAndMalformed) {
  EXPECT_EQ(ParseRange("bytes=-0", 100, 16).status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(ParseRange("bytes=100-", 100, 16).status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(ParseRange("bytes=0-0", 0, 16).status().code(), StatusCode::kResourceExhausted);
  std::string many = "bytes=0-0";
  for (int i = 1; i < 10000; ++i) many += "," + std::to_string(i) + "-" + std::to_string(i);
  EXPECT_EQ(ParseRange(many, 100000, 16).status().code(), StatusCode::kInvalidArgument);
  // Not a bytes range set, or malformed: ignored (the whole file is served).
  for (const char* ignored : {"", "items=0-1", "bytes=5-1", "bytes=a-b", "bytes=1", "bytes=",
                              "bytes=99999999999999999999-"}) {
    auto r = ParseRange(ignored, 100, 16);
    ASSERT_TRUE(r.ok()) << ignored;
    EXPECT_TRUE(r->empty()) << ignored;
  }
}

TEST(HttpHeadersTest, ETagAndIfNoneMatch) {
  std::string etag = ETagFor(0x6b09154a, 12);  // nginx: "%xT-%xO"
  EXPECT_EQ(etag, "\"6b09154a-c\"");
  EXPECT_TRUE(IfNoneMatchHits(etag, etag));
  EXPECT_TRUE(IfNoneMatchHits("\"x\", W/" + etag, etag));
  EXPECT_TRUE(IfNoneMatchHits("*", etag));
  EXPECT_FALSE(IfNoneMatchHits("\"other\"", etag));
}

TEST(HttpHeadersTest, DatesRoundTrip) {
  EXPECT_EQ(HttpDate(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
  EXPECT_EQ(ParseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT"), 784111777);
  EXPECT_EQ(ParseHttpDate(HttpDate(1790000000)), 1790000000);
  EXPECT_FALSE(ParseHttpDate("yesterday").has_value());
  EXPECT_FALSE(ParseHttpDate("Sun, 06 Foo 1994 08:49:37 GMT").has_value());
}

TEST(HttpHeadersTest, MimeTableAndDisposition) {
  MimeTable m = MimeTable::Parse("# c\nimage/jpeg jpg jpeg\ntypes { video/mp4 mp4; }\nbad\n");
  EXPECT_EQ(m.TypeFor("JPG"), "image/jpeg");
  EXPECT_EQ(m.TypeFor("mp4"), "video/mp4");
  EXPECT_EQ(m.TypeFor("xyz"), "application/octet-stream");
  EXPECT_EQ(m.TypeFor(""), "application/octet-stream");
  auto shipped = MimeTable::Load(DEPOT_SOURCE_DIR "/conf/mime.types");
  ASSERT_TRUE(shipped.ok()) << shipped.status().ToString();
  EXPECT_EQ(shipped->TypeFor("png"), "image/png");
  EXPECT_GT(shipped->size(), 50u);
  EXPECT_EQ(ContentDisposition("report 2026.pdf"),
            "attachment; filename=\"report 2026.pdf\"; filename*=UTF-8''report%202026.pdf");
  EXPECT_EQ(ContentDisposition("a\"b;\r\n\xC3\xA9.txt"),
            "attachment; filename=\"a_b_____.txt\"; filename*=UTF-8''a%22b%3B%0D%0A%C3%A9.txt");
}

TEST(HttpTokenTest, FastDfsCompatibleToken) {
  // md5("M00/00/00/x.jpg" + "secret" + "1700000000"), computed independently.
  std::string input = std::string("M00/1F/38/fwAAAWsJFUqAOD_FAAAADIJ3Nzo492.txt") + "FastDFS1234567890" +
                      "1700000000";
  std::string want = HexEncode(Md5(input));
  EXPECT_EQ(want.size(), 32u);
  EXPECT_EQ(MakeToken(kName, "FastDFS1234567890", 1700000000), want);
  EXPECT_EQ(HexEncode(Md5("")), "d41d8cd98f00b204e9800998ecf8427e");  // the MD5 test vector
  auto t = ParseTarget(std::string("/group1/") + kName + "?token=" + want + "&ts=1700000000", "");
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(CheckToken(*t, "FastDFS1234567890", 900, 1700000100).ok());
  EXPECT_TRUE(CheckToken(*t, "FastDFS1234567890", 900, 1700000901).code() == StatusCode::kPermissionDenied);  // old
  EXPECT_TRUE(CheckToken(*t, "other-secret", 900, 1700000100).code() == StatusCode::kPermissionDenied);
  Target upper = *t;
  for (char& c : upper.token) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_TRUE(CheckToken(upper, "FastDFS1234567890", 900, 1700000100).ok());
  Target none = *t;
  none.token.clear();
  EXPECT_TRUE(CheckToken(none, "FastDFS1234567890", 900, 1700000100).code() == StatusCode::kPermissionDenied);
}

}  // namespace
}  // namespace depot::storage::http
