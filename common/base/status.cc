#include "common/base/status.h"

#include <cerrno>
#include <cstring>

namespace depot {

Status::Status(StatusCode code, std::string_view msg, std::string_view detail) {
  if (code == StatusCode::kOk) return;
  rep_ = std::make_unique<Rep>();
  rep_->code = code;
  rep_->message.assign(msg);
  if (!detail.empty()) {
    rep_->message.append(" ");
    rep_->message.append(detail);
  }
}

Status& Status::operator=(const Status& other) {
  if (this != &other) rep_ = other.rep_ ? std::make_unique<Rep>(*other.rep_) : nullptr;
  return *this;
}

Status Status::FromErrno(int err, std::string_view what, std::string_view object) {
  std::string msg(what);
  if (!object.empty()) {
    msg += " ";
    msg += object;
  }
  msg += ": ";
  msg += std::strerror(err);
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return Status(StatusCode::kNotFound, msg);
    case ENOSPC:
    case EDQUOT:
    case EMFILE:
    case ENFILE:
      return Status(StatusCode::kResourceExhausted, msg);
    case EACCES:
    case EPERM:
      return Status(StatusCode::kPermissionDenied, msg);
    case EEXIST:
      return Status(StatusCode::kAlreadyExists, msg);
    case EINVAL:
      return Status(StatusCode::kInvalidArgument, msg);
    case ETIMEDOUT:
    case EAGAIN:
      return Status(StatusCode::kTimedOut, msg);
    case ECONNREFUSED:
    case ECONNRESET:
    case EPIPE:
    case EHOSTUNREACH:
    case ENETUNREACH:
      return Status(StatusCode::kUnavailable, msg);
    default:
      return Status(StatusCode::kIOError, msg);
  }
}

const std::string& Status::message() const {
  static const std::string kEmpty;
  return rep_ ? rep_->message : kEmpty;
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  return std::string(StatusCodeName(code())) + ": " + rep_->message;
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return Status();
  std::string msg(context);
  msg += ": ";
  msg += rep_->message;
  return Status(rep_->code, msg);
}

const char* StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "OK";
    case StatusCode::kNotFound: return "NotFound";
    case StatusCode::kAlreadyExists: return "AlreadyExists";
    case StatusCode::kInvalidArgument: return "InvalidArgument";
    case StatusCode::kCorruption: return "Corruption";
    case StatusCode::kIOError: return "IOError";
    case StatusCode::kUnavailable: return "Unavailable";
    case StatusCode::kTimedOut: return "TimedOut";
    case StatusCode::kPermissionDenied: return "PermissionDenied";
    case StatusCode::kResourceExhausted: return "ResourceExhausted";
    case StatusCode::kNotSupported: return "NotSupported";
    case StatusCode::kInternal: return "Internal";
    case StatusCode::kBusy: return "Busy";
  }
  return "Unknown";
}

}  // namespace depot
