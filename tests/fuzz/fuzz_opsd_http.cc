// libFuzzer target: opsd's HTTP parsing layer (opsd/http/http_parse). Input: one byte that picks
// the split points and output limits, then the bytes. The request head parser runs over the
// bytes; the chunked decoder and the multipart parser (boundary "xYz") run over what follows a
// parsed head (or over all the bytes), once whole and once in pieces, and must agree; the query
// and percent decoders run over the bytes too. Every result must respect the documented bounds.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/net/http_parse.h"

namespace http = depot::net::http;

namespace {

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

// Piece sizes from a small xorshift seeded by the first input byte: pieces of 1 byte, a few
// bytes or larger runs, so splits inside every delimiter and line get explored.
class Splitter {
 public:
  explicit Splitter(uint8_t seed) : state_(0x9E3779B9u ^ (seed * 0x01000193u)), seed_(seed) {
    if (state_ == 0) state_ = 1;
  }
  size_t Next(size_t left) {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 17;
    state_ ^= state_ << 5;
    static constexpr size_t kCaps[] = {1, 3, 16, 512};
    size_t n = 1 + state_ % kCaps[seed_ & 3];
    return n < left ? n : left;
  }

 private:
  uint32_t state_;
  uint8_t seed_;
};

// Returns the bytes after the head when one parsed.
std::string_view CheckHead(std::string_view in) {
  constexpr size_t kMaxHead = 4096;
  http::RequestHead head;
  http::HeadResult r = http::ParseRequestHead(in, kMaxHead, &head);
  switch (r.kind) {
    case http::HeadResult::Kind::kNeedMore:
      Check(in.size() <= kMaxHead);
      return in;
    case http::HeadResult::Kind::kError:
      Check(r.status == 400 || r.status == 413 || r.status == 417 || r.status == 431 ||
            r.status == 501 || r.status == 505);
      Check(!r.message.empty());
      return in;
    case http::HeadResult::Kind::kOk:
      break;
  }
  Check(r.consumed > 0 && r.consumed <= in.size() && r.consumed <= kMaxHead);
  Check(!head.method.empty() && !head.target.empty() && head.target[0] == '/');
  Check(head.target == head.path || head.target == head.path + "?" + head.query);
  Check(head.path.find('?') == std::string::npos);
  Check(head.version_minor == 0 || head.version_minor == 1);
  Check(head.headers.size() <= http::kMaxHeaders);
  Check(!(head.chunked && head.content_length));
  Check(!head.content_length || *head.content_length <= http::kMaxContentLength);
  Check(!head.expect_continue || head.version_minor == 1);
  for (const auto& [name, value] : head.headers) {
    Check(!name.empty());
    for (char c : name) Check(!(c >= 'A' && c <= 'Z') && c != ':' && c != ' ');
    for (char c : value) Check(c != '\r' && c != '\n' && c != '\0');
    Check(value.empty() || (value.front() != ' ' && value.back() != ' '));
  }
  // The head alone parses the same; without its last byte it is not complete yet.
  http::RequestHead again;
  http::HeadResult r2 = http::ParseRequestHead(in.substr(0, r.consumed), kMaxHead, &again);
  Check(r2.kind == http::HeadResult::Kind::kOk && r2.consumed == r.consumed);
  Check(again.headers == head.headers && again.target == head.target);
  r2 = http::ParseRequestHead(in.substr(0, r.consumed - 1), kMaxHead, &again);
  Check(r2.kind == http::HeadResult::Kind::kNeedMore);
  return in.substr(r.consumed);
}

void CheckChunked(std::string_view in, uint8_t seed) {
  using State = http::ChunkedDecoder::State;
  http::ChunkedDecoder whole;
  std::string whole_out;
  size_t whole_consumed = 0;
  State whole_state = whole.Feed(in, &whole_consumed, &whole_out, SIZE_MAX);
  Check(whole_consumed <= in.size() && whole_out.size() <= in.size());
  Check(whole_state != State::kMore || whole_consumed == in.size());
  Check(whole_state != State::kError || !whole.error().empty());

  // The same bytes in pieces, with a small output limit per call.
  http::ChunkedDecoder split;
  Splitter splitter(seed);
  const size_t max_out = 1 + seed % 13;
  std::string out;
  size_t total = 0;      // consumed so far
  size_t available = 0;  // bytes handed over so far
  State state = State::kMore;
  while (state == State::kMore) {
    if (total == available) {
      if (available == in.size()) break;
      available += splitter.Next(in.size() - available);
    }
    std::string_view piece = in.substr(total, available - total);
    size_t before = out.size();
    size_t consumed = 0;
    state = split.Feed(piece, &consumed, &out, max_out);
    Check(consumed <= piece.size());
    Check(out.size() - before <= max_out);
    if (state == State::kMore && consumed < piece.size()) Check(out.size() - before == max_out);
    total += consumed;
  }
  Check(state == whole_state);
  if (state != State::kError) {
    Check(out == whole_out);
    Check(total == whole_consumed);
  }
  if (state != State::kMore) {  // done and error are final: nothing more is consumed
    size_t after = 1;
    Check(split.Feed(in, &after, &out, max_out) == state && after == 0);
  }
}

// What a multipart run reports: events with consecutive data merged, and the statuses.
struct MultipartRun {
  std::vector<std::string> events;
  depot::StatusCode feed = depot::StatusCode::kOk;
  depot::StatusCode finish = depot::StatusCode::kOk;
  size_t data_bytes = 0;
};

MultipartRun RunMultipart(std::string_view in, Splitter* splitter) {
  MultipartRun run;
  http::MultipartParser::Callbacks cb;
  cb.on_part_begin = [&run](const http::MultipartParser::Part& p) {
    run.events.push_back("B" + p.name + "\n" + p.filename + "\n" + p.content_type);
    return depot::Status::OK();
  };
  cb.on_data = [&run](std::string_view d) {
    Check(!d.empty());
    Check(!run.events.empty() && run.events.back()[0] != 'E');
    if (run.events.back()[0] != 'D') run.events.push_back("D");
    run.events.back().append(d);
    run.data_bytes += d.size();
    return depot::Status::OK();
  };
  cb.on_part_end = [&run]() {
    Check(!run.events.empty() && run.events.back()[0] != 'E');
    run.events.push_back("E");
    return depot::Status::OK();
  };
  http::MultipartParser parser("xYz", cb);
  size_t at = 0;
  do {
    size_t n = splitter ? splitter->Next(in.size() - at) : in.size() - at;
    depot::Status s = parser.Feed(in.substr(at, n));
    at += n;
    if (!s.ok()) {
      run.feed = s.code();
      break;
    }
  } while (at < in.size());
  run.finish = parser.Finish().code();
  Check(run.data_bytes <= in.size());
  Check(run.feed == depot::StatusCode::kOk || run.finish == run.feed);
  return run;
}

void CheckMultipart(std::string_view in, uint8_t seed) {
  MultipartRun whole = RunMultipart(in, nullptr);
  Splitter splitter(seed);
  MultipartRun split = RunMultipart(in, &splitter);
  Check(whole.events == split.events);
  Check(whole.feed == split.feed && whole.finish == split.finish);
  size_t parts = 0;
  for (const std::string& e : whole.events) parts += e[0] == 'B';
  Check(parts <= static_cast<size_t>(http::kMaxParts));
}

void CheckDecoders(std::string_view in) {
  auto q = http::ParseQuery(in);
  if (q.ok()) {
    Check(q->size() <= http::kMaxQueryParams && in.size() <= http::kMaxQueryBytes);
    for (const auto& [name, value] : *q) {
      Check(name.size() + value.size() <= in.size());
      Check(name.find('\0') == std::string::npos && value.find('\0') == std::string::npos);
    }
  }
  auto p = http::PercentDecode(in);
  if (p.ok()) Check(p->size() <= in.size() && p->find('\0') == std::string::npos);
  auto b = http::MultipartBoundary(in);
  if (b.ok()) Check(!b->empty() && b->size() <= http::kMaxBoundary);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t seed = data[0];
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string_view body = CheckHead(in);
  CheckChunked(body, seed);
  CheckMultipart(body, seed);
  CheckDecoders(in);
  return 0;
}
