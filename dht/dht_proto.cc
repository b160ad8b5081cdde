#include "dht/dht_proto.h"

#include "common/proto/protocol.h"

namespace depot::dht {
namespace {

void PutU16(std::string* out, uint16_t v) {
  out->push_back(static_cast<char>(v >> 8));
  out->push_back(static_cast<char>(v & 0xFF));
}
void PutU32(std::string* out, uint32_t v) {
  char b[4];
  proto::PutU32(b, v);
  out->append(b, 4);
}
void PutU64(std::string* out, uint64_t v) { proto::AppendU64(out, v); }
void PutBytes16(std::string* out, std::string_view s) {
  PutU16(out, static_cast<uint16_t>(s.size()));
  out->append(s);
}
void PutRecord(std::string* out, const Record& r) {
  PutU64(out, r.version);
  PutU64(out, static_cast<uint64_t>(r.count));
  out->push_back(static_cast<char>(r.tombstone ? kRecordTombstone : 0));
  PutU32(out, static_cast<uint32_t>(r.value.size()));
  out->append(r.value);
}

// Reads fields off the front of a body; the first failure sticks (later reads return zeros) and
// Finish() reports it, or trailing bytes.
class Reader {
 public:
  Reader(std::string_view in, const char* what) : in_(in), what_(what) {}

  uint8_t U8() {
    if (!Need(1)) return 0;
    uint8_t v = static_cast<uint8_t>(in_[0]);
    in_.remove_prefix(1);
    return v;
  }
  uint16_t U16() {
    if (!Need(2)) return 0;
    uint16_t v = static_cast<uint16_t>((static_cast<uint8_t>(in_[0]) << 8) |
                                       static_cast<uint8_t>(in_[1]));
    in_.remove_prefix(2);
    return v;
  }
  uint32_t U32() {
    if (!Need(4)) return 0;
    uint32_t v = proto::GetU32(in_.data());
    in_.remove_prefix(4);
    return v;
  }
  uint64_t U64() {
    if (!Need(8)) return 0;
    uint64_t v = proto::GetU64(in_.data());
    in_.remove_prefix(8);
    return v;
  }
  std::string Bytes(size_t n) {
    if (!Need(n)) return {};
    std::string v(in_.substr(0, n));
    in_.remove_prefix(n);
    return v;
  }
  // u16 length + bytes, the length within [min, max].
  std::string Bytes16(size_t min, size_t max, const char* field) {
    uint16_t n = U16();
    if (!ok()) return {};
    if (n < min || n > max) {
      Fail(std::string(field) + " length " + std::to_string(n) + " out of range");
      return {};
    }
    return Bytes(n);
  }
  std::string Key() { return Bytes16(1, kMaxKeyLen, "key"); }
  std::string Node() {
    std::string n = Bytes16(1, kMaxNodeIdLen, "node id");
    if (ok() && !ValidateNodeId(n).ok()) Fail("bad node id");
    return n;
  }
  Record Rec() {
    Record r;
    r.version = U64();
    r.count = static_cast<int64_t>(U64());
    uint8_t flags = U8();
    if (ok() && (flags & ~kRecordTombstone) != 0) Fail("unknown record flags");
    r.tombstone = (flags & kRecordTombstone) != 0;
    r.value = Value();
    return r;
  }
  std::string Value() {
    uint32_t n = U32();
    if (ok() && n > kMaxValueLen) {
      Fail("value length " + std::to_string(n) + " over " + std::to_string(kMaxValueLen));
      return {};
    }
    return Bytes(n);
  }
  void Fail(const std::string& why) {
    if (error_.empty()) error_ = why;
  }
  bool ok() const { return error_.empty(); }
  Status Finish() {
    if (ok() && !in_.empty()) Fail(std::to_string(in_.size()) + " trailing bytes");
    if (ok()) return Status::OK();
    return Status::InvalidArgument(std::string("dht ") + what_ + ":", error_);
  }

 private:
  bool Need(size_t n) {
    if (!ok()) return false;
    if (in_.size() < n) {
      Fail("truncated");
      return false;
    }
    return true;
  }

  std::string_view in_;
  const char* what_;
  std::string error_;
};

}  // namespace

bool operator==(const Record& a, const Record& b) {
  return a.version == b.version && a.count == b.count && a.tombstone == b.tombstone &&
         a.value == b.value;
}

Status ValidateKey(std::string_view key) {
  if (key.empty() || key.size() > kMaxKeyLen) {
    return Status::InvalidArgument("dht key length must be 1.." + std::to_string(kMaxKeyLen) +
                                   ", got", std::to_string(key.size()));
  }
  return Status::OK();
}

Status ValidateValue(std::string_view value) {
  if (value.size() > kMaxValueLen) {
    return Status::InvalidArgument("dht value longer than " + std::to_string(kMaxValueLen) + ":",
                                   std::to_string(value.size()));
  }
  return Status::OK();
}

Status ValidateNodeId(std::string_view node) {
  size_t colon = node.rfind(':');
  if (node.empty() || node.size() > kMaxNodeIdLen || colon == std::string_view::npos ||
      colon == 0 || colon + 1 == node.size() || node.size() - colon - 1 > 5) {
    return Status::InvalidArgument("dht node id must be host:port, got", std::string(node));
  }
  uint32_t port = 0;
  for (char c : node.substr(colon + 1)) {
    if (c < '0' || c > '9') return Status::InvalidArgument("dht node id: bad port", std::string(node));
    port = port * 10 + static_cast<uint32_t>(c - '0');
  }
  if (port == 0 || port > 65535) {
    return Status::InvalidArgument("dht node id: port out of range", std::string(node));
  }
  return Status::OK();
}

std::string EncodeRecord(const Record& r) {
  std::string out;
  out.reserve(kRecordHeadLen + r.value.size());
  PutRecord(&out, r);
  return out;
}

bool Supersedes(const Record& a, const Record& b) {
  if (a.version != b.version) return a.version > b.version;
  // Equal versions (two coordinators wrote the same version): the greater encoding wins, the
  // same on every node. The version bytes are equal, so this orders by the count's bytes, the
  // flags, the value length, then the value.
  return EncodeRecord(a) > EncodeRecord(b);
}

Result<Record> DecodeRecord(std::string_view body) {
  Reader rd(body, "record");
  Record r = rd.Rec();
  DEPOT_RETURN_IF_ERROR(rd.Finish());
  return r;
}

std::string EncodeKeyRequest(const KeyRequest& r) {
  std::string out;
  PutBytes16(&out, r.key);
  return out;
}

Result<KeyRequest> DecodeKeyRequest(std::string_view body) {
  Reader rd(body, "get");
  KeyRequest r;
  r.key = rd.Key();
  DEPOT_RETURN_IF_ERROR(rd.Finish());
  return r;
}

std::string EncodePutRequest(const PutRequest& r) {
  std::string out;
  PutBytes16(&out, r.key);
  PutU64(&out, static_cast<uint64_t>(r.count));
  PutU32(&out, static_cast<uint32_t>(r.value.size()));
  out.append(r.value);
  return out;
}

Result<PutRequest> DecodePutRequest(std::string_view body) {
  Reader rd(body, "put_if_absent");
  PutRequest r;
  r.key = rd.Key();
  r.count = static_cast<int64_t>(rd.U64());
  r.value = rd.Value();
  DEPOT_RETURN_IF_ERROR(rd.Finish());
  return r;
}

std::string EncodeAddRequest(const AddRequest& r) {
  std::string out;
  PutBytes16(&out, r.key);
  PutU64(&out, static_cast<uint64_t>(r.delta));
  return out;
}

Result<AddRequest> DecodeAddRequest(std::string_view body) {
  Reader rd(body, "add");
  AddRequest r;
  r.key = rd.Key();
  r.delta = static_cast<int64_t>(rd.U64());
  DEPOT_RETURN_IF_ERROR(rd.Finish());
  return r;
}

std::string EncodeCasRequest(const CasRequest& r) {
  std::string out;
  PutBytes16(&out, r.key);
  PutU64(&out, r.expected_version);
  PutU64(&out, static_cast<uint64_t>(r.count));
  PutU32(&out, static_cast<uint32_t>(r.value.size()));
  out.append(r.value);
  return out;
}

Result<CasRequest> DecodeCasRequest(std::string_view body) {
  Reader rd(body, "cas");
  CasRequest r;
  r.key = rd.Key();
  r.expected_version = rd.U64();
  r.count = static_cast<int64_t>(rd.U64());
  r.value = rd.Value();
  DEPOT_RETURN_IF_ERROR(rd.Finish());
  return r;
}

std::string EncodeRemoveRequest(const RemoveRequest& r) {
  std::string out;
  PutBytes16(&out, r.key);
  PutU64(&out, r.expected_version);
  return out;
}

Result<RemoveRequest> DecodeRemoveRequest(std::string_view body) {
  Reader rd(body, "remove");
  RemoveRequest r;
  r.key = rd.Key();
  r.expected_version = rd.U64();
  DEPOT_RETURN_IF_ERROR(rd.Finish());
  return r;
}

std::string EncodeScanRequest(const ScanRequest& r) {
  std::string out;
  PutBytes16(&out, r.start);
  PutU32(&out, r.limit);
  uint8_t flags = (r.include_tombstones ? kScanIncludeTombstones : 0) |
                  (r.has_filter ? kScanOwnershipFilter : 0);
  out.push_back(static_cast<char>(flags));
  if (r.has_filter) {
    PutU16(&out, r.replicas);
    PutU16(&out, static_cast<uint16_t>(r.nodes.size()));
    for (const auto& n : r.nodes) PutBytes16(&out, n);
    PutU16(&out, r.index);
  }
  return out;
}

Result<ScanRequest> DecodeScanRequest(std::string_view body) {
  Reader rd(body, "scan");
  ScanRequest r;
  r.start = rd.Bytes16(0, kMaxKeyLen, "start key");
  r.limit = rd.U32();
  if (rd.ok() && (r.limit == 0 || r.limit > kMaxScanLimit)) rd.Fail("limit out of 1..1000");
  uint8_t flags = rd.U8();
  if (rd.ok() && (flags & ~(kScanIncludeTombstones | kScanOwnershipFilter)) != 0) {
    rd.Fail("unknown scan flags");
  }
  r.include_tombstones = (flags & kScanIncludeTombstones) != 0;
  r.has_filter = (flags & kScanOwnershipFilter) != 0;
  if (rd.ok() && r.has_filter) {
    r.replicas = rd.U16();
    if (rd.ok() && r.replicas == 0) rd.Fail("filter replicas must be >= 1");
    uint16_t n = rd.U16();
    if (rd.ok() && (n == 0 || n > kMaxNodes)) rd.Fail("filter node count out of range");
    for (uint16_t i = 0; rd.ok() && i < n; ++i) r.nodes.push_back(rd.Node());
    r.index = rd.U16();
    if (rd.ok() && r.index >= n) rd.Fail("filter index out of range");
  }
  DEPOT_RETURN_IF_ERROR(rd.Finish());
  return r;
}

std::string EncodeScanReply(const ScanReply& r) {
  std::string out;
  PutU32(&out, static_cast<uint32_t>(r.entries.size()));
  for (const auto& [key, rec] : r.entries) {
    PutBytes16(&out, key);
    PutRecord(&out, rec);
  }
  out.push_back(static_cast<char>(r.more ? 1 : 0));
  return out;
}

Result<ScanReply> DecodeScanReply(std::string_view body) {
  Reader rd(body, "scan reply");
  ScanReply r;
  uint32_t n = rd.U32();
  // Each entry takes at least 2 + 1 + kRecordHeadLen bytes: bound n before reserving.
  if (rd.ok() && (n > kMaxScanLimit || n > body.size() / (3 + kRecordHeadLen))) {
    rd.Fail("entry count " + std::to_string(n) + " out of range");
  }
  for (uint32_t i = 0; rd.ok() && i < n; ++i) {
    std::string key = rd.Key();
    Record rec = rd.Rec();
    r.entries.emplace_back(std::move(key), std::move(rec));
  }
  uint8_t more = rd.U8();
  if (rd.ok() && more > 1) rd.Fail("bad more flag");
  r.more = more == 1;
  DEPOT_RETURN_IF_ERROR(rd.Finish());
  return r;
}

std::string EncodeReplicateRequest(const ReplicateRequest& r) {
  std::string out;
  PutBytes16(&out, r.key);
  PutRecord(&out, r.record);
  return out;
}

Result<ReplicateRequest> DecodeReplicateRequest(std::string_view body) {
  Reader rd(body, "replicate");
  ReplicateRequest r;
  r.key = rd.Key();
  r.record = rd.Rec();
  DEPOT_RETURN_IF_ERROR(rd.Finish());
  return r;
}

std::string EncodeNodeList(const std::vector<std::string>& nodes) {
  std::string out;
  PutU16(&out, static_cast<uint16_t>(nodes.size()));
  for (const auto& n : nodes) PutBytes16(&out, n);
  return out;
}

Result<std::vector<std::string>> DecodeNodeList(std::string_view body) {
  Reader rd(body, "node list");
  std::vector<std::string> nodes;
  uint16_t n = rd.U16();
  if (rd.ok() && n > kMaxNodes) rd.Fail("node count out of range");
  for (uint16_t i = 0; rd.ok() && i < n; ++i) nodes.push_back(rd.Node());
  DEPOT_RETURN_IF_ERROR(rd.Finish());
  return nodes;
}

std::string EncodeJoinRequest(const std::string& node) {
  std::string out;
  PutBytes16(&out, node);
  return out;
}

Result<std::string> DecodeJoinRequest(std::string_view body) {
  Reader rd(body, "join");
  std::string node = rd.Node();
  DEPOT_RETURN_IF_ERROR(rd.Finish());
  return node;
}

std::string EncodeStatsReply(const StatsReply& r) {
  std::string out;
  PutU64(&out, r.keys);
  PutU64(&out, static_cast<uint64_t>(r.references));
  return out;
}

Result<StatsReply> DecodeStatsReply(std::string_view body) {
  Reader rd(body, "stats");
  StatsReply r;
  r.keys = rd.U64();
  r.references = static_cast<int64_t>(rd.U64());
  DEPOT_RETURN_IF_ERROR(rd.Finish());
  return r;
}

}  // namespace depot::dht
