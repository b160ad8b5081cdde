// The head of a streaming request (uploads 11, 21, 23; append 24, modify 34): a fixed part and,
// for some commands, a file name whose length is the 8-byte big-endian number that starts the
// fixed part. Take() gathers it from the body's first chunks; the rest of the body follows.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/proto/protocol.h"

namespace depot::storage {

// A refused request's body up to this size is read (and dropped) before the answer, so that a
// client still sending gets the status rather than a reset; a bigger one is answered at once and
// the connection closed.
inline constexpr uint64_t kDrainMax = 16 << 20;

class RequestHead {
 public:
  enum class State { kNeedMore, kComplete, kMalformed };

  // `named`: the fixed part starts with the length of a name that follows it, min_name..128.
  RequestHead(size_t fixed, bool named, uint64_t body_len, uint64_t min_name = 1)
      : fixed_(fixed), named_(named), body_len_(body_len), min_name_(min_name) {}

  // Moves the head's bytes from the front of `chunk`.
  State Take(std::string* chunk) {
    for (;;) {
      size_t want = fixed_ + name_len_;
      size_t take = std::min(want - head_.size(), chunk->size());
      head_.append(*chunk, 0, take);
      chunk->erase(0, take);
      if (head_.size() < want) return State::kNeedMore;
      if (!named_ || name_known_) return State::kComplete;
      name_known_ = true;
      name_len_ = proto::GetU64(head_.data());
      if (name_len_ < min_name_ || name_len_ > proto::kMaxRemoteNameLen ||
          body_len_ < fixed_ + name_len_) {
        return State::kMalformed;
      }
    }
  }

  const std::string& bytes() const { return head_; }
  std::string name() const { return head_.substr(fixed_); }
  // Body bytes after the head.
  uint64_t rest() const { return body_len_ - head_.size(); }

 private:
  size_t fixed_;
  bool named_;
  uint64_t body_len_;
  uint64_t min_name_;
  uint64_t name_len_ = 0;
  bool name_known_ = false;
  std::string head_;
};

}  // namespace depot::storage
