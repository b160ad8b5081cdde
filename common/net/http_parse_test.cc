#include "common/net/http_parse.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace depot::net::http {
namespace {

using Kind = HeadResult::Kind;

HeadResult Parse(std::string_view buf, RequestHead* head, size_t max_head = 8192) {
  return ParseRequestHead(buf, max_head, head);
}

// The status of a head that must be refused (0 when it was not).
int ErrorOf(std::string_view buf, size_t max_head = 8192) {
  RequestHead head;
  HeadResult r = Parse(buf, &head, max_head);
  if (r.kind != Kind::kError) return 0;
  EXPECT_FALSE(r.message.empty()) << buf;
  return r.status;
}

// ---------------------------------------------------------------------------------------------
// Request heads

TEST(RequestHeadTest, ParsesAGetWithQueryAndHeaders) {
  const std::string buf =
      "GET /api/v1/files?group=g1&name=a%20b HTTP/1.1\r\n"
      "Host: opsd.example:8090\r\n"
      "X-Thing:  spaced value \t\r\n"
      "ACCEPT: */*\r\n"
      "X-Empty:\r\n"
      "X-Utf8: caf\xc3\xa9\r\n"
      "\r\n";
  RequestHead h;
  HeadResult r = Parse(buf, &h);
  ASSERT_EQ(r.kind, Kind::kOk) << r.message;
  EXPECT_EQ(r.consumed, buf.size());
  EXPECT_EQ(h.method, "GET");
  EXPECT_EQ(h.target, "/api/v1/files?group=g1&name=a%20b");
  EXPECT_EQ(h.path, "/api/v1/files");
  EXPECT_EQ(h.query, "group=g1&name=a%20b");
  EXPECT_EQ(h.version_minor, 1);
  ASSERT_EQ(h.headers.size(), 5u);
  EXPECT_EQ(h.headers[0].first, "host");
  EXPECT_EQ(h.headers[2].first, "accept");
  ASSERT_NE(h.Header("x-thing"), nullptr);
  EXPECT_EQ(*h.Header("x-thing"), "spaced value");
  EXPECT_EQ(*h.Header("x-empty"), "");
  EXPECT_EQ(*h.Header("x-utf8"), "caf\xc3\xa9");
  EXPECT_EQ(h.Header("X-Thing"), nullptr);  // lookups take the lowercase name
  EXPECT_EQ(h.Header("missing"), nullptr);
  EXPECT_TRUE(h.keep_alive);
  EXPECT_FALSE(h.chunked);
  EXPECT_FALSE(h.content_length.has_value());
  EXPECT_FALSE(h.expect_continue);
}

TEST(RequestHeadTest, PathWithoutQueryAndEmptyQuery) {
  RequestHead h;
  ASSERT_EQ(Parse("GET /a/b HTTP/1.1\r\nHost: x\r\n\r\n", &h).kind, Kind::kOk);
  EXPECT_EQ(h.path, "/a/b");
  EXPECT_EQ(h.query, "");
  ASSERT_EQ(Parse("GET /a? HTTP/1.1\r\nHost: x\r\n\r\n", &h).kind, Kind::kOk);
  EXPECT_EQ(h.path, "/a");
  EXPECT_EQ(h.query, "");
  ASSERT_EQ(Parse("GET /a?b?c=d HTTP/1.1\r\nHost: x\r\n\r\n", &h).kind, Kind::kOk);
  EXPECT_EQ(h.path, "/a");
  EXPECT_EQ(h.query, "b?c=d");
}

TEST(RequestHeadTest, FirstDuplicateHeaderWins) {
  RequestHead h;
  ASSERT_EQ(Parse("GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\na: 2\r\n\r\n", &h).kind, Kind::kOk);
  EXPECT_EQ(*h.Header("a"), "1");
  EXPECT_EQ(h.headers.size(), 3u);
}

TEST(RequestHeadTest, BareLfAndLeadingEmptyLines) {
  RequestHead h;
  std::string bare = "GET / HTTP/1.1\nHost: x\n\n";
  HeadResult r = Parse(bare, &h);
  ASSERT_EQ(r.kind, Kind::kOk) << r.message;
  EXPECT_EQ(r.consumed, bare.size());
  std::string lead = "\r\n\n\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n";
  r = Parse(lead, &h);
  ASSERT_EQ(r.kind, Kind::kOk) << r.message;
  EXPECT_EQ(r.consumed, lead.size());
  EXPECT_EQ(ErrorOf("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
  // Only empty lines so far: wait for more.
  EXPECT_EQ(Parse("\r\n\r\n", &h).kind, Kind::kNeedMore);
}

TEST(RequestHeadTest, EveryPrefixNeedsMore) {
  const std::string buf =
      "POST /api/v1/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
  const size_t head = buf.find("hello");
  RequestHead h;
  for (size_t n = 0; n < head; ++n) {
    EXPECT_EQ(Parse(std::string_view(buf).substr(0, n), &h).kind, Kind::kNeedMore) << n;
  }
  HeadResult r = Parse(buf, &h);
  ASSERT_EQ(r.kind, Kind::kOk);
  EXPECT_EQ(r.consumed, head);
  EXPECT_EQ(*h.content_length, 5u);
}

TEST(RequestHeadTest, PipelinedRequests) {
  const std::string first = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n";
  const std::string second = "GET /b?c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  const std::string third = "GET /c HTTP/1.1\r\n";
  const std::string buf = first + "abc" + second + third;
  RequestHead h;
  HeadResult r = Parse(buf, &h);
  ASSERT_EQ(r.kind, Kind::kOk);
  EXPECT_EQ(r.consumed, first.size());
  EXPECT_EQ(h.path, "/a");
  size_t at = r.consumed + *h.content_length;
  r = Parse(std::string_view(buf).substr(at), &h);
  ASSERT_EQ(r.kind, Kind::kOk);
  EXPECT_EQ(r.consumed, second.size());
  EXPECT_EQ(h.path, "/b");
  EXPECT_FALSE(h.keep_alive);
  at += r.consumed;
  EXPECT_EQ(Parse(std::string_view(buf).substr(at), &h).kind, Kind::kNeedMore);
}

TEST(RequestHeadTest, KeepAliveRules) {
  struct Case {
    const char* version;
    const char* connection;  // nullptr: no header
    bool keep_alive;
  };
  const Case cases[] = {
      {"1.1", nullptr, true},
      {"1.1", "close", false},
      {"1.1", "Close", false},
      {"1.1", "keep-alive", true},
      {"1.1", "Upgrade, CLOSE", false},
      {"1.1", "closed", true},
      {"1.0", nullptr, false},
      {"1.0", "keep-alive", true},
      {"1.0", "Keep-Alive", true},
      {"1.0", "foo ,  keep-alive", true},
      {"1.0", "keep-alive, close", false},
      {"1.0", "close", false},
  };
  for (const Case& c : cases) {
    std::string buf = std::string("GET / HTTP/") + c.version + "\r\nHost: x\r\n";
    if (c.connection) buf += std::string("Connection: ") + c.connection + "\r\n";
    buf += "\r\n";
    RequestHead h;
    HeadResult r = Parse(buf, &h);
    ASSERT_EQ(r.kind, Kind::kOk) << buf;
    EXPECT_EQ(h.keep_alive, c.keep_alive) << buf;
    EXPECT_EQ(h.version_minor, c.version[2] - '0');
  }
}

TEST(RequestHeadTest, HttpOneZeroNeedsNoHost) {
  RequestHead h;
  EXPECT_EQ(Parse("GET / HTTP/1.0\r\n\r\n", &h).kind, Kind::kOk);
  EXPECT_EQ(ErrorOf("GET / HTTP/1.1\r\n\r\n"), 400);
  EXPECT_EQ(ErrorOf("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
  EXPECT_EQ(ErrorOf("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n"), 400);
}

TEST(RequestHeadTest, ContentLength) {
  RequestHead h;
  ASSERT_EQ(Parse("PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 0042\r\n\r\n", &h).kind, Kind::kOk);
  EXPECT_EQ(*h.content_length, 42u);
  ASSERT_EQ(
      Parse("PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\ncontent-length: 7\r\n\r\n", &h).kind,
      Kind::kOk);
  EXPECT_EQ(*h.content_length, 7u);
  const std::string max = std::to_string(kMaxContentLength);
  ASSERT_EQ(Parse("PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: " + max + "\r\n\r\n", &h).kind,
            Kind::kOk);
  EXPECT_EQ(*h.content_length, kMaxContentLength);
  for (std::string bad :
       {"7\r\nContent-Length: 8", "", "-1", "+1", "0x10", "4 2", "1,1", "1, 1",
        "4611686018427387905", "99999999999999999999", "18446744073709551616", "1e3", "\xd9\xa1"}) {
    EXPECT_EQ(ErrorOf("PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: " + bad + "\r\n\r\n"), 400)
        << bad;
  }
}

TEST(RequestHeadTest, TransferEncoding) {
  RequestHead h;
  ASSERT_EQ(Parse("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", &h).kind,
            Kind::kOk);
  EXPECT_TRUE(h.chunked);
  EXPECT_FALSE(h.content_length.has_value());
  ASSERT_EQ(Parse("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked \r\n\r\n", &h).kind,
            Kind::kOk);
  EXPECT_TRUE(h.chunked);
  const std::string pre = "POST / HTTP/1.1\r\nHost: x\r\n";
  EXPECT_EQ(ErrorOf(pre + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"), 400);
  EXPECT_EQ(ErrorOf(pre + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
  EXPECT_EQ(ErrorOf(pre + "Content-Length: 3\r\nTransfer-Encoding: gzip\r\n\r\n"), 400);
  EXPECT_EQ(ErrorOf(pre + "Transfer-Encoding: gzip\r\n\r\n"), 501);
  EXPECT_EQ(ErrorOf(pre + "Transfer-Encoding: gzip, chunked\r\n\r\n"), 501);
  EXPECT_EQ(ErrorOf(pre + "Transfer-Encoding: chunked, chunked\r\n\r\n"), 501);
  EXPECT_EQ(ErrorOf(pre + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"), 501);
  EXPECT_EQ(ErrorOf(pre + "Transfer-Encoding: identity\r\n\r\n"), 501);
  EXPECT_EQ(ErrorOf(pre + "Transfer-Encoding: \r\n\r\n"), 400);
  EXPECT_EQ(ErrorOf(pre + "Transfer-Encoding: ,\r\n\r\n"), 400);
  EXPECT_EQ(ErrorOf("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
}

TEST(RequestHeadTest, Expect) {
  RequestHead h;
  ASSERT_EQ(Parse("PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n", &h).kind, Kind::kOk);
  EXPECT_TRUE(h.expect_continue);
  ASSERT_EQ(Parse("PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\n\r\n", &h).kind, Kind::kOk);
  EXPECT_TRUE(h.expect_continue);
  // RFC 9110: an HTTP/1.0 client gets no 100 Continue.
  ASSERT_EQ(Parse("PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", &h).kind, Kind::kOk);
  EXPECT_FALSE(h.expect_continue);
  EXPECT_EQ(ErrorOf("PUT / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n"), 417);
  EXPECT_EQ(ErrorOf("PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue, x\r\n\r\n"), 417);
  EXPECT_EQ(ErrorOf("PUT / HTTP/1.1\r\nHost: x\r\nExpect:\r\n\r\n"), 417);
}

TEST(RequestHeadTest, BadRequestLines) {
  const std::string tail = "\r\nHost: x\r\n\r\n";
  for (std::string line :
       {"GET / HTTP/2.0", "GET / HTTP/1.2", "GET / HTTP/0.9", "GET / HTTP/3.1"}) {
    EXPECT_EQ(ErrorOf(line + tail), 505) << line;
  }
  for (std::string line : {"GET / HTTP/1.1x",
                           "GET / http/1.1",
                           "GET / HTTP/1.",
                           "GET / HTTP/11.1",
                           "GET /",
                           "GET",
                           "GET  / HTTP/1.1",
                           "GET / HTTP/1.1 ",
                           " GET / HTTP/1.1",
                           "GET / HTTP/1.1\r",
                           "GET * HTTP/1.1",
                           "OPTIONS * HTTP/1.1",
                           "GET http://a/b HTTP/1.1",
                           "GET a/b HTTP/1.1",
                           "G(T / HTTP/1.1",
                           "G:T / HTTP/1.1",
                           "GET /a#frag HTTP/1.1",
                           "GET /a\x7f HTTP/1.1",
                           "GET /caf\xc3\xa9 HTTP/1.1",
                           "GET /a\tb HTTP/1.1"}) {
    EXPECT_EQ(ErrorOf(line + tail), 400) << line;
  }
  EXPECT_EQ(ErrorOf(std::string("GET /a\0b HTTP/1.1", 17) + tail), 400);
  EXPECT_EQ(ErrorOf("\r\nHost: x\r\n\r\n"), 400);  // a header line where the request line goes
}

TEST(RequestHeadTest, BadHeaderLines) {
  const std::string pre = "GET / HTTP/1.1\r\nHost: x\r\n";
  for (std::string line :
       {"Bad Name: x", "Name : x", "Name\t: x", "NoColon", ": x", " folded: x", "\tfolded",
        "Na(me: x", "A: b\x01", "A: b\x7f", "A: b\rc", "A: \x1b[31m"}) {
    EXPECT_EQ(ErrorOf(pre + line + "\r\n\r\n"), 400) << line;
  }
  EXPECT_EQ(ErrorOf(pre + std::string("A: b\0c", 6) + "\r\n\r\n"), 400);
  // obs-fold: a continuation line after a header.
  EXPECT_EQ(ErrorOf(pre + "A: b\r\n c\r\n\r\n"), 400);
  // A lone CR is not a line end.
  EXPECT_EQ(ErrorOf(pre + "A: b\r\r\n\r\n"), 400);
}

TEST(RequestHeadTest, TooManyHeaders) {
  std::string buf = "GET / HTTP/1.1\r\nHost: x\r\n";
  for (size_t i = 1; i < kMaxHeaders; ++i) buf += "X-" + std::to_string(i) + ": v\r\n";
  RequestHead h;
  HeadResult r = Parse(buf + "\r\n", &h, 1 << 20);
  ASSERT_EQ(r.kind, Kind::kOk) << r.message;
  EXPECT_EQ(h.headers.size(), kMaxHeaders);
  buf += "X-Last: v\r\n";
  EXPECT_EQ(ErrorOf(buf + "\r\n", 1 << 20), 431);
  // Known as soon as the 101st line is complete, before the end of the head.
  EXPECT_EQ(ErrorOf(buf, 1 << 20), 431);
}

TEST(RequestHeadTest, HeadSizeLimit) {
  const std::string head =
      "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + std::string(100, 'p') + "\r\n\r\n";
  RequestHead h;
  HeadResult r = Parse(head, &h, head.size());
  ASSERT_EQ(r.kind, Kind::kOk);
  EXPECT_EQ(r.consumed, head.size());
  // One byte over: refused whole, and as soon as enough bytes arrived to know.
  EXPECT_EQ(ErrorOf(head, head.size() - 1), 413);
  EXPECT_EQ(ErrorOf(head.substr(0, head.size() - 1), head.size() - 1), 0);  // need more
  EXPECT_EQ(ErrorOf(head.substr(0, head.size() - 1) + "x", head.size() - 1), 413);
  // No end of head at all.
  const std::string junk(4097, 'a');
  EXPECT_EQ(ErrorOf(junk, 4096), 413);
  EXPECT_EQ(Parse(std::string_view(junk).substr(0, 4096), &h, 4096).kind, Kind::kNeedMore);
  EXPECT_EQ(ErrorOf("x", 0), 413);
  EXPECT_EQ(Parse("", &h, 0).kind, Kind::kNeedMore);
}

// ---------------------------------------------------------------------------------------------
// Chunked bodies

struct Decoded {
  ChunkedDecoder::State state = ChunkedDecoder::State::kMore;
  std::string out;
  size_t consumed = 0;
  std::string error;
};

// Feeds `in` in pieces of `step` bytes (0: all at once) with an output limit per call.
Decoded Decode(std::string_view in, size_t step = 0, size_t max_out = SIZE_MAX) {
  ChunkedDecoder d;
  Decoded r;
  size_t available = step == 0 ? in.size() : std::min(step, in.size());
  while (r.state == ChunkedDecoder::State::kMore) {
    std::string_view piece = in.substr(r.consumed, available - r.consumed);
    size_t before = r.out.size();
    size_t consumed = 0;
    r.state = d.Feed(piece, &consumed, &r.out, max_out);
    EXPECT_LE(consumed, piece.size());
    EXPECT_LE(r.out.size() - before, max_out);
    if (r.state == ChunkedDecoder::State::kMore && consumed < piece.size()) {
      EXPECT_EQ(r.out.size() - before, max_out);
    }
    r.consumed += consumed;
    if (r.state == ChunkedDecoder::State::kMore && r.consumed == available) {
      if (available == in.size()) break;
      available = std::min(in.size(), available + (step == 0 ? in.size() : step));
    }
  }
  r.error = d.error();
  return r;
}

constexpr std::string_view kWiki =
    "4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n";

TEST(ChunkedTest, WholeAndByteByByte) {
  for (size_t step : {0, 1, 2, 3, 7}) {
    Decoded r = Decode(kWiki, step);
    ASSERT_EQ(r.state, ChunkedDecoder::State::kDone) << step << " " << r.error;
    EXPECT_EQ(r.out, "Wikipedia in\r\n\r\nchunks.");
    EXPECT_EQ(r.consumed, kWiki.size());
  }
}

TEST(ChunkedTest, ExtensionsTrailersAndCase) {
  const std::string in =
      "4;name=value;flag\r\nWiki\r\n"
      "a \t;q=\"x y\"\r\n0123456789\r\n"
      "0000A\r\nABCDEFGHIJ\r\n"
      "0;last\r\n"
      "X-Checksum: abc\r\n"
      "Y:1\r\n"
      "\r\n";
  for (size_t step : {0, 1}) {
    Decoded r = Decode(in, step);
    ASSERT_EQ(r.state, ChunkedDecoder::State::kDone) << r.error;
    EXPECT_EQ(r.out, "Wiki0123456789ABCDEFGHIJ");
    EXPECT_EQ(r.consumed, in.size());
  }
}

TEST(ChunkedTest, DoneLeavesTheNextRequest) {
  const std::string next = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  const std::string in = std::string(kWiki) + next;
  for (size_t step : {0, 1, 5}) {
    Decoded r = Decode(in, step);
    ASSERT_EQ(r.state, ChunkedDecoder::State::kDone);
    EXPECT_EQ(r.consumed, kWiki.size()) << step;
  }
  ChunkedDecoder d;
  std::string out;
  size_t consumed = 0;
  ASSERT_EQ(d.Feed(in, &consumed, &out, SIZE_MAX), ChunkedDecoder::State::kDone);
  EXPECT_EQ(in.substr(consumed), next);
  EXPECT_EQ(d.Feed(next, &consumed, &out, SIZE_MAX), ChunkedDecoder::State::kDone);
  EXPECT_EQ(consumed, 0u);
}

TEST(ChunkedTest, MaxOutIsHonoured) {
  for (size_t max_out : {1, 3, 4, 100}) {
    for (size_t step : {0, 1, 6}) {
      Decoded r = Decode(kWiki, step, max_out);
      ASSERT_EQ(r.state, ChunkedDecoder::State::kDone) << max_out << " " << step;
      EXPECT_EQ(r.out, "Wikipedia in\r\n\r\nchunks.");
      EXPECT_EQ(r.consumed, kWiki.size());
    }
  }
  // With no room the framing is still read, the data is not.
  ChunkedDecoder d;
  std::string out;
  size_t consumed = 0;
  EXPECT_EQ(d.Feed("4\r\nWiki", &consumed, &out, 0), ChunkedDecoder::State::kMore);
  EXPECT_EQ(consumed, 3u);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(d.Feed("Wiki", &consumed, &out, 2), ChunkedDecoder::State::kMore);
  EXPECT_EQ(consumed, 2u);
  EXPECT_EQ(out, "Wi");
}

TEST(ChunkedTest, LargestChunkSize) {
  ChunkedDecoder d;
  std::string out;
  size_t consumed = 0;
  EXPECT_EQ(d.Feed("fffffffffffffff\r\nabc", &consumed, &out, SIZE_MAX),
            ChunkedDecoder::State::kMore);
  EXPECT_EQ(out, "abc");
  EXPECT_EQ(Decode("1000000000000000\r\n").state, ChunkedDecoder::State::kError);
  EXPECT_EQ(Decode("0000000000000001\r\nx\r\n0\r\n\r\n").state, ChunkedDecoder::State::kError);
}

TEST(ChunkedTest, MalformedBodies) {
  const std::string ext_ok = "1;" + std::string(kMaxChunkLine - 5, 'a') + "\r\nx\r\n0\r\n\r\n";
  EXPECT_EQ(Decode(ext_ok).state, ChunkedDecoder::State::kDone);
  const std::string trailer_ok = "0\r\nX: " + std::string(kMaxTrailerBytes - 9, 't') + "\r\n\r\n";
  EXPECT_EQ(Decode(trailer_ok).state, ChunkedDecoder::State::kDone);
  for (std::string bad : {
           std::string("g\r\nx\r\n0\r\n\r\n"),                    // not hex
           std::string("\r\n"),                                   // no size
           std::string(";x\r\n"),                                 // extension without a size
           std::string("-1\r\n"),                                 // sign
           std::string("0x4\r\nWiki\r\n0\r\n\r\n"),               // 0x prefix
           std::string("4 4\r\n"),                                // space inside the size
           std::string("4\nWiki\r\n0\r\n\r\n"),                   // bare LF after the size
           std::string("4\rWiki"),                                // CR without LF
           std::string("4\r\nWikiX\r\n0\r\n\r\n"),                // data longer than the size
           std::string("4\r\nWiki\n0\r\n\r\n"),                   // bare LF after the data
           std::string("4;a\x01\r\nWiki\r\n"),                    // control byte in an extension
           std::string("4;a\nb\r\nWiki\r\n"),                     // LF inside an extension
           "1;" + std::string(kMaxChunkLine, 'a') + "\r\nx\r\n",  // size line too long
           std::string("0\r\n X: folded\r\n\r\n"),                // folded trailer
           std::string("0\r\nX: a\x01\r\n\r\n"),                  // control byte in a trailer
           std::string("0\r\nX: a\n\r\n"),                        // bare LF in a trailer
           std::string("0\r\n\rX"),                               // bad final CRLF
           "0\r\nX: " + std::string(kMaxTrailerBytes, 't') + "\r\n\r\n",  // trailers too long
       }) {
    for (size_t step : {0, 1}) {
      Decoded r = Decode(bad, step);
      EXPECT_EQ(r.state, ChunkedDecoder::State::kError) << bad.substr(0, 40) << " " << step;
      EXPECT_FALSE(r.error.empty());
    }
  }
}

TEST(ChunkedTest, ErrorsAreSticky) {
  ChunkedDecoder d;
  std::string out;
  size_t consumed = 0;
  EXPECT_EQ(d.Feed("z", &consumed, &out, SIZE_MAX), ChunkedDecoder::State::kError);
  EXPECT_EQ(d.Feed(kWiki, &consumed, &out, SIZE_MAX), ChunkedDecoder::State::kError);
  EXPECT_EQ(consumed, 0u);
  EXPECT_TRUE(out.empty());
  EXPECT_FALSE(d.error().empty());
}

TEST(ChunkedTest, IncompleteBodyWantsMore) {
  for (size_t n = 0; n < kWiki.size(); ++n) {
    Decoded r = Decode(kWiki.substr(0, n));
    EXPECT_EQ(r.state, ChunkedDecoder::State::kMore) << n;
    EXPECT_EQ(r.consumed, n);
  }
}

// ---------------------------------------------------------------------------------------------
// Query strings and percent-decoding

TEST(QueryTest, ParsesPairs) {
  auto q = ParseQuery("a=1&b=x%20y&c");
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  QueryParams want = {{"a", "1"}, {"b", "x y"}, {"c", ""}};
  EXPECT_EQ(*q, want);
  q = ParseQuery("q=a+b%2Bc&k%3D=v%26w&&=e&x==y&");
  ASSERT_TRUE(q.ok());
  want = {{"q", "a b+c"}, {"k=", "v&w"}, {"", "e"}, {"x", "=y"}};
  EXPECT_EQ(*q, want);
  q = ParseQuery("");
  ASSERT_TRUE(q.ok());
  EXPECT_TRUE(q->empty());
  q = ParseQuery("a=%c3%A9&a=2");
  ASSERT_TRUE(q.ok());
  want = {{"a", "\xc3\xa9"}, {"a", "2"}};
  EXPECT_EQ(*q, want);
}

TEST(QueryTest, RefusesBadEscapesAndTooMuch) {
  for (std::string bad : {"a=%", "a=%2", "a=%zz", "a=%2g", "%=1", "a=%00", "%00=1", "a=1&b=%%41"}) {
    EXPECT_TRUE(ParseQuery(bad).status().IsInvalidArgument()) << bad;
  }
  std::string many;
  for (size_t i = 0; i < kMaxQueryParams; ++i) many += "p" + std::to_string(i) + "=v&";
  auto q = ParseQuery(many);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->size(), kMaxQueryParams);
  EXPECT_TRUE(ParseQuery(many + "one=more").status().IsInvalidArgument());
  std::string big = "a=" + std::string(kMaxQueryBytes - 2, 'v');
  EXPECT_TRUE(ParseQuery(big).ok());
  EXPECT_TRUE(ParseQuery(big + "v").status().IsInvalidArgument());
}

TEST(PercentDecodeTest, DecodesPathSegments) {
  auto s = PercentDecode("a%2Fb%2fc+d%41%7e");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(*s, "a/b/c+dA~");
  s = PercentDecode("");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(*s, "");
  s = PercentDecode("%ff%25");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(*s, "\xff%");
  for (std::string bad : {"%", "%4", "a%", "%G0", "%0G", "%-1", "%00", "a%00b", "% 1"}) {
    EXPECT_TRUE(PercentDecode(bad).status().IsInvalidArgument()) << bad;
  }
}

// ---------------------------------------------------------------------------------------------
// multipart/form-data

TEST(MultipartBoundaryTest, Extracts) {
  struct Case {
    const char* content_type;
    const char* boundary;
  };
  const Case cases[] = {
      {"multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW",
       "----WebKitFormBoundary7MA4YWxkTrZu0gW"},
      {"Multipart/Form-Data;BOUNDARY=xYz", "xYz"},
      {"multipart/form-data; charset=utf-8; boundary=abc;", "abc"},
      {"multipart/form-data; boundary=\"a b:c/d=e?\"", "a b:c/d=e?"},
      {"multipart/form-data; boundary=\"\\a\\b\"", "ab"},  // quoted-pairs
      {"  multipart/form-data ;boundary=a'()+_,-./:=?  ", "a'()+_,-./:=?"},
  };
  for (const Case& c : cases) {
    auto b = MultipartBoundary(c.content_type);
    ASSERT_TRUE(b.ok()) << c.content_type << ": " << b.status().ToString();
    EXPECT_EQ(*b, c.boundary);
  }
  const std::string b70(kMaxBoundary, 'b');
  auto b = MultipartBoundary("multipart/form-data; boundary=" + b70);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*b, b70);
}

TEST(MultipartBoundaryTest, Refuses) {
  for (std::string bad : {
           std::string("text/plain; boundary=abc"),
           std::string("multipart/mixed; boundary=abc"),
           std::string("multipart/form-data"),
           std::string("multipart/form-data;"),
           std::string("multipart/form-data; boundary="),
           std::string("multipart/form-data; boundary=\"\""),
           std::string("multipart/form-data; boundary=\"abc \""),
           std::string("multipart/form-data; boundary=\"abc"),
           std::string("multipart/form-data; boundary=\"q\\\"\""),  // '"' is not a bchar
           std::string("multipart/form-data; boundary=a@b"),
           std::string("multipart/form-data; boundary=a b"),
           std::string("multipart/form-data; boundary=a\x01"),
           std::string("multipart/form-data; boundary=a; boundary=b"),
           std::string("multipart/form-data; boundary=a; BOUNDARY=a"),
           std::string("multipart/form-data boundary=a"),
           std::string("multipart/form-data; =a"),
           std::string("multipart/form-data; boundary"),
           "multipart/form-data; boundary=" + std::string(kMaxBoundary + 1, 'b'),
       }) {
    EXPECT_TRUE(MultipartBoundary(bad).status().IsInvalidArgument()) << bad;
  }
}

struct RecordedPart {
  MultipartParser::Part part;
  std::string data;
  bool ended = false;
};

struct Recording {
  std::vector<RecordedPart> parts;
  Status feed;    // the first non-OK Feed, or OK
  Status finish;  // Finish() after feeding everything (or after the failed Feed)
  size_t data_bytes = 0;
};

MultipartParser::Callbacks Recorder(Recording* rec) {
  MultipartParser::Callbacks cb;
  cb.on_part_begin = [rec](const MultipartParser::Part& p) {
    if (!rec->parts.empty()) {
      EXPECT_TRUE(rec->parts.back().ended);
    }
    rec->parts.push_back({p, "", false});
    return Status::OK();
  };
  cb.on_data = [rec](std::string_view d) {
    EXPECT_FALSE(d.empty());
    EXPECT_FALSE(rec->parts.empty());
    if (!rec->parts.empty()) {
      EXPECT_FALSE(rec->parts.back().ended);
      rec->parts.back().data.append(d);
    }
    rec->data_bytes += d.size();
    return Status::OK();
  };
  cb.on_part_end = [rec]() {
    EXPECT_FALSE(rec->parts.empty());
    if (!rec->parts.empty()) rec->parts.back().ended = true;
    return Status::OK();
  };
  return cb;
}

// Feeds `body` in the given piece sizes (cycled; empty: all at once).
Recording RunMultipart(std::string_view body, const std::vector<size_t>& pieces,
                       std::string boundary = "xYz") {
  Recording rec;
  MultipartParser parser(std::move(boundary), Recorder(&rec));
  size_t at = 0;
  size_t i = 0;
  while (at < body.size() && rec.feed.ok()) {
    size_t n = pieces.empty() ? body.size() : std::max<size_t>(1, pieces[i++ % pieces.size()]);
    n = std::min(n, body.size() - at);
    rec.feed = parser.Feed(body.substr(at, n));
    at += n;
  }
  rec.finish = parser.Finish();
  return rec;
}

std::vector<size_t> RandomPieces(uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<size_t> len(1, 1 + seed % 40);
  std::vector<size_t> out(97);
  for (size_t& n : out) n = len(rng);
  return out;
}

// Binary file data with CR, LF, NUL and "\r\n--" runs that are not the delimiter.
std::string FileData() {
  std::string d;
  for (int i = 0; i < 256; ++i) d.push_back(static_cast<char>(i));
  d += "\r\n--";
  d += "\r\n--x";
  d += "\r\n--xY";
  d += "\r\n--XYZ";
  d += "\r\n-xYz";
  d += "\r\r\n--xY\r\n--xYq";
  d += "--xYz";  // no CRLF before it: data
  d += "\n--xYz\r--xYz";
  d += std::string("\0\r\n\0", 4);
  d += "\r\n--xY";  // right before the real delimiter
  return d;
}

std::string TwoPartBody() {
  return "This is the preamble. --xYz is not a delimiter here.\r\n"
         "--xYz\r\n"
         "Content-Disposition: form-data; name=\"comment\"\r\n"
         "\r\n"
         "hello, world\r\n"
         "--xYz  \t\r\n"
         "content-disposition: Form-Data; name=\"upload\"; filename=\"a \\\"b\\\".bin\"\r\n"
         "Content-Type: application/octet-stream\r\n"
         "X-Ignored: yes\r\n"
         "\r\n" +
         FileData() +
         "\r\n"
         "--xYz--\r\n"
         "epilogue, ignored\r\n--xYz\r\ngarbage";
}

void ExpectTwoParts(const Recording& rec) {
  ASSERT_TRUE(rec.feed.ok()) << rec.feed.ToString();
  ASSERT_TRUE(rec.finish.ok()) << rec.finish.ToString();
  ASSERT_EQ(rec.parts.size(), 2u);
  EXPECT_EQ(rec.parts[0].part.name, "comment");
  EXPECT_EQ(rec.parts[0].part.filename, "");
  EXPECT_EQ(rec.parts[0].part.content_type, "");
  EXPECT_EQ(rec.parts[0].data, "hello, world");
  EXPECT_TRUE(rec.parts[0].ended);
  EXPECT_EQ(rec.parts[1].part.name, "upload");
  EXPECT_EQ(rec.parts[1].part.filename, "a \"b\".bin");
  EXPECT_EQ(rec.parts[1].part.content_type, "application/octet-stream");
  EXPECT_EQ(rec.parts[1].data, FileData());
  EXPECT_TRUE(rec.parts[1].ended);
}

TEST(MultipartTest, TwoPartsWholeByteByByteAndRandomSplits) {
  const std::string body = TwoPartBody();
  ExpectTwoParts(RunMultipart(body, {}));
  ExpectTwoParts(RunMultipart(body, {1}));
  ExpectTwoParts(RunMultipart(body, {2, 3, 5, 7}));
  for (uint32_t seed = 0; seed < 50; ++seed) {
    SCOPED_TRACE(seed);
    ExpectTwoParts(RunMultipart(body, RandomPieces(seed)));
  }
  // Every split into two pieces.
  for (size_t cut = 0; cut <= body.size(); ++cut) {
    Recording rec;
    MultipartParser parser("xYz", Recorder(&rec));
    ASSERT_TRUE(parser.Feed(std::string_view(body).substr(0, cut)).ok()) << cut;
    ASSERT_TRUE(parser.Feed(std::string_view(body).substr(cut)).ok()) << cut;
    rec.finish = parser.Finish();
    SCOPED_TRACE(cut);
    ExpectTwoParts(rec);
  }
}

TEST(MultipartTest, FirstDelimiterPlacement) {
  const std::string part = "Content-Disposition: form-data; name=a\r\n\r\nv\r\n--xYz--";
  for (std::string body : {"--xYz\r\n" + part, "\r\n--xYz\r\n" + part, "--xY\r\n--xYz\r\n" + part,
                           "\r\n\r\n--xYz\r\n" + part}) {
    for (size_t step : {0, 1}) {
      Recording rec = RunMultipart(body, step == 0 ? std::vector<size_t>{} : std::vector{step});
      ASSERT_TRUE(rec.feed.ok()) << body << rec.feed.ToString();
      ASSERT_TRUE(rec.finish.ok()) << body;
      ASSERT_EQ(rec.parts.size(), 1u);
      EXPECT_EQ(rec.parts[0].part.name, "a");
      EXPECT_EQ(rec.parts[0].data, "v");
      EXPECT_TRUE(rec.parts[0].ended);
    }
  }
}

TEST(MultipartTest, EmptyPartAndNoParts) {
  Recording rec =
      RunMultipart("--xYz\r\nContent-Disposition: form-data; name=e\r\n\r\n\r\n--xYz--\r\n", {1});
  ASSERT_TRUE(rec.finish.ok());
  ASSERT_EQ(rec.parts.size(), 1u);
  EXPECT_EQ(rec.parts[0].data, "");
  EXPECT_TRUE(rec.parts[0].ended);
  rec = RunMultipart("--xYz--", {});
  EXPECT_TRUE(rec.finish.ok());
  EXPECT_TRUE(rec.parts.empty());
}

TEST(MultipartTest, StreamsWithoutBufferingAPart) {
  Recording rec;
  MultipartParser parser("xYz", Recorder(&rec));
  ASSERT_TRUE(
      parser.Feed("--xYz\r\nContent-Disposition: form-data; name=f; filename=big\r\n\r\n").ok());
  ASSERT_EQ(rec.parts.size(), 1u);
  const std::string piece(1000, 'x');
  for (int i = 1; i <= 100; ++i) {
    ASSERT_TRUE(parser.Feed(piece).ok());
    ASSERT_EQ(rec.data_bytes, 1000u * i);  // nothing held back: no CR in sight
  }
  // A possible delimiter is held back, at most boundary + 8 bytes...
  ASSERT_TRUE(parser.Feed("ab\r\n--xY").ok());
  EXPECT_EQ(rec.data_bytes, 100002u);
  // ...and released when it turns out to be data.
  ASSERT_TRUE(parser.Feed("Q").ok());
  EXPECT_EQ(rec.data_bytes, 100009u);
  ASSERT_TRUE(parser.Feed("\r").ok());
  EXPECT_EQ(rec.data_bytes, 100009u);
  ASSERT_TRUE(parser.Feed("\r").ok());  // the first CR cannot start the delimiter any more
  EXPECT_EQ(rec.data_bytes, 100010u);
  ASSERT_TRUE(parser.Feed("\n--xYz--").ok());
  EXPECT_EQ(rec.data_bytes, 100010u);
  EXPECT_TRUE(rec.parts[0].ended);
  EXPECT_TRUE(parser.Finish().ok());
  EXPECT_EQ(rec.parts[0].data, std::string(100000, 'x') + "ab\r\n--xYQ\r");
}

TEST(MultipartTest, PartLimits) {
  const std::string part = "--xYz\r\nContent-Disposition: form-data; name=p\r\n\r\nv\r\n";
  std::string body;
  for (int i = 0; i < kMaxParts; ++i) body += part;
  Recording rec = RunMultipart(body + "--xYz--\r\n", {});
  ASSERT_TRUE(rec.finish.ok()) << rec.finish.ToString();
  EXPECT_EQ(rec.parts.size(), static_cast<size_t>(kMaxParts));
  rec = RunMultipart(body + part + "--xYz--\r\n", {});
  EXPECT_TRUE(rec.feed.IsInvalidArgument());
  EXPECT_EQ(rec.parts.size(), static_cast<size_t>(kMaxParts));

  const std::string big_header = "X-Big: " + std::string(kMaxPartHeaderBytes, 'h') + "\r\n";
  for (size_t step : {0, 1, 4096}) {
    rec = RunMultipart(
        "--xYz\r\n" + big_header + "Content-Disposition: form-data; name=p\r\n\r\nv\r\n--xYz--",
        step == 0 ? std::vector<size_t>{} : std::vector{step});
    EXPECT_TRUE(rec.feed.IsInvalidArgument()) << step;
    EXPECT_TRUE(rec.parts.empty());
  }
  // Just under the limit is fine.
  const std::string cd = "Content-Disposition: form-data; name=p\r\n";
  const std::string fill =
      "X-Fill: " + std::string(kMaxPartHeaderBytes - cd.size() - 8 - 2 - 2, 'h') + "\r\n";
  ASSERT_EQ(cd.size() + fill.size() + 2, kMaxPartHeaderBytes);
  rec = RunMultipart("--xYz\r\n" + cd + fill + "\r\nv\r\n--xYz--", {1});
  EXPECT_TRUE(rec.finish.ok()) << rec.finish.ToString();
}

TEST(MultipartTest, Malformed) {
  const std::string cd = "Content-Disposition: form-data; name=p\r\n";
  struct Case {
    std::string body;
    size_t parts_begun;
  };
  const std::vector<Case> cases = {
      {"--xYz\r\n\r\nv\r\n--xYz--", 0},                              // no headers
      {"--xYz\r\nContent-Type: text/plain\r\n\r\nv\r\n--xYz--", 0},  // no disposition
      {"--xYz\r\nContent-Disposition: attachment; name=p\r\n\r\nv\r\n--xYz--", 0},
      {"--xYz\r\nContent-Disposition: form-data\r\n\r\nv\r\n--xYz--", 0},  // no name
      {"--xYz\r\nContent-Disposition: form-data; filename=f\r\n\r\nv\r\n--xYz--", 0},
      {"--xYz\r\nContent-Disposition: form-data; name=p; name=q\r\n\r\nv\r\n--xYz--", 0},
      {"--xYz\r\nContent-Disposition: form-data; name=\"p\r\n\r\nv\r\n--xYz--", 0},
      {"--xYz\r\n" + cd + cd + "\r\nv\r\n--xYz--", 0},  // two dispositions
      {"--xYz\r\n" + cd + " folded\r\n\r\nv\r\n--xYz--", 0},
      {"--xYz\r\n" + cd + "Bad Header: x\r\n\r\nv\r\n--xYz--", 0},
      {"--xYz\r\n" + cd + "NoColon\r\n\r\nv\r\n--xYz--", 0},
      {"--xYz\r\n" + cd + "X: a\x01\r\n\r\nv\r\n--xYz--", 0},
      {"--xYz\r\n" + cd + "X: a\nb\r\n\r\nv\r\n--xYz--", 0},
      {"--xYzQ\r\n" + cd + "\r\nv\r\n--xYz--", 0},                              // longer boundary
      {"--xYz\n" + cd + "\r\nv\r\n--xYz--", 0},                                 // bare LF
      {"--xYz-\r\n", 0},                                                        // single dash
      {"--xYz" + std::string(300, ' ') + "\r\n" + cd + "\r\nv\r\n--xYz--", 0},  // padding
      {"--xYz\r\n" + cd + "\r\nv\r\n--xYzQ\r\n", 1},                            // bad delimiter
  };
  for (const Case& c : cases) {
    for (size_t step : {0, 1}) {
      Recording rec = RunMultipart(c.body, step == 0 ? std::vector<size_t>{} : std::vector{step});
      EXPECT_TRUE(rec.feed.IsInvalidArgument()) << c.body << " " << rec.feed.ToString();
      EXPECT_TRUE(rec.finish.IsInvalidArgument()) << c.body;
      EXPECT_EQ(rec.parts.size(), c.parts_begun) << c.body;
      // A part whose delimiter line is bad is never reported complete.
      for (const RecordedPart& p : rec.parts) EXPECT_FALSE(p.ended) << c.body;
    }
  }
}

TEST(MultipartTest, UnfinishedBodies) {
  for (std::string body :
       {"", "preamble only", "--xYz\r\n",
        "--xYz\r\nContent-Disposition: form-data; name=p\r\n\r\nv",
        "--xYz\r\nContent-Disposition: form-data; name=p\r\n\r\nv\r\n--xYz",
        "--xYz\r\nContent-Disposition: form-data; name=p\r\n\r\nv\r\n--xYz-",
        "--xYz\r\nContent-Disposition: form-data; name=p\r\n\r\nv\r\n--xYz\r\n"}) {
    Recording rec = RunMultipart(body, {});
    EXPECT_TRUE(rec.feed.ok()) << body;
    EXPECT_TRUE(rec.finish.IsInvalidArgument()) << body;
  }
}

TEST(MultipartTest, CallbackErrorsStopParsing) {
  const std::string body = TwoPartBody();
  int begun = 0;
  MultipartParser::Callbacks cb;
  cb.on_part_begin = [&](const MultipartParser::Part& p) {
    ++begun;
    return p.name == "upload" ? Status::PermissionDenied("no uploads") : Status::OK();
  };
  MultipartParser parser("xYz", cb);
  Status s = parser.Feed(body);
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(begun, 2);
  EXPECT_EQ(parser.Feed("more").code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(parser.Finish().code(), StatusCode::kPermissionDenied);

  size_t seen = 0;
  MultipartParser::Callbacks cb2;
  cb2.on_data = [&](std::string_view d) {
    seen += d.size();
    return Status::ResourceExhausted("disk full");
  };
  MultipartParser p2("xYz", cb2);
  EXPECT_EQ(p2.Feed(body).code(), StatusCode::kResourceExhausted);
  EXPECT_GT(seen, 0u);
  EXPECT_EQ(p2.Feed(body).code(), StatusCode::kResourceExhausted);
}

TEST(MultipartTest, NoCallbacksIsFine) {
  MultipartParser parser("xYz", {});
  EXPECT_TRUE(parser.Feed(TwoPartBody()).ok());
  EXPECT_TRUE(parser.Finish().ok());
}

TEST(MultipartTest, InvalidBoundary) {
  for (std::string b : {std::string(), std::string(kMaxBoundary + 1, 'b'), std::string("a@b"),
                        std::string("ends ")}) {
    MultipartParser parser(b, {});
    EXPECT_TRUE(parser.Feed("--" + b + "--").IsInvalidArgument()) << b;
    EXPECT_TRUE(parser.Finish().IsInvalidArgument());
  }
}

TEST(MultipartTest, NearMissesOfARepetitiveBoundary) {
  // Lines that match the delimiter for all but its last bytes, fed in every small split.
  const std::string b = "aaaaaaab";
  const std::string body = "--" + b +
                           "\r\nContent-Disposition: form-data; name=p\r\n\r\n"
                           "x\r\n--aaaa\r\n--aaaaaaa\r\n--aaaaaaaa\r\n--" +
                           b + "--";
  for (size_t step : {0, 1, 2, 3}) {
    Recording rec = RunMultipart(body, step == 0 ? std::vector<size_t>{} : std::vector{step}, b);
    ASSERT_TRUE(rec.finish.ok()) << step << rec.finish.ToString();
    ASSERT_EQ(rec.parts.size(), 1u);
    EXPECT_EQ(rec.parts[0].data, "x\r\n--aaaa\r\n--aaaaaaa\r\n--aaaaaaaa");
  }
}

// Regression (fuzz_opsd_http): a raw NUL byte passed through ParseQuery and PercentDecode (only
// an encoded one was refused).
TEST(QueryTest, RawNulIsRefusedLikeAnEncodedOne) {
  using namespace std::string_literals;
  EXPECT_FALSE(ParseQuery("a=b\0c"s).ok());
  EXPECT_FALSE(ParseQuery("a\0=b"s).ok());
  EXPECT_FALSE(PercentDecode("x\0y"s).ok());
  EXPECT_FALSE(PercentDecode("x%00y").ok());
  EXPECT_TRUE(PercentDecode("x%01y").ok());
}

}  // namespace
}  // namespace depot::net::http
