#include "common/proto/dedup.h"

#include <nlohmann/json.hpp>

#include "common/base/hash.h"
#include "common/proto/file_id.h"
#include "common/proto/protocol.h"

namespace depot::proto {
namespace {

using nlohmann::json;

// Sizes in a dedup key and a challenge are file sizes: bounded like FastDFS's (2^62).
constexpr uint64_t kMaxSize = 1ULL << 62;

}  // namespace

std::string ContentKey::Encode() const {
  std::string out = fp;
  out.resize(16, '\0');
  char b[8];
  PutU64(b, size);
  out.append(b, 8);
  return out;
}

Result<ContentKey> ContentKey::Decode(std::string_view b) {
  if (b.size() != kEncodedLen) return Status::InvalidArgument("content key: wrong length");
  ContentKey k;
  k.fp.assign(b.data(), 16);
  k.size = GetU64(b.data() + 16);
  if (k.size > kMaxSize) return Status::InvalidArgument("content key: size out of range");
  return k;
}

std::string ContentKey::Hex() const { return HexEncode(fp) + "-" + std::to_string(size); }

std::string EncodeDedupHead(const ContentKey& k, std::string_view canonical) {
  std::string out = k.Encode();
  AppendFixed(&out, canonical, kMaxRemoteNameLen);
  return out;
}

Status DecodeDedupHead(std::string_view b, ContentKey* k, std::string* canonical) {
  if (b.size() != kDedupHeadLen) return Status::InvalidArgument("dedup head: wrong length");
  DEPOT_ASSIGN_OR_RETURN(*k, ContentKey::Decode(b.substr(0, ContentKey::kEncodedLen)));
  std::string_view name = TrimFixed(b.substr(ContentKey::kEncodedLen));
  for (char c : name) {
    if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7E) {
      return Status::InvalidArgument("dedup head: bad canonical name");
    }
  }
  canonical->assign(name);
  return Status::OK();
}

std::string EncodeDedupScanRequest(const DedupScanRequest& r) {
  return json{{"repair", r.repair}, {"reconcile", r.reconcile}}.dump();
}

Result<DedupScanRequest> DecodeDedupScanRequest(std::string_view body) {
  json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Status::InvalidArgument("dedup scan: not a JSON object");
  DedupScanRequest r;
  for (auto& [k, v] : j.items()) {
    if (!v.is_boolean()) return Status::InvalidArgument("dedup scan: non-boolean field", k);
    if (k == "repair") {
      r.repair = v.get<bool>();
    } else if (k == "reconcile") {
      r.reconcile = v.get<bool>();
    } else {
      return Status::InvalidArgument("dedup scan: unknown field", k);
    }
  }
  return r;
}

#define DEPOT_SCAN_FIELDS(X) \
  X(files) X(fingerprinted) X(contents) X(merged) X(registered) X(refs_fixed) \
  X(records_removed) X(collisions) X(stale_entries) X(bytes_saved)

std::string EncodeDedupScanReport(const DedupScanReport& r) {
  json j;
#define X(f) j[#f] = r.f;
  DEPOT_SCAN_FIELDS(X)
#undef X
  j["dht_ok"] = r.dht_ok;
  return j.dump();
}

Result<DedupScanReport> DecodeDedupScanReport(std::string_view body) {
  json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Status::InvalidArgument("dedup report: not a JSON object");
  DedupScanReport r;
#define X(f)                                                                     \
  {                                                                              \
    auto it = j.find(#f);                                                        \
    if (it == j.end() || !it->is_number_unsigned()) {                            \
      if (it == j.end() || !it->is_number_integer() || it->get<int64_t>() < 0) { \
        return Status::InvalidArgument("dedup report: bad field", #f);           \
      }                                                                          \
    }                                                                            \
    r.f = it->get<uint64_t>();                                                   \
  }
  DEPOT_SCAN_FIELDS(X)
#undef X
  auto ok = j.find("dht_ok");
  if (ok == j.end() || !ok->is_boolean()) return Status::InvalidArgument("dedup report: bad field", "dht_ok");
  r.dht_ok = ok->get<bool>();
  return r;
}

std::string EncodeInstantUpload(const InstantUploadRequest& r) {
  std::string out(1, static_cast<char>(r.store_path));
  char b[8];
  PutU64(b, r.size);
  out.append(b, 8);
  AppendFixed(&out, r.ext, kExtLen);
  std::string fp = r.fp;
  fp.resize(16, '\0');
  out += fp;
  return out;
}

Result<InstantUploadRequest> DecodeInstantUpload(std::string_view body) {
  if (body.size() != kInstantUploadLen) return Status::InvalidArgument("instant upload: wrong body length");
  InstantUploadRequest r;
  r.store_path = static_cast<uint8_t>(body[0]);
  r.size = GetU64(body.data() + 1);
  if (r.size > kMaxSize) return Status::InvalidArgument("instant upload: size out of range");
  r.ext.assign(TrimFixed(body.substr(9, kExtLen)));
  for (size_t i = 9 + r.ext.size(); i < 9 + kExtLen; ++i) {
    if (body[i] != '\0') return Status::InvalidArgument("instant upload: bytes after the extension");
  }
  DEPOT_RETURN_IF_ERROR(ValidateExt(r.ext));
  r.fp.assign(body.substr(9 + kExtLen, 16));
  return r;
}

std::string EncodeInstantChallenge(const InstantChallenge& c) {
  std::string out = c.nonce;
  out.resize(kInstantNonceLen, '\0');
  out.push_back(static_cast<char>(c.ranges.size()));
  for (const ByteRange& r : c.ranges) {
    char b[16];
    PutU64(b, r.offset);
    PutU64(b + 8, r.length);
    out.append(b, 16);
  }
  return out;
}

Result<InstantChallenge> DecodeInstantChallenge(std::string_view body, uint64_t size) {
  if (body.size() < kInstantNonceLen + 1) return Status::InvalidArgument("instant challenge: too short");
  InstantChallenge c;
  c.nonce.assign(body.substr(0, kInstantNonceLen));
  size_t n = static_cast<uint8_t>(body[kInstantNonceLen]);
  if (n > kInstantMaxRanges || body.size() != kInstantNonceLen + 1 + n * 16) {
    return Status::InvalidArgument("instant challenge: bad range count");
  }
  const char* p = body.data() + kInstantNonceLen + 1;
  for (size_t i = 0; i < n; ++i, p += 16) {
    ByteRange r{GetU64(p), GetU64(p + 8)};
    if (r.offset > size || r.length > size - r.offset) {
      return Status::InvalidArgument("instant challenge: range outside the content");
    }
    c.ranges.push_back(r);
  }
  return c;
}

}  // namespace depot::proto
