#include "common/proto/protocol.h"

#include <cerrno>

namespace depot::proto {

const char* StorageStateName(StorageState s) {
  switch (s) {
    case StorageState::kInit: return "INIT";
    case StorageState::kWaitSync: return "WAIT_SYNC";
    case StorageState::kSyncing: return "SYNCING";
    case StorageState::kIpChanged: return "IP_CHANGED";
    case StorageState::kDeleted: return "DELETED";
    case StorageState::kOffline: return "OFFLINE";
    case StorageState::kOnline: return "ONLINE";
    case StorageState::kActive: return "ACTIVE";
    case StorageState::kRecovery: return "RECOVERY";
    case StorageState::kNone: return "NONE";
  }
  return "UNKNOWN";
}

std::string EncodeFrame(uint8_t cmd, uint8_t status, std::string_view body) {
  std::string out(kHeaderSize, '\0');
  EncodeHeader({body.size(), cmd, status}, out.data());
  out.append(body);
  return out;
}

uint8_t StatusToWire(const Status& s) {
  switch (s.code()) {
    case StatusCode::kOk: return 0;
    case StatusCode::kNotFound: return ENOENT;
    case StatusCode::kAlreadyExists: return EEXIST;
    case StatusCode::kInvalidArgument: return EINVAL;
    case StatusCode::kCorruption: return EIO;
    case StatusCode::kIOError: return EIO;
    case StatusCode::kUnavailable: return EAGAIN;
    case StatusCode::kTimedOut: return ETIMEDOUT;
    case StatusCode::kPermissionDenied: return EACCES;
    case StatusCode::kResourceExhausted: return ENOSPC;
    case StatusCode::kNotSupported: return EOPNOTSUPP;
    case StatusCode::kInternal: return EIO;
    case StatusCode::kBusy: return EBUSY;
  }
  return EIO;
}

Status WireToStatus(uint8_t wire, std::string_view what) {
  if (wire == 0) return Status::OK();
  std::string msg(what);
  msg += ": server status " + std::to_string(wire);
  switch (wire) {
    case ENOENT: return Status::NotFound(msg, "(ENOENT)");
    case EEXIST: return Status::AlreadyExists(msg, "(EEXIST)");
    case EINVAL: return Status::InvalidArgument(msg, "(EINVAL)");
    case ENOSPC: return Status::ResourceExhausted(msg, "(ENOSPC)");
    case EBUSY: return Status::Busy(msg, "(EBUSY)");
    case EOPNOTSUPP: return Status::NotSupported(msg, "(EOPNOTSUPP)");
    case EACCES:
    case EPERM: return Status::PermissionDenied(msg, "(EACCES)");
    case EAGAIN: return Status::Unavailable(msg, "(EAGAIN)");
    case ETIMEDOUT: return Status::TimedOut(msg, "(ETIMEDOUT)");
    default: return Status::IOError(msg);
  }
}

void AppendFixed(std::string* out, std::string_view s, size_t width) {
  size_t n = s.size() < width ? s.size() : width;
  out->append(s.data(), n);
  out->append(width - n, '\0');
}

void AppendU64(std::string* out, uint64_t v) {
  char b[8];
  PutU64(b, v);
  out->append(b, 8);
}

std::string_view TrimFixed(std::string_view field) {
  size_t nul = field.find('\0');
  return nul == std::string_view::npos ? field : field.substr(0, nul);
}

Result<std::vector<FetchTarget>> DecodeFetchAll(std::string_view body) {
  constexpr size_t kEntry = kQueryIpLen + 8;
  if (body.size() < kGroupNameLen + kEntry || (body.size() - kGroupNameLen) % kEntry != 0) {
    return Status::Corruption("query fetch all: reply of " + std::to_string(body.size()) +
                              " bytes");
  }
  std::vector<FetchTarget> out;
  for (size_t at = kGroupNameLen; at < body.size(); at += kEntry) {
    out.push_back({std::string(TrimFixed(body.substr(at, kQueryIpLen))),
                   static_cast<int>(GetU64(body.data() + at + kQueryIpLen))});
  }
  return out;
}

}  // namespace depot::proto
