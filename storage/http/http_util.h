// Pieces of storaged's HTTP reads (DESIGN.md section 8, doc/http.md) that need no socket: URL
// and query parsing, Range, ETag and dates, content types, Content-Disposition and the
// FastDFS-compatible anti-leech token. Pure functions, unit-tested in http_util_test.cc.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/status.h"
#include "common/proto/file_id.h"

namespace depot::storage::http {

// A request target split into the file ID and the query parameters we know.
struct Target {
  proto::FileId id;
  std::string token;     // ?token=
  int64_t ts = -1;       // ?ts= (unix seconds), -1 when absent
  std::string filename;  // ?filename= (percent-decoded)
  bool hop = false;      // ?depot_hop=1: another member sent the client here (never send it on)
  std::string query;     // the query as received (without '?')
};
// Parses "/<group>/M<NN>/<XX>/<YY>/<name>[?query]". Strict: the path is taken byte for byte (a
// file ID never needs percent-encoding, so '%' in the path is refused), and anything that is not
// a valid file ID of `group` (when given) is InvalidArgument - never a path on disk.
Result<Target> ParseTarget(std::string_view uri, std::string_view group);

// One inclusive byte range of a file.
struct ByteRange {
  uint64_t first = 0;
  uint64_t last = 0;
  uint64_t size() const { return last - first + 1; }
};
// The ranges asked for by a Range header for a file of `size` bytes (RFC 9110 section 14):
//   - no header, or one that is not a "bytes=" range set: empty (serve the whole file, 200);
//   - a valid set: the satisfiable ranges, in the order asked (206);
//   - a valid set with no satisfiable range (bytes=-0, a start past the end): OutOfRange... here
//     reported as ResourceExhausted (416);
//   - more than `max_ranges` ranges: InvalidArgument (416 too; a cheap denial of service).
Result<std::vector<ByteRange>> ParseRange(std::string_view header, uint64_t size,
                                          size_t max_ranges);

// The ETag of a stored file: "<mtime hex>-<size hex>", nginx's form. A stored file's mtime is the
// creation time in its file ID on every member, so storaged and nginx (serving straight from
// disk) give the same tag for the same file ID, whichever member answers.
std::string ETagFor(int64_t mtime, uint64_t size);
// True when an If-None-Match header matches `etag` ("*" or a list of tags, weak ones too).
bool IfNoneMatchHits(std::string_view header, const std::string& etag);

// RFC 9110 IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") and its parser (nullopt when bad).
std::string HttpDate(int64_t unix_seconds);
std::optional<int64_t> ParseHttpDate(std::string_view text);

// Content types by extension, loaded from a mime.types file ("type ext ext ..." lines, '#'
// comments; also the nginx "types { type ext; }" form).
class MimeTable {
 public:
  static Result<MimeTable> Load(const std::string& path);
  static MimeTable Parse(std::string_view text);
  // "application/octet-stream" for an unknown or empty extension.
  const std::string& TypeFor(std::string_view ext) const;
  size_t size() const { return types_.size(); }

 private:
  std::map<std::string, std::string> types_;  // lower-case extension -> type
  std::string fallback_ = "application/octet-stream";
};

// `attachment` with a download name: an ASCII fallback (unsafe bytes replaced by '_') and the
// exact name as RFC 5987 UTF-8 percent-encoding.
std::string ContentDisposition(std::string_view filename);

// The FastDFS anti-leech token: lowercase hex MD5 of (file ID without the group + secret + ts).
std::string MakeToken(std::string_view remote_name, std::string_view secret, int64_t ts);
// OK when `token` is right for `ts` and ts is within `ttl` seconds of `now` (either side);
// PermissionDenied otherwise (missing, wrong or expired).
Status CheckToken(const Target& t, std::string_view secret, int64_t ttl, int64_t now);

// Percent-decoding of a query value ('+' is a space); InvalidArgument on a bad escape.
Result<std::string> PercentDecode(std::string_view in);

}  // namespace depot::storage::http
