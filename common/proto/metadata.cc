#include "common/proto/metadata.h"

#include "common/proto/protocol.h"

namespace depot::proto {

Status ValidateMetaEntry(std::string_view key, std::string_view value) {
  if (key.empty()) return Status::InvalidArgument("empty metadata key");
  if (key.size() > kMaxMetaKeyLen) return Status::InvalidArgument("metadata key longer than 64 bytes");
  if (value.size() > kMaxMetaValueLen) {
    return Status::InvalidArgument("metadata value longer than 256 bytes");
  }
  if (key.find_first_of("\x01\x02") != std::string_view::npos ||
      value.find_first_of("\x01\x02") != std::string_view::npos) {
    return Status::InvalidArgument("metadata may not contain the \\x01 or \\x02 separators");
  }
  return Status::OK();
}

Result<MetaMap> ParseMeta(std::string_view bytes) {
  MetaMap out;
  if (bytes.empty()) return out;
  size_t pos = 0;
  while (pos <= bytes.size()) {
    size_t end = bytes.find('\x01', pos);
    if (end == std::string_view::npos) end = bytes.size();
    std::string_view rec = bytes.substr(pos, end - pos);
    size_t sep = rec.find('\x02');
    if (sep == std::string_view::npos) return Status::InvalidArgument("metadata record without value");
    std::string_view key = rec.substr(0, sep), value = rec.substr(sep + 1);
    DEPOT_RETURN_IF_ERROR(ValidateMetaEntry(key, value));
    out[std::string(key)] = std::string(value);
    pos = end + 1;
  }
  return out;
}

std::string EncodeMeta(const MetaMap& meta) {
  std::string out;
  for (const auto& [k, v] : meta) {
    if (!out.empty()) out.push_back('\x01');
    out += k;
    out.push_back('\x02');
    out += v;
  }
  return out;
}

}  // namespace depot::proto
