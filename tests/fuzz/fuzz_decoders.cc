// libFuzzer target: every decoder of untrusted bytes (frame header, stat records, internal JSON
// bodies, FastDFS metadata) must reject bad input with a Status, never crash or over-read.
#include <cstdint>
#include <string>

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
  auto meta = depot::proto::ParseMeta(in);
  if (meta.ok()) {
    auto again = depot::proto::ParseMeta(depot::proto::EncodeMeta(*meta));
    if (!again.ok() || *again != *meta) __builtin_trap();
  }
  return 0;
}
