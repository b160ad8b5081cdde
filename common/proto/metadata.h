// FastDFS metadata bytes: `key\x02value` records joined by `\x01` (key 1..64 bytes, value at most
// 256). Used by the storage (what it stores and serves) and by clients (what they send and read),
// documented in doc/protocol.md (commands 13 and 15). Pure functions; thread-safe.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "common/base/status.h"

namespace depot::proto {

using MetaMap = std::map<std::string, std::string>;

// InvalidArgument for an empty or over-long key, an over-long value, or a separator inside either.
Status ValidateMetaEntry(std::string_view key, std::string_view value);
// Parses metadata bytes. InvalidArgument on a record that fails ValidateMetaEntry or lacks the
// \x02 separator. Empty input is an empty map.
Result<MetaMap> ParseMeta(std::string_view bytes);
// The canonical encoding: records sorted by key (as FastDFS stores them).
std::string EncodeMeta(const MetaMap& meta);

}  // namespace depot::proto
