// libFuzzer target: the decoder of every internal command body (storage <-> tracker:
// common/proto/internal.h; storage <-> storage and fsck: common/proto/sync.h; dht:
// dht/dht_proto.h) and of a binlog record (storage/binlog.h, appender ranges included) and of a
// trunk slot header (storage/trunk.h). Each must reject bad input with a Status, never crash,
// over-read or throw; what one accepts must encode again (without throwing) to bytes that decode
// to the same value, and the binary codecs (sync record head, binlog record, dht record and scan
// request) must give back the exact bytes.
#include <cstdint>
#include <string>
#include <string_view>

#include "common/proto/internal.h"
#include "common/proto/sync.h"
#include "dht/dht_proto.h"
#include "storage/binlog.h"
#include "storage/trunk.h"

namespace {

using namespace depot;

// decode -> encode -> decode -> encode: the second decode succeeds and both encodings agree.
template <typename Decode, typename Encode>
void RoundTrip(std::string_view in, Decode decode, Encode encode) {
  auto first = decode(in);
  if (!first.ok()) return;
  std::string once = encode(*first);
  auto second = decode(once);
  if (!second.ok()) __builtin_trap();
  if (encode(*second) != once) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);

  // 210, 211 (tracker).
  RoundTrip(in, proto::DecodeJoin, proto::EncodeJoin);
  RoundTrip(in, proto::DecodeJoinReply, proto::EncodeJoinReply);
  RoundTrip(in, proto::DecodeHeartbeat, proto::EncodeHeartbeat);
  RoundTrip(in, proto::DecodeHeartbeatReply, proto::EncodeHeartbeatReply);

  // 220..231 (storage).
  auto head = proto::DecodeSyncRecordHead(in);
  if (head.ok() && proto::EncodeSyncRecordHead(*head) != in.substr(0, proto::kSyncRecordHead)) {
    __builtin_trap();
  }
  RoundTrip(in, proto::DecodeSyncHello, proto::EncodeSyncHello);
  RoundTrip(in, proto::DecodeSyncHelloReply, proto::EncodeSyncHelloReply);
  RoundTrip(in, proto::DecodeDumpRequest, proto::EncodeDumpRequest);
  RoundTrip(in, proto::DecodeListFilesRequest, proto::EncodeListFilesRequest);
  RoundTrip(in, proto::DecodeListFilesReply, proto::EncodeListFilesReply);
  RoundTrip(in, proto::DecodeRepairRequest, proto::EncodeRepairRequest);

  // 246..255 (dht, dht/dht_proto.h): every request and reply body.
  RoundTrip(in, dht::DecodeRecord, dht::EncodeRecord);
  RoundTrip(in, dht::DecodeKeyRequest, dht::EncodeKeyRequest);
  RoundTrip(in, dht::DecodePutRequest, dht::EncodePutRequest);
  RoundTrip(in, dht::DecodeAddRequest, dht::EncodeAddRequest);
  RoundTrip(in, dht::DecodeCasRequest, dht::EncodeCasRequest);
  RoundTrip(in, dht::DecodeRemoveRequest, dht::EncodeRemoveRequest);
  RoundTrip(in, dht::DecodeScanRequest, dht::EncodeScanRequest);
  RoundTrip(in, dht::DecodeScanReply, dht::EncodeScanReply);
  RoundTrip(in, dht::DecodeReplicateRequest, dht::EncodeReplicateRequest);
  RoundTrip(in, dht::DecodeNodeList, dht::EncodeNodeList);
  RoundTrip(in, dht::DecodeJoinRequest, dht::EncodeJoinRequest);
  RoundTrip(in, dht::DecodeStatsReply, dht::EncodeStatsReply);
  // The codecs are exact: what decodes encodes back to the very same bytes.
  if (auto r = dht::DecodeScanRequest(in); r.ok() && dht::EncodeScanRequest(*r) != in) {
    __builtin_trap();
  }
  if (auto r = dht::DecodeRecord(in); r.ok() && dht::EncodeRecord(*r) != in) __builtin_trap();

  // A binlog record (what a reader finds in a segment file, or a dump carries).
  auto rec = storage::Binlog::Decode(in);
  if (rec.ok()) {
    if (rec->second > in.size()) __builtin_trap();
    if (storage::Binlog::Encode(rec->first) != in.substr(0, rec->second)) __builtin_trap();
  } else if (rec.status().code() != StatusCode::kNotFound &&
             rec.status().code() != StatusCode::kCorruption) {
    __builtin_trap();
  }
  // A trunk slot header (what the start-up scan reads from every slot).
  auto th = storage::TrunkStore::DecodeHeader(in);
  if (th.ok()) {
    if (storage::TrunkStore::EncodeHeader(*th) != in.substr(0, storage::TrunkStore::kHeaderSize)) {
      __builtin_trap();
    }
    if (proto::SizeFromWord(th->fields.size_word) + storage::TrunkStore::kHeaderSize > th->alloc) {
      __builtin_trap();
    }
  }
  return 0;
}
