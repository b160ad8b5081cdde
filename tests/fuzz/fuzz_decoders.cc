// libFuzzer target: every decoder of untrusted bytes (frame header, stat records, internal JSON
// bodies, FastDFS metadata, the dedup bodies: scan, instant upload, dedup head) must reject bad input with a Status, never crash or over-read.
#include <cstdint>
#include <string>

#include "common/proto/dedup.h"
#include "common/proto/internal.h"
#include "common/proto/protocol.h"
#include "common/proto/stat_records.h"
#include "common/proto/metadata.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  if (size >= depot::proto::kHeaderSize) (void)depot::proto::DecodeHeader(in.data());
  (void)depot::proto::DecodeGroupStats(in);
  (void)depot::proto::DecodeStorageStats(in);
  (void)depot::proto::DecodeJoin(in);
  (void)depot::proto::DecodeHeartbeat(in);
  (void)depot::proto::DecodeHeartbeatReply(in);
  (void)depot::proto::DecodeFetchAll(in);
  (void)depot::proto::DecodeDedupScanRequest(in);
  (void)depot::proto::DecodeDedupScanReport(in);
  auto iu = depot::proto::DecodeInstantUpload(in);
  if (iu.ok() && depot::proto::EncodeInstantUpload(*iu) != in) __builtin_trap();
  if (size >= 8) {
    uint64_t limit = 0;
    for (int i = 0; i < 8; ++i) limit = (limit << 8) | data[i];
    auto ch = depot::proto::DecodeInstantChallenge(in.substr(8), limit);
    if (ch.ok()) {
      for (const auto& r : ch->ranges) {
        if (r.offset > limit || r.length > limit - r.offset) __builtin_trap();
      }
    }
  }
  {
    depot::proto::ContentKey k;
    std::string canonical;
    (void)depot::proto::DecodeDedupHead(in, &k, &canonical);
  }
  auto meta = depot::proto::ParseMeta(in);
  if (meta.ok()) {
    auto again = depot::proto::ParseMeta(depot::proto::EncodeMeta(*meta));
    if (!again.ok() || *again != *meta) __builtin_trap();
  }
  return 0;
}
