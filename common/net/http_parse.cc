#include "common/net/http_parse.h"

#include <algorithm>

namespace depot::net::http {
namespace {

constexpr size_t kNpos = std::string_view::npos;
constexpr size_t kMaxParams = 32;    // parameters of one Content-Type / Content-Disposition
constexpr size_t kMaxPadding = 256;  // transport padding after a multipart delimiter
constexpr size_t kMaxContentType = 1024;

bool IsAlnum(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// RFC 9110 tchar.
bool IsTChar(unsigned char c) {
  return IsAlnum(c) || std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != kNpos;
}

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!IsTChar(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

bool IsOws(char c) { return c == ' ' || c == '\t'; }

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && IsOws(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsOws(s.back())) s.remove_suffix(1);
  return s;
}

char LowerAscii(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

std::string LowerAscii(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = LowerAscii(c);
  return out;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (LowerAscii(a[i]) != LowerAscii(b[i])) return false;
  }
  return true;
}

// A field value byte: HTAB, SP, VCHAR or obs-text. No CR, LF, NUL or other control bytes.
bool IsFieldByte(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7F); }

bool IsFieldValue(std::string_view s) {
  for (char c : s) {
    if (!IsFieldByte(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Calls f on each non-empty, trimmed element of a comma-separated list (RFC 9110 section 5.6.1).
template <typename F>
void ForEachListElement(std::string_view s, F f) {
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    if (comma == kNpos) comma = s.size();
    std::string_view e = TrimOws(s.substr(start, comma - start));
    if (!e.empty()) f(e);
    start = comma + 1;
  }
}

HeadResult HeadError(int status, const char* message) {
  HeadResult r;
  r.kind = HeadResult::Kind::kError;
  r.status = status;
  r.message = message;
  return r;
}

// Strict 1*DIGIT. 19 digits cannot overflow a uint64_t.
std::optional<uint64_t> ParseDigits(std::string_view s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

// "method SP request-target SP HTTP-version".
HeadResult ParseRequestLine(std::string_view line, RequestHead* h) {
  size_t sp1 = line.find(' ');
  if (sp1 == kNpos) return HeadError(400, "malformed request line");
  size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == kNpos) return HeadError(400, "malformed request line");
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (!IsToken(method)) return HeadError(400, "malformed method");
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || !digit(version[5]) ||
      version[6] != '.' || !digit(version[7])) {
    return HeadError(400, "malformed HTTP version");
  }
  if (version[5] != '1' || (version[7] != '0' && version[7] != '1')) {
    return HeadError(505, "HTTP version not supported");
  }
  if (target.empty()) return HeadError(400, "malformed request line");
  for (char c : target) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7F || c == '#') {
      return HeadError(400, "bad character in the request target");
    }
  }
  if (target[0] != '/') return HeadError(400, "request target must be an absolute path");
  h->method = std::string(method);
  h->target = std::string(target);
  size_t q = target.find('?');
  h->path = std::string(target.substr(0, q));
  if (q != kNpos) h->query = std::string(target.substr(q + 1));
  h->version_minor = version[7] - '0';
  return HeadResult{HeadResult::Kind::kOk, 0, 0, {}};
}

HeadResult ParseFieldLine(std::string_view line, RequestHead* h) {
  if (IsOws(line[0])) return HeadError(400, "obsolete line folding");
  size_t colon = line.find(':');
  if (colon == kNpos) return HeadError(400, "header line without ':'");
  std::string_view name = line.substr(0, colon);
  if (name.empty()) return HeadError(400, "empty header name");
  if (IsOws(name.back())) return HeadError(400, "whitespace before ':' in a header");
  if (!IsToken(name)) return HeadError(400, "malformed header name");
  std::string_view value = TrimOws(line.substr(colon + 1));
  if (!IsFieldValue(value)) return HeadError(400, "control character in a header value");
  h->headers.emplace_back(LowerAscii(name), std::string(value));
  return HeadResult{HeadResult::Kind::kOk, 0, 0, {}};
}

// The header fields that decide framing and connection handling.
HeadResult InterpretFields(RequestHead* h) {
  bool close = false;
  bool keep_alive = false;
  bool te_seen = false;
  size_t te_codings = 0;
  bool te_all_chunked = true;
  int hosts = 0;
  for (const auto& [name, value] : h->headers) {
    if (name == "content-length") {
      // One strict number; a list ("42, 42") is refused rather than reconciled.
      std::optional<uint64_t> n = ParseDigits(value);
      if (!n) return HeadError(400, "malformed Content-Length");
      if (*n > kMaxContentLength) return HeadError(400, "Content-Length too large");
      if (h->content_length && *h->content_length != *n) {
        return HeadError(400, "conflicting Content-Length headers");
      }
      h->content_length = n;
    } else if (name == "transfer-encoding") {
      te_seen = true;
      ForEachListElement(value, [&](std::string_view coding) {
        ++te_codings;
        if (!EqualsIgnoreCase(coding, "chunked")) te_all_chunked = false;
      });
    } else if (name == "connection") {
      ForEachListElement(value, [&](std::string_view option) {
        if (EqualsIgnoreCase(option, "close")) close = true;
        if (EqualsIgnoreCase(option, "keep-alive")) keep_alive = true;
      });
    } else if (name == "expect") {
      if (!EqualsIgnoreCase(value, "100-continue")) {
        return HeadError(417, "only Expect: 100-continue is supported");
      }
      // RFC 9110 section 10.1.1: a 100-continue from an HTTP/1.0 client is ignored.
      h->expect_continue = h->version_minor == 1;
    } else if (name == "host") {
      ++hosts;
    }
  }
  if (hosts > 1) return HeadError(400, "more than one Host header");
  if (hosts == 0 && h->version_minor == 1) return HeadError(400, "missing Host header");
  if (te_seen) {
    // Both framings in one message is the classic smuggling vector: refuse, never pick one.
    if (h->content_length) return HeadError(400, "both Content-Length and Transfer-Encoding");
    if (h->version_minor == 0) return HeadError(400, "Transfer-Encoding in an HTTP/1.0 request");
    if (te_codings == 0) return HeadError(400, "empty Transfer-Encoding");
    if (te_codings != 1 || !te_all_chunked) {
      return HeadError(501, "only Transfer-Encoding: chunked is supported");
    }
    h->chunked = true;
  }
  h->keep_alive = h->version_minor == 1 ? !close : keep_alive && !close;
  return HeadResult{HeadResult::Kind::kOk, 0, 0, {}};
}

// Percent-decodes `s` onto *out.
Status DecodeInto(std::string_view s, bool plus_is_space, std::string* out) {
  out->reserve(out->size() + s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '+' && plus_is_space) {
      out->push_back(' ');
    } else if (c == '%') {
      if (s.size() - i < 3) return Status::InvalidArgument("truncated percent escape");
      int hi = HexValue(s[i + 1]);
      int lo = HexValue(s[i + 2]);
      if (hi < 0 || lo < 0) return Status::InvalidArgument("bad percent escape");
      if (hi == 0 && lo == 0) return Status::InvalidArgument("percent-encoded NUL byte");
      out->push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '\0') {
      // Raw or encoded, a NUL never reaches a caller (C APIs would cut the value there).
      return Status::InvalidArgument("NUL byte");
    } else {
      out->push_back(c);
    }
  }
  return Status::OK();
}

// `*( OWS ";" OWS name "=" value )` with value a token-ish run or a quoted-string (RFC 9110
// section 5.6.6); names lowercased, quoted-pairs unescaped. Repeated names are refused: two
// boundaries or two filenames would let two parsers disagree.
Status ParseParameters(std::string_view s, std::vector<std::pair<std::string, std::string>>* out) {
  size_t i = 0;
  auto skip_ows = [&] {
    while (i < s.size() && IsOws(s[i])) ++i;
  };
  for (;;) {
    skip_ows();
    if (i == s.size()) return Status::OK();
    if (s[i] != ';') return Status::InvalidArgument("malformed parameter list");
    ++i;
    skip_ows();
    if (i == s.size()) return Status::OK();  // a trailing ';'
    size_t name_start = i;
    while (i < s.size() && IsTChar(static_cast<unsigned char>(s[i]))) ++i;
    std::string name = LowerAscii(s.substr(name_start, i - name_start));
    skip_ows();
    if (name.empty() || i == s.size() || s[i] != '=') {
      return Status::InvalidArgument("malformed parameter");
    }
    ++i;
    skip_ows();
    std::string value;
    if (i < s.size() && s[i] == '"') {
      ++i;
      bool closed = false;
      while (i < s.size()) {
        char c = s[i++];
        if (c == '"') {
          closed = true;
          break;
        }
        if (c == '\\') {
          if (i == s.size()) break;
          c = s[i++];
        }
        if (!IsFieldByte(static_cast<unsigned char>(c))) {
          return Status::InvalidArgument("control character in a parameter");
        }
        value.push_back(c);
      }
      if (!closed) return Status::InvalidArgument("unterminated quoted string");
    } else {
      size_t value_start = i;
      while (i < s.size() && s[i] != ';' && !IsOws(s[i])) {
        char c = s[i];
        if (c == '"' || !IsFieldByte(static_cast<unsigned char>(c))) {
          return Status::InvalidArgument("bad character in a parameter");
        }
        ++i;
      }
      value = std::string(s.substr(value_start, i - value_start));
    }
    if (out->size() == kMaxParams) return Status::InvalidArgument("too many parameters");
    for (const auto& p : *out) {
      if (p.first == name) return Status::InvalidArgument("repeated parameter", name);
    }
    out->emplace_back(std::move(name), std::move(value));
  }
}

// RFC 2046 section 5.1.1: 1..70 bchars, not ending in a space.
bool IsValidBoundary(std::string_view b) {
  if (b.empty() || b.size() > kMaxBoundary || b.back() == ' ') return false;
  for (char c : b) {
    auto u = static_cast<unsigned char>(c);
    if (!IsAlnum(u) && std::string_view("'()+_,-./:=? ").find(c) == kNpos) return false;
  }
  return true;
}

// The part's Content-Disposition: "form-data" with a name and maybe a filename.
Status ParseContentDisposition(std::string_view value, MultipartParser::Part* part) {
  size_t semi = value.find(';');
  if (!EqualsIgnoreCase(TrimOws(value.substr(0, semi)), "form-data")) {
    return Status::InvalidArgument("part disposition is not form-data");
  }
  std::vector<std::pair<std::string, std::string>> params;
  if (semi != kNpos) DEPOT_RETURN_IF_ERROR(ParseParameters(value.substr(semi), &params));
  bool named = false;
  for (auto& [name, v] : params) {
    if (name == "name") {
      part->name = std::move(v);
      named = true;
    } else if (name == "filename") {
      part->filename = std::move(v);
    }
  }
  if (!named) return Status::InvalidArgument("form-data part without a name");
  return Status::OK();
}

// `block` is a part's header section, each line ending in CRLF, the last line empty.
Status ParsePartHeaders(std::string_view block, MultipartParser::Part* part) {
  bool have_disposition = false;
  size_t pos = 0;
  while (pos < block.size()) {
    size_t eol = block.find("\r\n", pos);
    if (eol == kNpos) return Status::InvalidArgument("part header without CRLF");
    std::string_view line = block.substr(pos, eol - pos);
    pos = eol + 2;
    if (line.empty()) break;
    if (IsOws(line[0])) return Status::InvalidArgument("folded part header");
    size_t colon = line.find(':');
    if (colon == kNpos) return Status::InvalidArgument("part header without ':'");
    std::string_view name = line.substr(0, colon);
    if (!IsToken(name)) return Status::InvalidArgument("malformed part header name");
    std::string_view value = TrimOws(line.substr(colon + 1));
    if (!IsFieldValue(value)) return Status::InvalidArgument("control character in a part header");
    if (EqualsIgnoreCase(name, "content-disposition")) {
      if (have_disposition) return Status::InvalidArgument("two Content-Disposition in a part");
      have_disposition = true;
      DEPOT_RETURN_IF_ERROR(ParseContentDisposition(value, part));
    } else if (EqualsIgnoreCase(name, "content-type")) {
      part->content_type = std::string(value);
    }
  }
  if (!have_disposition) return Status::InvalidArgument("part without Content-Disposition");
  return Status::OK();
}

}  // namespace

const std::string* RequestHead::Header(std::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return &value;
  }
  return nullptr;
}

HeadResult ParseRequestHead(std::string_view buf, size_t max_head, RequestHead* out) {
  *out = RequestHead();
  // Only the first max_head bytes can hold an acceptable head: never look further.
  const std::string_view w = buf.substr(0, std::min(buf.size(), max_head));
  auto need_more = [&] {
    return buf.size() > max_head ? HeadError(413, "request head too large") : HeadResult{};
  };
  size_t pos = 0;
  for (int i = 0; i < kMaxLeadingEmptyLines; ++i) {
    if (w.substr(pos, 2) == "\r\n") {
      pos += 2;
    } else if (w.substr(pos, 1) == "\n") {
      pos += 1;
    } else {
      break;
    }
  }
  // Find the lines first, then parse: a head is judged only once it is complete (except for
  // too many lines, which no more bytes can fix).
  std::string_view request_line;
  std::vector<std::string_view> field_lines;
  bool have_request_line = false;
  size_t end = 0;
  for (;;) {
    size_t nl = w.find('\n', pos);
    if (nl == kNpos) return need_more();
    std::string_view line = w.substr(pos, nl - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos = nl + 1;
    if (!have_request_line) {
      request_line = line;
      have_request_line = true;
      continue;
    }
    if (line.empty()) {
      end = pos;
      break;
    }
    if (field_lines.size() == kMaxHeaders) return HeadError(431, "too many header fields");
    field_lines.push_back(line);
  }
  if (request_line.empty()) return HeadError(400, "empty request line");
  HeadResult r = ParseRequestLine(request_line, out);
  if (r.kind == HeadResult::Kind::kError) return r;
  out->headers.reserve(field_lines.size());
  for (std::string_view line : field_lines) {
    r = ParseFieldLine(line, out);
    if (r.kind == HeadResult::Kind::kError) return r;
  }
  r = InterpretFields(out);
  if (r.kind == HeadResult::Kind::kError) return r;
  r.consumed = end;
  return r;
}

// ---------------------------------------------------------------------------------------------
// ChunkedDecoder

ChunkedDecoder::State ChunkedDecoder::Fail(const char* message) {
  phase_ = Phase::kError;
  error_ = message;
  return State::kError;
}

ChunkedDecoder::State ChunkedDecoder::Feed(std::string_view in, size_t* consumed, std::string* out,
                                           size_t max_out) {
  *consumed = 0;
  if (phase_ == Phase::kDone) return State::kDone;
  if (phase_ == Phase::kError) return State::kError;
  size_t budget = max_out;
  size_t i = 0;
  while (i < in.size()) {
    if (phase_ == Phase::kData) {
      if (budget == 0) break;
      const size_t n =
          static_cast<size_t>(std::min<uint64_t>(remaining_, std::min(in.size() - i, budget)));
      out->append(in.data() + i, n);
      i += n;
      budget -= n;
      remaining_ -= n;
      if (remaining_ == 0) phase_ = Phase::kDataCr;
      continue;
    }
    const char c = in[i++];
    *consumed = i;
    switch (phase_) {
      case Phase::kSize:
      case Phase::kSizeBws:
      case Phase::kExtension:
      case Phase::kSizeLf:
        if (++line_bytes_ > kMaxChunkLine) return Fail("chunk-size line too long");
        break;
      case Phase::kTrailerStart:
      case Phase::kTrailerLine:
      case Phase::kTrailerLf:
      case Phase::kEndLf:
        if (++trailer_bytes_ > kMaxTrailerBytes) return Fail("chunked trailer section too long");
        break;
      default:
        break;
    }
    switch (phase_) {
      case Phase::kSize: {
        int v = HexValue(c);
        if (v >= 0) {
          if (digits_ == kMaxChunkSizeDigits) return Fail("chunk size has too many digits");
          remaining_ = remaining_ * 16 + static_cast<uint64_t>(v);
          ++digits_;
        } else if (digits_ == 0) {
          return Fail("missing chunk size");
        } else if (IsOws(c)) {
          phase_ = Phase::kSizeBws;
        } else if (c == ';') {
          phase_ = Phase::kExtension;
        } else if (c == '\r') {
          phase_ = Phase::kSizeLf;
        } else {
          return Fail("malformed chunk size");
        }
        break;
      }
      case Phase::kSizeBws:
        if (c == ';') {
          phase_ = Phase::kExtension;
        } else if (c == '\r') {
          phase_ = Phase::kSizeLf;
        } else if (!IsOws(c)) {
          return Fail("malformed chunk size");
        }
        break;
      case Phase::kExtension:
        if (c == '\r') {
          phase_ = Phase::kSizeLf;
        } else if (!IsFieldByte(static_cast<unsigned char>(c))) {
          return Fail("control character in a chunk extension");
        }
        break;
      case Phase::kSizeLf:
        if (c != '\n') return Fail("chunk-size line not ended by CRLF");
        line_bytes_ = 0;
        digits_ = 0;
        if (remaining_ == 0) {
          phase_ = Phase::kTrailerStart;
        } else {
          phase_ = Phase::kData;
        }
        break;
      case Phase::kDataCr:
        if (c != '\r') return Fail("chunk data not followed by CRLF");
        phase_ = Phase::kDataLf;
        break;
      case Phase::kDataLf:
        if (c != '\n') return Fail("chunk data not followed by CRLF");
        phase_ = Phase::kSize;
        break;
      case Phase::kTrailerStart:
        if (c == '\r') {
          phase_ = Phase::kEndLf;
        } else if (IsTChar(static_cast<unsigned char>(c))) {
          phase_ = Phase::kTrailerLine;
        } else {
          return Fail("malformed trailer field");
        }
        break;
      case Phase::kTrailerLine:
        if (c == '\r') {
          phase_ = Phase::kTrailerLf;
        } else if (!IsFieldByte(static_cast<unsigned char>(c))) {
          return Fail("control character in a trailer field");
        }
        break;
      case Phase::kTrailerLf:
        if (c != '\n') return Fail("trailer field not ended by CRLF");
        phase_ = Phase::kTrailerStart;
        break;
      case Phase::kEndLf:
        if (c != '\n') return Fail("chunked body not ended by CRLF");
        phase_ = Phase::kDone;
        return State::kDone;
      case Phase::kData:
      case Phase::kDone:
      case Phase::kError:
        return Fail("internal: unexpected chunked decoder phase");
    }
  }
  *consumed = i;
  return State::kMore;
}

// ---------------------------------------------------------------------------------------------
// Query strings and percent-decoding

Result<QueryParams> ParseQuery(std::string_view query) {
  if (query.size() > kMaxQueryBytes) return Status::InvalidArgument("query string too long");
  QueryParams params;
  size_t start = 0;
  while (start <= query.size()) {
    size_t amp = query.find('&', start);
    if (amp == kNpos) amp = query.size();
    std::string_view piece = query.substr(start, amp - start);
    start = amp + 1;
    if (piece.empty()) continue;
    if (params.size() == kMaxQueryParams) {
      return Status::InvalidArgument("too many query parameters");
    }
    size_t eq = piece.find('=');
    std::string name;
    std::string value;
    DEPOT_RETURN_IF_ERROR(DecodeInto(piece.substr(0, eq), /*plus_is_space=*/true, &name));
    if (eq != kNpos) {
      DEPOT_RETURN_IF_ERROR(DecodeInto(piece.substr(eq + 1), /*plus_is_space=*/true, &value));
    }
    params.emplace_back(std::move(name), std::move(value));
  }
  return params;
}

Result<std::string> PercentDecode(std::string_view s) {
  std::string out;
  DEPOT_RETURN_IF_ERROR(DecodeInto(s, /*plus_is_space=*/false, &out));
  return out;
}

// ---------------------------------------------------------------------------------------------
// multipart/form-data

Result<std::string> MultipartBoundary(std::string_view content_type) {
  if (content_type.size() > kMaxContentType) {
    return Status::InvalidArgument("Content-Type too long");
  }
  size_t semi = content_type.find(';');
  if (!EqualsIgnoreCase(TrimOws(content_type.substr(0, semi)), "multipart/form-data")) {
    return Status::InvalidArgument("Content-Type is not multipart/form-data");
  }
  std::vector<std::pair<std::string, std::string>> params;
  if (semi != kNpos) DEPOT_RETURN_IF_ERROR(ParseParameters(content_type.substr(semi), &params));
  for (auto& [name, value] : params) {
    if (name != "boundary") continue;
    if (!IsValidBoundary(value)) return Status::InvalidArgument("invalid multipart boundary");
    return std::move(value);
  }
  return Status::InvalidArgument("multipart/form-data without a boundary");
}

MultipartParser::MultipartParser(std::string boundary, Callbacks cb) : cb_(std::move(cb)) {
  if (!IsValidBoundary(boundary)) {
    error_ = Status::InvalidArgument("invalid multipart boundary");
    phase_ = Phase::kError;
    return;
  }
  delimiter_ = "\r\n--" + boundary;
  // A CRLF is taken as read before the body, so a delimiter opening the body (no CRLF before
  // it) is found by the same search as every other one.
  pending_ = "\r\n";
}

Status MultipartParser::Fail(Status s) {
  error_ = s;
  phase_ = Phase::kError;
  return s;
}

Status MultipartParser::Emit(std::string_view bytes) {
  if (bytes.empty() || !cb_.on_data) return Status::OK();
  return cb_.on_data(bytes);
}

Status MultipartParser::EndPart() {
  in_part_ = false;
  if (!cb_.on_part_end) return Status::OK();
  return cb_.on_part_end();
}

// Looks for the delimiter in pending_ + *data. Bytes that cannot be part of it are passed to
// on_data (emit) or dropped (the preamble); the longest tail that could still become it is kept in
// pending_. On a match, *found is set and *data is advanced past the delimiter.
Status MultipartParser::Scan(std::string_view* data, bool emit, bool* found) {
  const std::string_view d = delimiter_;
  const std::string_view in = *data;
  const size_t p = pending_.size();
  // A delimiter starting in the held-back bytes (pending_ is shorter than d).
  for (size_t k = 0; k < p; ++k) {
    const size_t n = std::min(p - k + in.size(), d.size());
    bool match = true;
    for (size_t j = 0; j < n && match; ++j) {
      char c = k + j < p ? pending_[k + j] : in[k + j - p];
      match = c == d[j];
    }
    if (!match) continue;
    if (emit) DEPOT_RETURN_IF_ERROR(Emit(std::string_view(pending_).substr(0, k)));
    if (n == d.size()) {
      data->remove_prefix(d.size() - (p - k));
      pending_.clear();
      *found = true;
      return Status::OK();
    }
    // The input ran out inside a possible delimiter: hold it all back.
    pending_.erase(0, k);
    pending_.append(in);
    data->remove_prefix(in.size());
    return Status::OK();
  }
  if (emit) DEPOT_RETURN_IF_ERROR(Emit(pending_));
  pending_.clear();
  size_t pos = in.find(d);
  if (pos != kNpos) {
    if (emit) DEPOT_RETURN_IF_ERROR(Emit(in.substr(0, pos)));
    data->remove_prefix(pos + d.size());
    *found = true;
    return Status::OK();
  }
  // The longest tail of the input that is a proper prefix of d (it starts with CR).
  size_t keep = 0;
  for (size_t start = in.size() > d.size() - 1 ? in.size() - (d.size() - 1) : 0; start < in.size();
       ++start) {
    if (in[start] != '\r') continue;
    std::string_view tail = in.substr(start);
    if (d.substr(0, tail.size()) == tail) {
      keep = tail.size();
      break;
    }
  }
  if (emit) DEPOT_RETURN_IF_ERROR(Emit(in.substr(0, in.size() - keep)));
  pending_.assign(in.substr(in.size() - keep));
  data->remove_prefix(in.size());
  return Status::OK();
}

// One byte of what follows a delimiter: transport padding then CRLF, or "--".
Status MultipartParser::StepDelimiterLine(char c) {
  switch (phase_) {
    case Phase::kAfterDelim:
      if (c == '-') {
        phase_ = Phase::kCloseDash;
        return Status::OK();
      }
      padding_ = 0;
      [[fallthrough]];
    case Phase::kPadding:
      if (IsOws(c)) {
        if (++padding_ > kMaxPadding) return Status::InvalidArgument("multipart padding too long");
        phase_ = Phase::kPadding;
        return Status::OK();
      }
      if (c == '\r') {
        phase_ = Phase::kDelimLf;
        return Status::OK();
      }
      return Status::InvalidArgument("multipart boundary not followed by CRLF");
    case Phase::kCloseDash:
      if (c != '-') return Status::InvalidArgument("multipart boundary followed by a single '-'");
      phase_ = Phase::kEpilogue;
      return in_part_ ? EndPart() : Status::OK();
    case Phase::kDelimLf:
      if (c != '\n') return Status::InvalidArgument("multipart boundary not followed by CRLF");
      phase_ = Phase::kHeaders;
      headers_.clear();
      return in_part_ ? EndPart() : Status::OK();
    default:
      return Status::Internal("multipart parser in an unexpected phase");
  }
}

Status MultipartParser::StepHeaders(std::string_view* data) {
  const size_t old = headers_.size();
  const size_t take = std::min(data->size(), kMaxPartHeaderBytes - old);
  headers_.append(data->data(), take);
  size_t end = kNpos;
  if (headers_.size() >= 2 && headers_[0] == '\r' && headers_[1] == '\n') {
    end = 2;  // no header lines at all (refused below: there is no Content-Disposition)
  } else {
    size_t p = headers_.find("\r\n\r\n", old >= 3 ? old - 3 : 0);
    if (p != kNpos) end = p + 4;
  }
  if (end == kNpos) {
    if (headers_.size() >= kMaxPartHeaderBytes) {
      return Status::InvalidArgument("multipart part headers too long");
    }
    data->remove_prefix(take);
    return Status::OK();
  }
  // end > old: the end would have been found by the previous call otherwise.
  data->remove_prefix(end - old);
  Part part;
  DEPOT_RETURN_IF_ERROR(ParsePartHeaders(std::string_view(headers_).substr(0, end), &part));
  headers_ = std::string();
  if (++parts_ > kMaxParts) return Status::InvalidArgument("too many multipart parts");
  in_part_ = true;
  phase_ = Phase::kBody;
  if (!cb_.on_part_begin) return Status::OK();
  return cb_.on_part_begin(part);
}

Status MultipartParser::Feed(std::string_view data) {
  for (;;) {
    switch (phase_) {
      case Phase::kError:
        return error_;
      case Phase::kEpilogue:
        return Status::OK();
      case Phase::kPreamble:
      case Phase::kBody: {
        bool found = false;
        Status s = Scan(&data, /*emit=*/phase_ == Phase::kBody, &found);
        if (!s.ok()) return Fail(std::move(s));
        if (!found) return Status::OK();  // all of data is used up or held back
        phase_ = Phase::kAfterDelim;
        break;
      }
      case Phase::kHeaders: {
        if (data.empty()) return Status::OK();
        Status s = StepHeaders(&data);
        if (!s.ok()) return Fail(std::move(s));
        break;
      }
      case Phase::kAfterDelim:
      case Phase::kCloseDash:
      case Phase::kPadding:
      case Phase::kDelimLf: {
        if (data.empty()) return Status::OK();
        char c = data[0];
        data.remove_prefix(1);
        Status s = StepDelimiterLine(c);
        if (!s.ok()) return Fail(std::move(s));
        break;
      }
    }
  }
}

Status MultipartParser::Finish() {
  if (phase_ == Phase::kError) return error_;
  if (phase_ != Phase::kEpilogue) {
    return Fail(Status::InvalidArgument("multipart body ends before its close delimiter"));
  }
  return Status::OK();
}

}  // namespace depot::net::http
