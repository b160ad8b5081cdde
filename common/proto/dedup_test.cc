// Codecs of the dedup commands (common/proto/dedup.{h,cc}): round trips, exact bytes of the
// binary bodies, and the rejection of bad input (wrong lengths, cut tails, lying counts, sizes
// and ranges out of bounds, unknown or mistyped JSON fields) with InvalidArgument.
#include "common/proto/dedup.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/proto/protocol.h"

namespace depot::proto {
namespace {

using namespace std::string_literals;

#define EXPECT_INVALID(expr)                                                                 \
  do {                                                                                       \
    auto r_ = (expr);                                                                        \
    EXPECT_FALSE(r_.ok()) << #expr;                                                          \
    EXPECT_TRUE(r_.status().IsInvalidArgument()) << #expr << ": " << r_.status().ToString(); \
  } while (0)

std::string Fp() {
  std::string fp;
  for (int i = 0; i < 16; ++i) fp.push_back(static_cast<char>(0xF0 + i));
  return fp;
}

// ---- ContentKey -----------------------------------------------------------------------------

TEST(ContentKeyTest, ExactBytesAndRoundTrip) {
  ContentKey k{Fp(), 0x0102030405060708ULL};
  std::string b = k.Encode();
  ASSERT_EQ(b.size(), ContentKey::kEncodedLen);
  EXPECT_EQ(b.substr(0, 16), Fp());
  EXPECT_EQ(b.substr(16), "\x01\x02\x03\x04\x05\x06\x07\x08"s);
  auto d = ContentKey::Decode(b);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(*d, k);
}

TEST(ContentKeyTest, Hex) {
  ContentKey k{std::string(15, '\0') + "\xab"s, 42};
  EXPECT_EQ(k.Hex(), "000000000000000000000000000000ab-42");
}

TEST(ContentKeyTest, ShortFingerprintIsPadded) {
  ContentKey k{"ab", 7};
  std::string b = k.Encode();
  ASSERT_EQ(b.size(), ContentKey::kEncodedLen);
  auto d = ContentKey::Decode(b);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->fp, "ab"s + std::string(14, '\0'));
  EXPECT_EQ(d->size, 7u);
}

TEST(ContentKeyTest, RejectsBadInput) {
  std::string b = ContentKey{Fp(), 1}.Encode();
  EXPECT_INVALID(ContentKey::Decode(b.substr(0, b.size() - 1)));
  EXPECT_INVALID(ContentKey::Decode(b + "x"));
  EXPECT_INVALID(ContentKey::Decode(""));
  EXPECT_INVALID(ContentKey::Decode(ContentKey{Fp(), (1ULL << 62) + 1}.Encode()));
  EXPECT_INVALID(ContentKey::Decode(ContentKey{Fp(), UINT64_MAX}.Encode()));
  EXPECT_TRUE(ContentKey::Decode(ContentKey{Fp(), 1ULL << 62}.Encode()).ok());
}

// ---- dedup head -----------------------------------------------------------------------------

TEST(DedupHeadTest, RoundTrip) {
  ContentKey k{Fp(), 123456};
  std::string name = "M00/1F/38/wKgBAWdJ0yuAAAAAAAAAAN7hH3c123.jpg";
  std::string b = EncodeDedupHead(k, name);
  ASSERT_EQ(b.size(), kDedupHeadLen);
  EXPECT_EQ(b.substr(0, ContentKey::kEncodedLen), k.Encode());
  ContentKey dk;
  std::string dn;
  ASSERT_TRUE(DecodeDedupHead(b, &dk, &dn).ok());
  EXPECT_EQ(dk, k);
  EXPECT_EQ(dn, name);
}

TEST(DedupHeadTest, EmptyCanonical) {
  ContentKey k{Fp(), 9};
  std::string b = EncodeDedupHead(k, "");
  ASSERT_EQ(b.size(), kDedupHeadLen);
  ContentKey dk;
  std::string dn = "junk";
  ASSERT_TRUE(DecodeDedupHead(b, &dk, &dn).ok());
  EXPECT_EQ(dk, k);
  EXPECT_EQ(dn, "");
}

TEST(DedupHeadTest, RejectsBadInput) {
  ContentKey k{Fp(), 9}, dk;
  std::string dn;
  std::string b = EncodeDedupHead(k, "M00/00/00/abc");
  EXPECT_TRUE(DecodeDedupHead(b.substr(0, b.size() - 1), &dk, &dn).IsInvalidArgument());
  EXPECT_TRUE(DecodeDedupHead(b + '\0', &dk, &dn).IsInvalidArgument());
  EXPECT_TRUE(DecodeDedupHead("", &dk, &dn).IsInvalidArgument());
  for (char bad : {' ', '\x7f', '\x01', '\xff'}) {
    std::string c = b;
    c[ContentKey::kEncodedLen + 3] = bad;
    EXPECT_TRUE(DecodeDedupHead(c, &dk, &dn).IsInvalidArgument()) << int(bad);
  }
  EXPECT_TRUE(DecodeDedupHead(EncodeDedupHead(ContentKey{Fp(), UINT64_MAX}, "a"), &dk, &dn)
                  .IsInvalidArgument());
}

// ---- 232 DEDUP_SCAN -------------------------------------------------------------------------

TEST(DedupScanRequestTest, RoundTrip) {
  for (bool repair : {false, true}) {
    for (bool reconcile : {false, true}) {
      auto d = DecodeDedupScanRequest(EncodeDedupScanRequest({repair, reconcile}));
      ASSERT_TRUE(d.ok()) << d.status().ToString();
      EXPECT_EQ(d->repair, repair);
      EXPECT_EQ(d->reconcile, reconcile);
    }
  }
}

TEST(DedupScanRequestTest, MissingFieldsAreFalse) {
  auto d = DecodeDedupScanRequest("{}");
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->repair);
  EXPECT_FALSE(d->reconcile);
  d = DecodeDedupScanRequest(R"({"repair":true})");
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->repair);
  EXPECT_FALSE(d->reconcile);
}

TEST(DedupScanRequestTest, RejectsBadInput) {
  EXPECT_INVALID(DecodeDedupScanRequest(R"({"repair":true,"verify":true})"));  // unknown field
  EXPECT_INVALID(DecodeDedupScanRequest(R"({"repair":1})"));
  EXPECT_INVALID(DecodeDedupScanRequest(R"({"reconcile":"true"})"));
  EXPECT_INVALID(DecodeDedupScanRequest(R"({"repair":null})"));
  EXPECT_INVALID(DecodeDedupScanRequest("[]"));
  EXPECT_INVALID(DecodeDedupScanRequest("true"));
  EXPECT_INVALID(DecodeDedupScanRequest(""));
  std::string good = EncodeDedupScanRequest({true, true});
  EXPECT_INVALID(DecodeDedupScanRequest(good.substr(0, good.size() - 1)));  // cut tail
}

DedupScanReport SampleReport() {
  DedupScanReport r;
  r.files = 1;
  r.fingerprinted = 2;
  r.contents = 3;
  r.merged = 4;
  r.registered = 5;
  r.refs_fixed = 6;
  r.records_removed = 7;
  r.collisions = 8;
  r.stale_entries = 9;
  r.bytes_saved = (1ULL << 63) + 10;  // needs the full unsigned range
  r.dht_ok = false;
  return r;
}

TEST(DedupScanReportTest, RoundTrip) {
  DedupScanReport r = SampleReport();
  auto d = DecodeDedupScanReport(EncodeDedupScanReport(r));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->files, 1u);
  EXPECT_EQ(d->fingerprinted, 2u);
  EXPECT_EQ(d->contents, 3u);
  EXPECT_EQ(d->merged, 4u);
  EXPECT_EQ(d->registered, 5u);
  EXPECT_EQ(d->refs_fixed, 6u);
  EXPECT_EQ(d->records_removed, 7u);
  EXPECT_EQ(d->collisions, 8u);
  EXPECT_EQ(d->stale_entries, 9u);
  EXPECT_EQ(d->bytes_saved, (1ULL << 63) + 10);
  EXPECT_FALSE(d->dht_ok);
  // Merges, registrations, fixed and removed records and stale entries need repair; collisions
  // and the fingerprinting itself do not.
  EXPECT_EQ(d->problems(), 4u + 5 + 6 + 7 + 9);

  DedupScanReport clean;
  auto c = DecodeDedupScanReport(EncodeDedupScanReport(clean));
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->dht_ok);
  EXPECT_EQ(c->problems(), 0u);
}

TEST(DedupScanReportTest, RejectsBadInput) {
  std::string good = EncodeDedupScanReport(SampleReport());
  EXPECT_INVALID(DecodeDedupScanReport(good.substr(0, good.size() - 1)));  // cut tail
  EXPECT_INVALID(DecodeDedupScanReport(""));
  EXPECT_INVALID(DecodeDedupScanReport("[]"));
  const char* fields[] = {"files",         "fingerprinted", "contents",        "merged",
                          "registered",    "refs_fixed",    "records_removed", "collisions",
                          "stale_entries", "bytes_saved"};
  auto with = [&](const std::string& field, const std::string& value) {
    std::string body = "{";
    for (const char* f : fields) {
      body += "\""s + f + "\":" + (field == f ? value : "1") + ",";
    }
    body += "\"dht_ok\":" + (field == "dht_ok" ? value : "true") + "}";
    return body;
  };
  ASSERT_TRUE(DecodeDedupScanReport(with("", "")).ok());
  for (const char* f : fields) {
    SCOPED_TRACE(f);
    EXPECT_INVALID(DecodeDedupScanReport(with(f, "-1")));
    EXPECT_INVALID(DecodeDedupScanReport(with(f, "1.5")));
    EXPECT_INVALID(DecodeDedupScanReport(with(f, "\"1\"")));
    EXPECT_INVALID(DecodeDedupScanReport(with(f, "null")));
  }
  EXPECT_INVALID(DecodeDedupScanReport(with("dht_ok", "1")));
  EXPECT_INVALID(DecodeDedupScanReport(with("dht_ok", "\"yes\"")));
  // Every field is required.
  EXPECT_INVALID(DecodeDedupScanReport(R"({"files":1,"dht_ok":true})"));
  std::string no_dht = with("", "");
  no_dht = no_dht.substr(0, no_dht.find(",\"dht_ok\"")) + "}";
  EXPECT_INVALID(DecodeDedupScanReport(no_dht));
}

// ---- 242 INSTANT_UPLOAD ---------------------------------------------------------------------

TEST(InstantUploadTest, ExactBytesAndRoundTrip) {
  InstantUploadRequest r;
  r.store_path = 1;
  r.size = 0x0A0B0C0D0E0F1011ULL & ((1ULL << 62) - 1);
  r.ext = "jpg";
  r.fp = Fp();
  std::string b = EncodeInstantUpload(r);
  ASSERT_EQ(b.size(), kInstantUploadLen);
  EXPECT_EQ(b[0], '\x01');
  EXPECT_EQ(GetU64(b.data() + 1), r.size);
  EXPECT_EQ(b.substr(9, 6), "jpg\0\0\0"s);
  EXPECT_EQ(b.substr(15), Fp());
  auto d = DecodeInstantUpload(b);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->store_path, 1);
  EXPECT_EQ(d->size, r.size);
  EXPECT_EQ(d->ext, "jpg");
  EXPECT_EQ(d->fp, Fp());
}

TEST(InstantUploadTest, AnyPathAndNoExtension) {
  InstantUploadRequest r;
  r.size = 0;
  r.fp = Fp();
  auto d = DecodeInstantUpload(EncodeInstantUpload(r));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->store_path, kStorePathAny);
  EXPECT_EQ(d->ext, "");
  EXPECT_EQ(d->size, 0u);
}

TEST(InstantUploadTest, RejectsBadInput) {
  InstantUploadRequest r;
  r.store_path = 0;
  r.size = 100;
  r.ext = "txt";
  r.fp = Fp();
  std::string b = EncodeInstantUpload(r);
  EXPECT_INVALID(DecodeInstantUpload(b.substr(0, b.size() - 1)));  // cut tail
  EXPECT_INVALID(DecodeInstantUpload(b + "x"));
  EXPECT_INVALID(DecodeInstantUpload(""));
  std::string big = b;
  PutU64(big.data() + 1, (1ULL << 62) + 1);
  EXPECT_INVALID(DecodeInstantUpload(big));
  // Regression (found by fuzz_decoders): bytes after the extension's terminating NUL are refused,
  // so a request decodes to exactly one encoding.
  std::string padded = b;
  padded[9 + 4] = 'x';  // "txt\0x\0"
  EXPECT_INVALID(DecodeInstantUpload(padded));
  std::string bad_ext = b;
  bad_ext[10] = '/';
  EXPECT_INVALID(DecodeInstantUpload(bad_ext));
}

// ---- the challenge and 243 INSTANT_PROVE ----------------------------------------------------

TEST(InstantChallengeTest, ExactBytesAndRoundTrip) {
  InstantChallenge c;
  c.nonce = std::string(kInstantNonceLen, 'n');
  c.ranges = {{0, 10}, {0x0102030405060708ULL, 0x10}};
  std::string b = EncodeInstantChallenge(c);
  ASSERT_EQ(b.size(), kInstantNonceLen + 1 + 2 * 16);
  EXPECT_EQ(b.substr(0, kInstantNonceLen), c.nonce);
  EXPECT_EQ(b[kInstantNonceLen], '\x02');
  EXPECT_EQ(GetU64(b.data() + 17 + 16), 0x0102030405060708ULL);
  EXPECT_EQ(GetU64(b.data() + 17 + 24), 0x10u);
  auto d = DecodeInstantChallenge(b, 0x0102030405060718ULL);  // the last range ends at the end
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->nonce, c.nonce);
  ASSERT_EQ(d->ranges.size(), 2u);
  EXPECT_EQ(d->ranges[0].offset, 0u);
  EXPECT_EQ(d->ranges[0].length, 10u);
  EXPECT_EQ(d->ranges[1].offset, 0x0102030405060708ULL);
  EXPECT_EQ(d->ranges[1].length, 0x10u);
}

TEST(InstantChallengeTest, NoRangesAndMaxRanges) {
  InstantChallenge c;
  c.nonce = std::string(kInstantNonceLen, '\x7');
  auto d = DecodeInstantChallenge(EncodeInstantChallenge(c), 0);
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->ranges.empty());
  for (size_t i = 0; i < kInstantMaxRanges; ++i) c.ranges.push_back({i, 1});
  d = DecodeInstantChallenge(EncodeInstantChallenge(c), kInstantMaxRanges);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->ranges.size(), kInstantMaxRanges);
  c.ranges.push_back({0, 1});  // one too many
  EXPECT_INVALID(DecodeInstantChallenge(EncodeInstantChallenge(c), 100));
}

TEST(InstantChallengeTest, RejectsRangesOutsideTheContent) {
  auto with = [](ByteRange r) {
    InstantChallenge c;
    c.nonce = std::string(kInstantNonceLen, 'n');
    c.ranges = {{0, 1}, r};
    return EncodeInstantChallenge(c);
  };
  EXPECT_TRUE(DecodeInstantChallenge(with({100, 0}), 100).ok());  // empty, at the end
  EXPECT_TRUE(DecodeInstantChallenge(with({0, 100}), 100).ok());  // all of it
  EXPECT_INVALID(DecodeInstantChallenge(with({0, 101}), 100));
  EXPECT_INVALID(DecodeInstantChallenge(with({99, 2}), 100));
  EXPECT_INVALID(DecodeInstantChallenge(with({101, 0}), 100));
  EXPECT_INVALID(DecodeInstantChallenge(with({1, UINT64_MAX}), 100));  // offset + length wraps
  EXPECT_INVALID(DecodeInstantChallenge(with({UINT64_MAX, 2}), 100));
}

TEST(InstantChallengeTest, RejectsTruncatedAndLyingBodies) {
  InstantChallenge c;
  c.nonce = std::string(kInstantNonceLen, 'n');
  c.ranges = {{0, 4}, {4, 4}};
  std::string b = EncodeInstantChallenge(c);
  ASSERT_TRUE(DecodeInstantChallenge(b, 8).ok());
  for (size_t cut = 1; cut <= b.size(); ++cut) {
    SCOPED_TRACE("cut " + std::to_string(cut));
    EXPECT_INVALID(DecodeInstantChallenge(b.substr(0, b.size() - cut), 8));
  }
  EXPECT_INVALID(DecodeInstantChallenge(b + "x", 8));
  std::string more = b;
  more[kInstantNonceLen] = 3;  // claims a range it does not carry
  EXPECT_INVALID(DecodeInstantChallenge(more, 8));
  std::string fewer = b;
  fewer[kInstantNonceLen] = 1;  // carries a range it does not count
  EXPECT_INVALID(DecodeInstantChallenge(fewer, 8));
  std::string huge = b;
  huge[kInstantNonceLen] = '\xff';
  EXPECT_INVALID(DecodeInstantChallenge(huge, 8));
}

TEST(InstantProveTest, Length) {
  EXPECT_EQ(kInstantProveLen, 16u + 32u);  // nonce + HMAC-SHA256
}

}  // namespace
}  // namespace depot::proto
