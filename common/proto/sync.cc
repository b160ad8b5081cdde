#include "common/proto/sync.h"

#include <cstdio>

#include <nlohmann/json.hpp>

#include "common/proto/protocol.h"

namespace depot::proto {
namespace {

using nlohmann::json;

constexpr size_t kMaxName = 1024;
constexpr size_t kMaxOrigins = 1 << 16;  // one per epoch of every member ever (doc/replication.md)
constexpr size_t kMaxListed = 1 << 20;

Result<json> Parse(std::string_view body, const char* what) {
  json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return Status::InvalidArgument(std::string(what) + ": body is not a JSON object");
  }
  return j;
}

Result<std::string> GetString(const json& j, const char* key, const char* what, size_t max) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) {
    return Status::InvalidArgument(std::string(what) + ": missing or non-string field", key);
  }
  std::string s = it->get<std::string>();
  if (s.size() > max) return Status::InvalidArgument(std::string(what) + ": field too long:", key);
  return s;
}

Result<int64_t> GetInt(const json& j, const char* key, const char* what, int64_t lo, int64_t hi) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer()) {
    return Status::InvalidArgument(std::string(what) + ": missing or non-integer field", key);
  }
  int64_t v = it->get<int64_t>();
  if (v < lo || v > hi) return Status::InvalidArgument(std::string(what) + ": out of range:", key);
  return v;
}

bool GetBool(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

std::string Hex64(uint64_t v) {
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

bool ParseHex64(const std::string& s, uint64_t* out) {
  if (s.empty() || s.size() > 16) return false;
  uint64_t v = 0;
  for (char c : s) {
    int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (d < 0) return false;
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  *out = v;
  return true;
}

}  // namespace

std::string EncodeSyncRecordHead(const SyncRecordHead& h) {
  std::string out(kSyncRecordHead, '\0');
  PutU64(out.data(), h.origin);
  PutU64(out.data() + 8, h.oseq);
  PutU64(out.data() + 16, h.data_len);
  PutU64(out.data() + 24, h.version);
  out[32] = h.op;
  out[33] = static_cast<char>(h.flags);
  out[34] = static_cast<char>(h.name_len >> 8);
  out[35] = static_cast<char>(h.name_len & 0xFF);
  return out;
}

Result<SyncRecordHead> DecodeSyncRecordHead(std::string_view b) {
  if (b.size() < kSyncRecordHead) return Status::InvalidArgument("sync record: head too short");
  SyncRecordHead h;
  h.origin = GetU64(b.data());
  h.oseq = GetU64(b.data() + 8);
  h.data_len = GetU64(b.data() + 16);
  h.version = GetU64(b.data() + 24);
  h.op = b[32];
  h.flags = static_cast<uint8_t>(b[33]);
  h.name_len = static_cast<uint16_t>((static_cast<uint8_t>(b[34]) << 8) | static_cast<uint8_t>(b[35]));
  if (h.origin == 0 || h.oseq == 0) return Status::InvalidArgument("sync record: zero origin or sequence");
  if (h.op != 'C' && h.op != 'D' && h.op != 'M' && h.op != 'A' && h.op != 'W' && h.op != 'T') {
    return Status::InvalidArgument("sync record: bad op");
  }
  if (h.name_len == 0 || h.name_len > kMaxRemoteNameLen) {
    return Status::InvalidArgument("sync record: bad name length");
  }
  if ((h.flags & ~(kSyncFlagGone | kSyncFlagDedup | kSyncFlagLink)) != 0) {
    return Status::InvalidArgument("sync record: unknown flags");
  }
  if ((h.flags & (kSyncFlagDedup | kSyncFlagLink)) && (h.op != 'C' || (h.flags & kSyncFlagGone))) {
    return Status::InvalidArgument("sync record: dedup flags on a record that is not a create");
  }
  if ((h.flags & kSyncFlagLink) && (!(h.flags & kSyncFlagDedup) || h.data_len != 0)) {
    return Status::InvalidArgument("sync record: a link without its dedup head, or with data");
  }
  if ((h.op == 'D' || h.op == 'T') && h.data_len != 0) {
    return Status::InvalidArgument("sync record: delete or truncate with data");
  }
  if ((h.op == 'A' || h.op == 'W' || h.op == 'T') && h.version > (1ULL << 62)) {
    return Status::InvalidArgument("sync record: offset out of range");
  }
  if ((h.flags & kSyncFlagGone) && h.data_len != 0) {
    return Status::InvalidArgument("sync record: gone with data");
  }
  if (h.op == 'M' && h.data_len > (1u << 20)) return Status::InvalidArgument("sync record: metadata too long");
  return h;
}

std::string EncodeSyncHello(const SyncHello& h) {
  return json{{"from", h.from}, {"dump", h.dump}}.dump();
}

Result<SyncHello> DecodeSyncHello(std::string_view body) {
  DEPOT_ASSIGN_OR_RETURN(json j, Parse(body, "sync hello"));
  SyncHello h;
  DEPOT_ASSIGN_OR_RETURN(h.from, GetString(j, "from", "sync hello", 64));
  h.dump = GetBool(j, "dump");
  return h;
}

std::string EncodeSyncHelloReply(const SyncHelloReply& r) {
  json applied = json::object();
  for (const auto& [origin, oseq] : r.applied) applied[Hex64(origin)] = oseq;
  return json{{"accepting", r.accepting}, {"applied", applied}}.dump();
}

Result<SyncHelloReply> DecodeSyncHelloReply(std::string_view body) {
  DEPOT_ASSIGN_OR_RETURN(json j, Parse(body, "sync hello reply"));
  SyncHelloReply r;
  r.accepting = GetBool(j, "accepting");
  auto it = j.find("applied");
  if (it == j.end() || !it->is_object() || it->size() > kMaxOrigins) {
    return Status::InvalidArgument("sync hello reply: applied must be an object");
  }
  for (const auto& [k, v] : it->items()) {
    uint64_t origin = 0;
    if (!ParseHex64(k, &origin) || !v.is_number_unsigned()) {
      return Status::InvalidArgument("sync hello reply: bad applied entry");
    }
    r.applied[origin] = v.get<uint64_t>();
  }
  return r;
}

std::string EncodeDumpRequest(const std::string& to) { return json{{"to", to}}.dump(); }

Result<std::string> DecodeDumpRequest(std::string_view body) {
  DEPOT_ASSIGN_OR_RETURN(json j, Parse(body, "dump request"));
  return GetString(j, "to", "dump request", 64);
}

std::string EncodeListFilesRequest(const ListFilesRequest& r) {
  return json{{"store_path", r.store_path}, {"dir1", r.dir1}, {"verify", r.verify}}.dump();
}

Result<ListFilesRequest> DecodeListFilesRequest(std::string_view body) {
  DEPOT_ASSIGN_OR_RETURN(json j, Parse(body, "list files"));
  ListFilesRequest r;
  DEPOT_ASSIGN_OR_RETURN(int64_t p, GetInt(j, "store_path", "list files", 0, 255));
  DEPOT_ASSIGN_OR_RETURN(int64_t d, GetInt(j, "dir1", "list files", 0, 255));
  r.store_path = static_cast<int>(p);
  r.dir1 = static_cast<int>(d);
  r.verify = GetBool(j, "verify");
  return r;
}

std::string EncodeListFilesReply(const ListFilesReply& r) {
  json files = json::array();
  for (const auto& f : r.files) {
    json e = {f.name, f.size, f.intact};
    if (f.has_crc) e.push_back(f.crc);
    files.push_back(std::move(e));
  }
  return json{{"files", files}, {"deleted", r.deleted}}.dump();
}

Result<ListFilesReply> DecodeListFilesReply(std::string_view body) {
  DEPOT_ASSIGN_OR_RETURN(json j, Parse(body, "list files reply"));
  ListFilesReply r;
  auto files = j.find("files");
  auto deleted = j.find("deleted");
  if (files == j.end() || !files->is_array() || files->size() > kMaxListed || deleted == j.end() ||
      !deleted->is_array() || deleted->size() > kMaxListed) {
    return Status::InvalidArgument("list files reply: files and deleted must be arrays");
  }
  for (const auto& f : *files) {
    if (!f.is_array() || (f.size() != 3 && f.size() != 4) || !f[0].is_string() ||
        !f[1].is_number_unsigned() || !f[2].is_boolean() ||
        f[0].get_ref<const std::string&>().size() > kMaxName ||
        (f.size() == 4 && (!f[3].is_number_unsigned() || f[3].get<uint64_t>() > 0xFFFFFFFFULL))) {
      return Status::InvalidArgument("list files reply: bad file entry");
    }
    ListedFile lf{f[0].get<std::string>(), f[1].get<uint64_t>(), f[2].get<bool>()};
    if (f.size() == 4) {
      lf.has_crc = true;
      lf.crc = static_cast<uint32_t>(f[3].get<uint64_t>());
    }
    r.files.push_back(std::move(lf));
  }
  for (const auto& d : *deleted) {
    if (!d.is_string() || d.get_ref<const std::string&>().size() > kMaxName) {
      return Status::InvalidArgument("list files reply: bad deleted entry");
    }
    r.deleted.push_back(d.get<std::string>());
  }
  return r;
}

std::string EncodeRepairRequest(const RepairRequest& r) {
  return json{{"name", r.name}, {"from_ip", r.from_ip}, {"from_port", r.from_port}}.dump();
}

Result<RepairRequest> DecodeRepairRequest(std::string_view body) {
  DEPOT_ASSIGN_OR_RETURN(json j, Parse(body, "repair"));
  RepairRequest r;
  DEPOT_ASSIGN_OR_RETURN(r.name, GetString(j, "name", "repair", kMaxRemoteNameLen));
  DEPOT_ASSIGN_OR_RETURN(r.from_ip, GetString(j, "from_ip", "repair", 15));
  DEPOT_ASSIGN_OR_RETURN(int64_t port, GetInt(j, "from_port", "repair", 1, 65535));
  r.from_port = static_cast<int>(port);
  return r;
}

}  // namespace depot::proto
