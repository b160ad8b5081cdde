// depot::Status and depot::Result<T>: the error type of every Depot function.
//
// A Status is OK or a code plus a message that names what failed on which object
// (`Status::IOError("open", path)`). OK carries no allocation. Thread-compatible: a Status is a
// value; share it across threads only by copy.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace depot {

enum class StatusCode : unsigned char {
  kOk = 0,
  kNotFound,
  kAlreadyExists,
  kInvalidArgument,
  kCorruption,
  kIOError,
  kUnavailable,
  kTimedOut,
  kPermissionDenied,
  kResourceExhausted,
  kNotSupported,
  kInternal,
  kBusy,
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string_view msg, std::string_view detail = {});
  Status(const Status& other) { *this = other; }
  Status& operator=(const Status& other);
  Status(Status&&) noexcept = default;
  Status& operator=(Status&&) noexcept = default;

  static Status OK() { return Status(); }
#define DEPOT_STATUS_FACTORY(Name)                                                  \
  static Status Name(std::string_view msg, std::string_view detail = {}) {          \
    return Status(StatusCode::k##Name, msg, detail);                                \
  }
  DEPOT_STATUS_FACTORY(NotFound)
  DEPOT_STATUS_FACTORY(AlreadyExists)
  DEPOT_STATUS_FACTORY(InvalidArgument)
  DEPOT_STATUS_FACTORY(Corruption)
  DEPOT_STATUS_FACTORY(IOError)
  DEPOT_STATUS_FACTORY(Unavailable)
  DEPOT_STATUS_FACTORY(TimedOut)
  DEPOT_STATUS_FACTORY(PermissionDenied)
  DEPOT_STATUS_FACTORY(ResourceExhausted)
  DEPOT_STATUS_FACTORY(NotSupported)
  DEPOT_STATUS_FACTORY(Internal)
  DEPOT_STATUS_FACTORY(Busy)
#undef DEPOT_STATUS_FACTORY

  // An IOError built from errno: "open /x/y: No such file or directory". ENOENT becomes NotFound,
  // ENOSPC/EDQUOT ResourceExhausted, EACCES/EPERM PermissionDenied, EEXIST AlreadyExists.
  static Status FromErrno(int err, std::string_view what, std::string_view object = {});

  bool ok() const { return rep_ == nullptr; }
  StatusCode code() const { return rep_ ? rep_->code : StatusCode::kOk; }
  const std::string& message() const;
  std::string ToString() const;

  bool IsNotFound() const { return code() == StatusCode::kNotFound; }
  bool IsInvalidArgument() const { return code() == StatusCode::kInvalidArgument; }

  // Adds context in front of the message: "while loading x: <message>".
  Status WithContext(std::string_view context) const;

 private:
  struct Rep {
    StatusCode code;
    std::string message;
  };
  std::unique_ptr<Rep> rep_;
};

const char* StatusCodeName(StatusCode code);

// Result<T>: a T or a non-OK Status (g++ 12 has no std::expected).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}                // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}         // NOLINT: implicit by design

  bool ok() const { return v_.index() == 1; }
  const Status& status() const {
    static const Status kOkStatus;
    return ok() ? kOkStatus : std::get<0>(v_);
  }
  T& value() & { return std::get<1>(v_); }
  const T& value() const& { return std::get<1>(v_); }
  T&& value() && { return std::get<1>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  Status TakeStatus() && { return ok() ? Status() : std::move(std::get<0>(v_)); }

 private:
  std::variant<Status, T> v_;
};

}  // namespace depot

#define DEPOT_CONCAT_INNER_(a, b) a##b
#define DEPOT_CONCAT_(a, b) DEPOT_CONCAT_INNER_(a, b)

#define DEPOT_RETURN_IF_ERROR(expr)           \
  do {                                        \
    ::depot::Status depot_status_ = (expr);   \
    if (!depot_status_.ok()) return depot_status_; \
  } while (0)

#define DEPOT_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return std::move(tmp).TakeStatus(); \
  lhs = std::move(tmp).value()

#define DEPOT_ASSIGN_OR_RETURN(lhs, expr) \
  DEPOT_ASSIGN_OR_RETURN_IMPL_(DEPOT_CONCAT_(depot_result_, __LINE__), lhs, expr)
