#include "dht/dht_proto.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>

namespace depot::dht {
namespace {

Record SampleRecord() {
  Record r;
  r.version = 0x0102030405060708ULL;
  r.count = -3;
  r.tombstone = true;
  r.value = std::string("v\0al", 4);
  return r;
}

// Every strict prefix of `full` must be rejected with InvalidArgument, and so must `full` plus a
// trailing byte.
template <typename Decode>
void EveryTruncationRejected(const std::string& full, Decode decode) {
  ASSERT_TRUE(decode(full).ok());
  for (size_t n = 0; n < full.size(); ++n) {
    auto r = decode(std::string_view(full).substr(0, n));
    ASSERT_FALSE(r.ok()) << "prefix of " << n << " bytes";
    EXPECT_TRUE(r.status().IsInvalidArgument());
  }
  auto longer = decode(full + "x");
  ASSERT_FALSE(longer.ok());
  EXPECT_TRUE(longer.status().IsInvalidArgument());
}

TEST(DhtProtoTest, RecordRoundTripAndLayout) {
  Record r = SampleRecord();
  std::string b = EncodeRecord(r);
  ASSERT_EQ(b.size(), kRecordHeadLen + 4);
  EXPECT_EQ(b.substr(0, 8), std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8));
  EXPECT_EQ(b.substr(8, 8), std::string("\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFD", 8));
  EXPECT_EQ(b[16], 1);
  EXPECT_EQ(b.substr(17, 4), std::string("\0\0\0\x04", 4));
  auto d = DecodeRecord(b);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, r);
  EveryTruncationRejected(b, DecodeRecord);
}

TEST(DhtProtoTest, RecordRejectsBadFlagsAndLongValues) {
  std::string b = EncodeRecord(SampleRecord());
  b[16] = 2;
  EXPECT_TRUE(DecodeRecord(b).status().IsInvalidArgument());
  Record big;
  big.value.assign(kMaxValueLen + 1, 'x');
  EXPECT_TRUE(DecodeRecord(EncodeRecord(big)).status().IsInvalidArgument());
  big.value.resize(kMaxValueLen);
  EXPECT_TRUE(DecodeRecord(EncodeRecord(big)).ok());
  // A length that lies (says more than there is).
  std::string lie = EncodeRecord(Record{});
  lie[20] = 9;
  EXPECT_TRUE(DecodeRecord(lie).status().IsInvalidArgument());
}

TEST(DhtProtoTest, KeyBounds) {
  EXPECT_TRUE(DecodeKeyRequest(EncodeKeyRequest({""})).status().IsInvalidArgument());
  EXPECT_TRUE(DecodeKeyRequest(EncodeKeyRequest({std::string(kMaxKeyLen, 'k')})).ok());
  EXPECT_TRUE(DecodeKeyRequest(EncodeKeyRequest({std::string(kMaxKeyLen + 1, 'k')}))
                  .status()
                  .IsInvalidArgument());
  EXPECT_FALSE(ValidateKey("").ok());
  EXPECT_FALSE(ValidateKey(std::string(kMaxKeyLen + 1, 'k')).ok());
  EXPECT_FALSE(ValidateValue(std::string(kMaxValueLen + 1, 'v')).ok());
}

TEST(DhtProtoTest, RequestsRoundTripAndRejectTruncation) {
  auto key = EncodeKeyRequest({"group1/abc"});
  EXPECT_EQ(key, std::string("\0\x0Agroup1/abc", 12));
  EXPECT_EQ(DecodeKeyRequest(key)->key, "group1/abc");
  EveryTruncationRejected(key, DecodeKeyRequest);

  auto put = EncodePutRequest({"k", -7, "value"});
  auto p = DecodePutRequest(put);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->key, "k");
  EXPECT_EQ(p->count, -7);
  EXPECT_EQ(p->value, "value");
  EveryTruncationRejected(put, DecodePutRequest);

  auto add = EncodeAddRequest({"k", 42});
  EXPECT_EQ(DecodeAddRequest(add)->delta, 42);
  EveryTruncationRejected(add, DecodeAddRequest);

  auto cas = EncodeCasRequest({"k", 9, 3, "nv"});
  auto c = DecodeCasRequest(cas);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->expected_version, 9u);
  EXPECT_EQ(c->count, 3);
  EXPECT_EQ(c->value, "nv");
  EveryTruncationRejected(cas, DecodeCasRequest);

  auto rm = EncodeRemoveRequest({"k", 5});
  EXPECT_EQ(DecodeRemoveRequest(rm)->expected_version, 5u);
  EveryTruncationRejected(rm, DecodeRemoveRequest);

  auto rep = EncodeReplicateRequest({"k", SampleRecord()});
  auto rr = DecodeReplicateRequest(rep);
  ASSERT_TRUE(rr.ok());
  EXPECT_EQ(rr->record, SampleRecord());
  EveryTruncationRejected(rep, DecodeReplicateRequest);

  auto join = EncodeJoinRequest("127.0.0.1:11411");
  EXPECT_EQ(*DecodeJoinRequest(join), "127.0.0.1:11411");
  EveryTruncationRejected(join, DecodeJoinRequest);
  EXPECT_FALSE(DecodeJoinRequest(EncodeJoinRequest("no-port")).ok());
  EXPECT_FALSE(DecodeJoinRequest(EncodeJoinRequest("h:0")).ok());
  EXPECT_FALSE(DecodeJoinRequest(EncodeJoinRequest("h:65536")).ok());
  EXPECT_FALSE(DecodeJoinRequest(EncodeJoinRequest("h:1x")).ok());

  auto stats = EncodeStatsReply({12, -4});
  EXPECT_EQ(DecodeStatsReply(stats)->references, -4);
  EveryTruncationRejected(stats, DecodeStatsReply);

  auto nodes = EncodeNodeList({"a:1", "b:2"});
  EXPECT_EQ(*DecodeNodeList(nodes), (std::vector<std::string>{"a:1", "b:2"}));
  EveryTruncationRejected(nodes, DecodeNodeList);
}

TEST(DhtProtoTest, ScanRequestWithAndWithoutFilter) {
  ScanRequest plain;
  plain.start = "k1";
  plain.limit = 10;
  plain.include_tombstones = true;
  auto b = EncodeScanRequest(plain);
  auto d = DecodeScanRequest(b);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->start, "k1");
  EXPECT_EQ(d->limit, 10u);
  EXPECT_TRUE(d->include_tombstones);
  EXPECT_FALSE(d->has_filter);
  EveryTruncationRejected(b, DecodeScanRequest);

  ScanRequest f;
  f.has_filter = true;
  f.replicas = 2;
  f.nodes = {"a:1", "b:1", "c:1"};
  f.index = 2;
  b = EncodeScanRequest(f);
  d = DecodeScanRequest(b);
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->start.empty());
  EXPECT_EQ(d->nodes, f.nodes);
  EXPECT_EQ(d->index, 2);
  EveryTruncationRejected(b, DecodeScanRequest);

  f.index = 3;  // out of range
  EXPECT_TRUE(DecodeScanRequest(EncodeScanRequest(f)).status().IsInvalidArgument());
  f.index = 0;
  f.replicas = 0;
  EXPECT_TRUE(DecodeScanRequest(EncodeScanRequest(f)).status().IsInvalidArgument());
  plain.limit = 0;
  EXPECT_FALSE(DecodeScanRequest(EncodeScanRequest(plain)).ok());
  plain.limit = kMaxScanLimit + 1;
  EXPECT_FALSE(DecodeScanRequest(EncodeScanRequest(plain)).ok());
  plain.limit = 1;
  std::string bad_flags = EncodeScanRequest(plain);
  bad_flags.back() = 4;
  EXPECT_FALSE(DecodeScanRequest(bad_flags).ok());
}

TEST(DhtProtoTest, ScanReplyRoundTripAndRejectsLies) {
  ScanReply r;
  r.entries.emplace_back("a", SampleRecord());
  r.entries.emplace_back("b", Record{3, 4, false, "x"});
  r.more = true;
  auto b = EncodeScanReply(r);
  auto d = DecodeScanReply(b);
  ASSERT_TRUE(d.ok());
  ASSERT_EQ(d->entries.size(), 2u);
  EXPECT_EQ(d->entries[0].first, "a");
  EXPECT_EQ(d->entries[1].second, (Record{3, 4, false, "x"}));
  EXPECT_TRUE(d->more);
  EveryTruncationRejected(b, DecodeScanReply);
  // A count far larger than the body is refused before anything is allocated.
  std::string lie = b;
  lie[0] = '\x7F';
  EXPECT_TRUE(DecodeScanReply(lie).status().IsInvalidArgument());
  std::string bad_more = b;
  bad_more.back() = 2;
  EXPECT_FALSE(DecodeScanReply(bad_more).ok());
  EXPECT_TRUE(DecodeScanReply(EncodeScanReply({})).ok());
}

}  // namespace
}  // namespace depot::dht
