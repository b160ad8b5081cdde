// The trunk slot header codec (doc/trunk.md), apart from TrunkStore's I/O so that the fuzz build
// compiles only what it fuzzes.
#include <algorithm>
#include <cstring>

#include "common/base/hash.h"
#include "common/proto/protocol.h"
#include "storage/trunk.h"

namespace depot::storage {
namespace {

constexpr char kMagic[4] = {'D', 'P', 'T', 'K'};
constexpr uint8_t kVersion = 1;
constexpr size_t kMaxSuffix = 12;

}  // namespace

std::string TrunkStore::EncodeHeader(const Header& h) {
  std::string out(kHeaderSize, '\0');
  char* p = out.data();
  std::memcpy(p, kMagic, 4);
  p[4] = static_cast<char>(kVersion);
  p[5] = h.live ? 1 : 0;
  size_t n = std::min(h.suffix.size(), kMaxSuffix);
  p[6] = static_cast<char>(n);
  proto::PutU32(p + 8, h.fields.source_ip);
  proto::PutU32(p + 12, h.fields.create_time);
  proto::PutU64(p + 16, h.fields.size_word);
  proto::PutU32(p + 24, h.fields.crc32);
  proto::PutU32(p + 28, h.alloc);
  std::memcpy(p + 32, h.suffix.data(), n);
  proto::PutU32(p + 44, Crc32(std::string_view(out.data(), 44)));
  return out;
}

Result<TrunkStore::Header> TrunkStore::DecodeHeader(std::string_view b) {
  if (b.size() < kHeaderSize) return Status::InvalidArgument("trunk header: short");
  const char* p = b.data();
  if (std::memcmp(p, kMagic, 4) != 0) return Status::NotFound("trunk slot: no header");
  if (static_cast<uint8_t>(p[4]) != kVersion || static_cast<uint8_t>(p[5]) > 1 ||
      static_cast<uint8_t>(p[6]) > kMaxSuffix || p[7] != 0 ||
      proto::GetU32(p + 44) != Crc32(std::string_view(p, 44))) {
    return Status::Corruption("trunk header: damaged");
  }
  Header h;
  h.live = p[5] == 1;
  h.fields.source_ip = proto::GetU32(p + 8);
  h.fields.create_time = proto::GetU32(p + 12);
  h.fields.size_word = proto::GetU64(p + 16);
  h.fields.crc32 = proto::GetU32(p + 24);
  h.alloc = proto::GetU32(p + 28);
  h.suffix.assign(p + 32, static_cast<uint8_t>(p[6]));
  for (size_t i = h.suffix.size(); i < kMaxSuffix; ++i) {
    if (p[32 + i] != 0) return Status::Corruption("trunk header: bytes after the suffix");
  }
  // A trunk file's size word: marker and trunk bits, a 32-bit size that fits the slot.
  if ((h.fields.size_word & proto::kSizeMarker) == 0 ||
      (h.fields.size_word & proto::kTrunkBit) == 0 || h.alloc < kHeaderSize ||
      proto::SizeFromWord(h.fields.size_word) > h.alloc - kHeaderSize) {
    return Status::Corruption("trunk header: size does not fit the slot");
  }
  return h;
}

}  // namespace depot::storage
