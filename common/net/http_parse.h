// The parsing layer of opsd's own HTTP/1.1 server (doc/design.md section 9): request heads
// (RFC 9112), chunked request bodies, query strings, percent-decoding and streaming
// multipart/form-data (RFC 7578). Bytes in, structs out: no sockets, no clock, no logging.
//
// Everything here reads bytes from the network and is fuzzed (tests/fuzz/fuzz_opsd_http.cc):
// every length is bounded by a constant below or by the caller's limit, nothing reads past the
// buffer it is given, nothing recurses, and memory held between calls is bounded whatever the
// input. Malformed input is an error value (an HTTP status or InvalidArgument), never a crash.
//
// Threading: the free functions are pure and thread-safe. ChunkedDecoder and MultipartParser hold
// the state of one request body: thread-compatible (the connection's loop thread drives them).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/base/status.h"

namespace depot::net::http {

// Limits. A head's own size limit (max_head) is the caller's.
inline constexpr size_t kMaxHeaders = 100;       // header lines in a head (more: 431)
inline constexpr int kMaxLeadingEmptyLines = 4;  // CRLFs tolerated before a request line
inline constexpr uint64_t kMaxContentLength = 1ULL << 62;
inline constexpr size_t kMaxChunkLine = 4096;          // chunk-size line with extensions + CRLF
inline constexpr int kMaxChunkSizeDigits = 15;         // hex digits of a chunk size
inline constexpr size_t kMaxTrailerBytes = 16 * 1024;  // the trailer section of a chunked body
inline constexpr size_t kMaxQueryParams = 64;
inline constexpr size_t kMaxQueryBytes = 8 * 1024;
inline constexpr size_t kMaxBoundary = 70;                // RFC 2046
inline constexpr size_t kMaxPartHeaderBytes = 16 * 1024;  // a part's header section + CRLFCRLF
inline constexpr int kMaxParts = 64;

// One parsed request head. Strings are copies: the head outlives the input buffer.
struct RequestHead {
  std::string method;     // as sent; a token (uppercase letters in practice)
  std::string target;     // request-target as sent, origin-form only (starts with '/')
  std::string path;       // target before the first '?', NOT percent-decoded
  std::string query;      // after the first '?', raw (may be empty)
  int version_minor = 1;  // HTTP/1.0 -> 0, HTTP/1.1 -> 1
  std::vector<std::pair<std::string, std::string>> headers;  // names lowercased, values trimmed
  // HTTP/1.1: on unless "Connection: close". HTTP/1.0: only with "Connection: keep-alive" (and
  // no "close"). Connection is a case-insensitive token list.
  bool keep_alive = true;
  bool chunked = false;                    // Transfer-Encoding: chunked
  std::optional<uint64_t> content_length;  // at most kMaxContentLength
  bool expect_continue = false;            // Expect: 100-continue on an HTTP/1.1 request

  // The value of the first header named `lower_name` (lowercase), or nullptr. The pointer lives
  // as long as this head is not modified.
  const std::string* Header(std::string_view lower_name) const;
};

struct HeadResult {
  enum class Kind { kNeedMore, kOk, kError } kind = Kind::kNeedMore;
  size_t consumed = 0;  // kOk: bytes of the head including the final empty line; 0 otherwise
  int status = 0;       // kError: 400, 413, 417, 431, 501 or 505
  std::string message;  // kError: a short reason for the client
};

// Parses one request head at the start of `buf` into *out (reset first; unspecified after an
// error). Lines end in CRLF; a bare LF is accepted too. Up to kMaxLeadingEmptyLines empty lines
// before the request line are skipped (RFC 9112 section 2.2) and counted in `consumed`.
//
// kNeedMore while buf holds no complete head and buf.size() <= max_head. Errors:
//   413  more than max_head bytes without the end of a head, or a complete head over max_head;
//   431  more than kMaxHeaders header lines;
//   505  an HTTP version other than 1.0 and 1.1 (well-formed "HTTP/d.d" but unsupported);
//   501  a Transfer-Encoding other than exactly "chunked";
//   417  an Expect other than 100-continue;
//   400  anything else malformed: the request line (method not a token, target not origin-form
//        or with bytes outside 0x21-0x7E or '#', version syntax), a header name that is not a
//        token or has whitespace before ':', obs-fold (a line starting with SP/HT), control
//        characters in a value, a bad or too large Content-Length, differing Content-Lengths,
//        both Content-Length and Transfer-Encoding, Transfer-Encoding on HTTP/1.0, and (RFC 9112
//        section 3.2) an HTTP/1.1 request without Host or any request with two Host lines.
// Errors found while the head is still incomplete (431) are reported at once.
HeadResult ParseRequestHead(std::string_view buf, size_t max_head, RequestHead* out);

// Incremental decoder of a chunked body (RFC 9112 section 7.1). chunk-size is hex, at most
// kMaxChunkSizeDigits digits; chunk extensions are checked for control bytes and skipped, the
// size line (extensions and CRLF included) is at most kMaxChunkLine bytes; trailer fields are
// skipped, the trailer section is at most kMaxTrailerBytes. Lines must end in CRLF exactly (a
// bare LF inside chunked framing is an error: framing is where request smuggling lives).
class ChunkedDecoder {
 public:
  enum class State { kMore, kDone, kError };

  // Consumes from `in` as much as it can and appends decoded body bytes to *out, at most
  // `max_out` bytes per call so a caller can bound memory. Sets *consumed (<= in.size()).
  //   kMore:  wants more input. *consumed < in.size() only when max_out bytes were appended and
  //           the next input byte is body data: drain *out and call again with the rest.
  //   kDone:  the last chunk and its trailer section are complete. The bytes after them are not
  //           consumed (they belong to the next pipelined request); later calls consume nothing.
  //   kError: malformed input; error() says why. Sticky.
  State Feed(std::string_view in, size_t* consumed, std::string* out, size_t max_out);
  const std::string& error() const { return error_; }

 private:
  enum class Phase {
    kSize,       // hex digits of the chunk size
    kSizeBws,    // whitespace after the digits
    kExtension,  // after ';', until CR
    kSizeLf,     // CR seen at the end of the size line
    kData,       // remaining_ bytes of chunk data
    kDataCr,     // CRLF after the data
    kDataLf,
    kTrailerStart,  // start of a trailer line, or of the final CRLF
    kTrailerLine,
    kTrailerLf,
    kEndLf,  // LF of the final CRLF
    kDone,
    kError,
  };
  State Fail(const char* message);

  Phase phase_ = Phase::kSize;
  uint64_t remaining_ = 0;  // the chunk size while parsing it, then the data left in the chunk
  int digits_ = 0;
  size_t line_bytes_ = 0;     // of the current size line
  size_t trailer_bytes_ = 0;  // of the trailer section
  std::string error_;
};

using QueryParams = std::vector<std::pair<std::string, std::string>>;

// application/x-www-form-urlencoded query: "a=1&b=x%20y&c" -> {a,1},{b,"x y"},{c,""}, in order,
// duplicates kept. '+' is a space; names and values are percent-decoded; empty elements ("a&&b")
// are skipped. InvalidArgument on a bad escape, a decoded NUL byte, more than kMaxQueryParams
// parameters or a query over kMaxQueryBytes.
Result<QueryParams> ParseQuery(std::string_view query);

// Percent-decodes a path segment ('+' stays '+'). InvalidArgument on a bad escape (not '%' and
// two hex digits) or a decoded NUL byte.
Result<std::string> PercentDecode(std::string_view s);

// The boundary of a "multipart/form-data; boundary=..." Content-Type (type and parameter names
// case-insensitive; the value quoted or not). InvalidArgument when the type is something else, a
// parameter is malformed or repeated, or the boundary is missing or not RFC 2046 (1..70 of
// DIGIT ALPHA '()+_,-./:=? and space, not ending in a space).
Result<std::string> MultipartBoundary(std::string_view content_type);

// Streaming multipart/form-data parser: feed the body in pieces of any size. Part bodies are
// never buffered: at most boundary.size() + 3 bytes (a possible start of the delimiter CRLF "--"
// boundary) are held back between calls, everything else goes to on_data as it arrives. A part's
// header section is buffered, at most kMaxPartHeaderBytes.
//
// The preamble (bytes before the first delimiter) is ignored, and the first delimiter may open
// the body without a CRLF before it. A delimiter may be followed by spaces/tabs, then CRLF (a
// part follows) or "--" (the close delimiter; everything after it is ignored).
class MultipartParser {
 public:
  // From the part's Content-Disposition (name, filename) and Content-Type (raw, may be empty).
  struct Part {
    std::string name;
    std::string filename;
    std::string content_type;
  };
  // Any callback may be empty. A non-OK status from one stops parsing: Feed returns it and so do
  // all later calls. on_part_end is called once the delimiter line after the part's body has
  // been read in full; a caller that commits on it must still check Finish().
  struct Callbacks {
    std::function<Status(const Part&)> on_part_begin;
    std::function<Status(std::string_view)> on_data;  // body bytes of the current part
    std::function<Status()> on_part_end;
  };

  // An invalid boundary (see MultipartBoundary) makes every Feed and Finish InvalidArgument.
  MultipartParser(std::string boundary, Callbacks cb);

  // Feeds the next piece of the body. InvalidArgument on malformed input: a delimiter not
  // followed by padding + CRLF or "--", part headers over kMaxPartHeaderBytes, a malformed or
  // folded part header, a part without "Content-Disposition: form-data" with a name, more than
  // kMaxParts parts. After an error every call returns the same status.
  Status Feed(std::string_view data);

  // Call at the end of the body: InvalidArgument unless the close delimiter was seen.
  Status Finish();

 private:
  enum class Phase {
    kPreamble,    // looking for the first delimiter, discarding
    kAfterDelim,  // just after a delimiter
    kCloseDash,   // after "-": the second '-' of a close delimiter
    kPadding,     // transport padding after a delimiter
    kDelimLf,     // LF ending the delimiter line
    kHeaders,     // a part's header section
    kBody,        // a part's body, looking for the next delimiter
    kEpilogue,    // after the close delimiter: everything is ignored
    kError,
  };
  Status Scan(std::string_view* data, bool emit, bool* found);
  Status Emit(std::string_view bytes);
  Status StepDelimiterLine(char c);
  Status StepHeaders(std::string_view* data);
  Status EndPart();
  Status Fail(Status s);

  std::string delimiter_;  // CRLF "--" boundary
  Callbacks cb_;
  Phase phase_ = Phase::kPreamble;
  std::string pending_;  // held-back bytes: always a proper prefix of delimiter_
  std::string headers_;  // the header section of the part being read
  size_t padding_ = 0;
  int parts_ = 0;
  bool in_part_ = false;  // on_part_begin called, on_part_end not yet
  Status error_;
};

}  // namespace depot::net::http
