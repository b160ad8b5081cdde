// Files: every artifact and attachment opsd keeps lives in the Depot cluster. Uploads stream from
// the request into the cluster through libdepot, and downloads stream back, so a file of any size
// passes through a few MiB of memory. opsd keeps a record per file (name, size, SHA-256, who
// uploaded it); only recorded file IDs can be read or deleted through the API.
#include <cstring>

#include "client/include/depot/client.h"
#include "common/base/logging.h"
#include "common/proto/file_id.h"
#include "opsd/crypto.h"
#include "opsd/modules/common.h"

namespace depot::opsd {

namespace {

constexpr size_t kPiece = 256 << 10;
constexpr size_t kAppendChunk = 4 << 20;  // unknown-length bodies go to the cluster in these

// A download name: at most 255 bytes, no path separators or control characters.
Status CheckName(const std::string& name) {
  if (name.empty() || name.size() > 255) return Status::InvalidArgument("name must have 1 to 255 bytes");
  for (unsigned char ch : name) {
    if (ch < 0x20 || ch == 0x7f || ch == '/' || ch == '\\') {
      return Status::InvalidArgument("name may not hold '/', '\\' or control characters");
    }
  }
  if (name == "." || name == "..") return Status::InvalidArgument("name may not be . or ..");
  if (!ValidUtf8(name)) return Status::InvalidArgument("name is not UTF-8");
  return Status::OK();
}

// The extension the cluster keeps in the file ID: up to 6 letters and digits of the name's.
std::string ExtOf(const std::string& name) {
  size_t dot = name.rfind('.');
  if (dot == std::string::npos || dot + 1 >= name.size()) return "";
  std::string ext = name.substr(dot + 1);
  if (ext.size() > 6) return "";
  for (char ch : ext) {
    if (!isalnum(static_cast<unsigned char>(ch))) return "";
  }
  return ext;
}

std::string ContentDisposition(const std::string& name) {
  std::string ascii, pct;
  for (unsigned char ch : name) {
    ascii += (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\') ? static_cast<char>(ch) : '_';
    if (isalnum(ch) || ch == '.' || ch == '-' || ch == '_') {
      pct += static_cast<char>(ch);
    } else {
      char buf[4];
      snprintf(buf, sizeof buf, "%%%02X", ch);
      pct += buf;
    }
  }
  return "attachment; filename=\"" + ascii + "\"; filename*=UTF-8''" + pct;
}

void Answer(Ctx& ctx, net::HttpStream& s, const ApiError& e) {
  net::HttpResponse r;
  ErrorReply(&r, e);
  ctx.status = e.status;
  static_cast<void>(s.Send(r));
}

void Answer(Ctx& ctx, net::HttpStream& s, const Status& st) { Answer(ctx, s, ErrorFromStatus(st)); }

// Collects an upload of unknown length: an appender file grown 4 MiB at a time, turned into a
// normal file at the end. A failure removes what was stored.
class ChunkedUpload {
 public:
  ChunkedUpload(Client* c, UploadOptions opts) : c_(c), opts_(std::move(opts)) {}
  ~ChunkedUpload() {
    if (!done_ && !appender_id_.empty()) static_cast<void>(c_->Delete(appender_id_));
  }
  Status Add(const char* data, size_t n) {
    buf_.append(data, n);
    if (buf_.size() >= kAppendChunk) return Flush();
    return Status::OK();
  }
  Result<std::string> Finish() {
    if (appender_id_.empty()) {
      DEPOT_ASSIGN_OR_RETURN(std::string id, c_->UploadBuffer(buf_, opts_));
      done_ = true;
      return id;
    }
    DEPOT_RETURN_IF_ERROR(Flush());
    DEPOT_ASSIGN_OR_RETURN(std::string id, c_->RegenerateAppender(appender_id_));
    done_ = true;
    return id;
  }

 private:
  Status Flush() {
    if (buf_.empty()) return Status::OK();
    if (appender_id_.empty()) {
      DEPOT_ASSIGN_OR_RETURN(appender_id_, c_->UploadAppenderBuffer(buf_, opts_));
    } else {
      DEPOT_RETURN_IF_ERROR(c_->AppendBuffer(appender_id_, buf_));
    }
    buf_.clear();
    return Status::OK();
  }
  Client* c_;
  UploadOptions opts_;
  std::string buf_;
  std::string appender_id_;
  bool done_ = false;
};

void Upload(OpsdServer* srv, Ctx& ctx, net::HttpStream& s) {
  std::string name = ctx.Query("name") ? *ctx.Query("name") : "";
  for (const auto& [k, v] : ctx.query) {
    if (k != "name") return Answer(ctx, s, Status::InvalidArgument("unknown query parameter:", k));
  }
  const auto& head = s.head();
  if (!head.chunked && !head.content_length) {
    return Answer(ctx, s, ApiError{411, "length_required", "send Content-Length or a chunked body"});
  }
  if (head.content_length && *head.content_length > srv->config().max_upload_size) {
    return Answer(ctx, s, ApiError{413, "too_large", "file larger than max_upload_size"});
  }
  std::string type = head.Header("content-type") ? *head.Header("content-type") : "";
  if (type.size() > 255 || !ValidUtf8(type)) {
    return Answer(ctx, s, Status::InvalidArgument("Content-Type longer than 255 bytes or not UTF-8"));
  }
  bool multipart = type.rfind("multipart/", 0) == 0;
  auto cluster = srv->cluster();
  if (!cluster.ok()) return Answer(ctx, s, cluster.status());
  Client* client = *cluster;

  Sha256 sha;
  uint64_t size = 0;
  bool client_fault = false;  // the failure came from the request, not from the cluster
  std::string part_type;
  Result<std::string> file_id = Status::Internal("no upload");
  std::vector<char> piece(kPiece);
  if (!multipart) {
    if (name.empty()) name = "upload.bin";
    if (Status st = CheckName(name); !st.ok()) return Answer(ctx, s, st);
    part_type = type.empty() ? "application/octet-stream" : type;
    UploadOptions opts;
    opts.group = srv->config().upload_group;
    opts.ext = ExtOf(name);
    if (head.content_length) {
      file_id = client->UploadStream(*head.content_length,
                                     [&](char* buf, size_t n) -> Result<size_t> {
                                       auto got_or = s.ReadBody(buf, n);
                                       if (!got_or.ok()) client_fault = true;
                                       DEPOT_ASSIGN_OR_RETURN(size_t got, got_or);
                                       sha.Update(buf, got);
                                       size += got;
                                       return got;
                                     },
                                     opts);
    } else {
      ChunkedUpload up(client, opts);
      Status st;
      for (;;) {
        auto got = s.ReadBody(piece.data(), piece.size());
        if (!got.ok()) {
          st = got.status();
          client_fault = true;
          break;
        }
        if (*got == 0) break;
        size += *got;
        if (size > srv->config().max_upload_size) {
          st = Status::ResourceExhausted("file larger than max_upload_size");
          client_fault = true;
          break;
        }
        sha.Update(piece.data(), *got);
        st = up.Add(piece.data(), *got);
        if (!st.ok()) break;
      }
      file_id = st.ok() ? up.Finish() : Result<std::string>(st);
    }
  } else {
    auto boundary = net::http::MultipartBoundary(type);
    if (!boundary.ok()) return Answer(ctx, s, boundary.status());
    UploadOptions opts;
    opts.group = srv->config().upload_group;
    std::unique_ptr<ChunkedUpload> up;
    bool in_file = false, seen_file = false, cluster_fault = false;
    net::http::MultipartParser::Callbacks cb;
    cb.on_part_begin = [&](const net::http::MultipartParser::Part& p) -> Status {
      in_file = !seen_file && !p.filename.empty();
      if (!in_file) return Status::OK();
      seen_file = true;
      if (name.empty()) name = p.filename;
      DEPOT_RETURN_IF_ERROR(CheckName(name));
      part_type = p.content_type.empty() ? "application/octet-stream" : p.content_type;
      if (part_type.size() > 255 || !ValidUtf8(part_type)) {
        return Status::InvalidArgument("part Content-Type longer than 255 bytes or not UTF-8");
      }
      opts.ext = ExtOf(name);
      up = std::make_unique<ChunkedUpload>(client, opts);
      return Status::OK();
    };
    cb.on_data = [&](std::string_view d) -> Status {
      if (!in_file) return Status::OK();  // other form fields are ignored
      size += d.size();
      if (size > srv->config().max_upload_size) {
        return Status::ResourceExhausted("file larger than max_upload_size");
      }
      sha.Update(d.data(), d.size());
      Status added = up->Add(d.data(), d.size());
      cluster_fault = !added.ok();
      return added;
    };
    cb.on_part_end = [&]() -> Status {
      in_file = false;
      return Status::OK();
    };
    net::http::MultipartParser parser(*boundary, cb);
    Status st;
    for (;;) {
      auto got = s.ReadBody(piece.data(), piece.size());
      if (!got.ok()) {
        st = got.status();
        break;
      }
      if (*got == 0) {
        st = parser.Finish();
        break;
      }
      st = parser.Feed(std::string_view(piece.data(), *got));
      if (!st.ok()) break;
    }
    if (st.ok() && !seen_file) st = Status::InvalidArgument("the form has no file part");
    client_fault = !st.ok() && !cluster_fault;
    file_id = st.ok() ? up->Finish() : Result<std::string>(st);
  }
  if (!file_id.ok()) {
    DEPOT_LOG_WARN("upload from {} failed: {}", ctx.ip, file_id.status().ToString());
    return Answer(ctx, s, client_fault ? ErrorFromStatus(file_id.status())
                                       : ClusterError(file_id.status()));
  }
  srv->CountFileBytes("in", size);
  json rec = {{"file_id", *file_id},      {"name", name},
              {"size", size},             {"sha256", sha.HexDigest()},
              {"content_type", part_type}, {"uploaded_by", ctx.who->username},
              {"uploaded_by_id", ctx.who->user_id}};
  Result<Doc> ins = Status::Internal("not stored");
  Status st;
  {
    Txn t(srv->store());  // held only for the record, never across network I/O
    ins = t.Insert(srv->files(), rec);
    st = ins.status();
    if (st.ok()) {
      ctx.resource = "files/" + *file_id;
      st = srv->CommitAudited(t, ctx, nullptr, ins->get());
    }
  }
  if (!st.ok()) {
    static_cast<void>(client->Delete(*file_id));  // not recorded: not kept
    return Answer(ctx, s, st);
  }
  net::HttpResponse r;
  JsonReply(&r, 201, Public(**ins));
  ctx.status = 201;
  static_cast<void>(s.Send(r));
}

// "bytes=a-b", "bytes=a-", "bytes=-n" against `size`: false when unsatisfiable. Several ranges
// are answered with the whole file (allowed by RFC 9110).
enum class RangeKind { kNone, kOne, kBad };
RangeKind ParseRange(const std::string& h, uint64_t size, uint64_t* off, uint64_t* len) {
  if (h.rfind("bytes=", 0) != 0 || h.find(',') != std::string::npos) return RangeKind::kNone;
  std::string spec = h.substr(6);
  size_t dash = spec.find('-');
  if (dash == std::string::npos) return RangeKind::kNone;
  auto num = [](const std::string& t, uint64_t* v) {
    if (t.empty() || t.size() > 19) return false;
    for (char ch : t) {
      if (ch < '0' || ch > '9') return false;
    }
    *v = std::stoull(t);
    return true;
  };
  uint64_t a = 0, b = 0;
  std::string first = spec.substr(0, dash), second = spec.substr(dash + 1);
  if (first.empty()) {
    if (!num(second, &b)) return RangeKind::kNone;
    if (b == 0 || size == 0) return RangeKind::kBad;
    *len = std::min(b, size);
    *off = size - *len;
    return RangeKind::kOne;
  }
  if (!num(first, &a)) return RangeKind::kNone;
  if (a >= size) return RangeKind::kBad;
  if (second.empty()) {
    b = size - 1;
  } else if (!num(second, &b) || b < a) {
    return RangeKind::kNone;
  }
  b = std::min(b, size - 1);
  *off = a;
  *len = b - a + 1;
  return RangeKind::kOne;
}

void Download(OpsdServer* srv, Ctx& ctx, net::HttpStream& s) {
  const std::string& asked = ctx.params["file_id"];
  if (!proto::ParseFileId(asked).ok() || asked.find("..") != std::string::npos) {
    return Answer(ctx, s, Status::InvalidArgument("not a file ID:", asked));
  }
  Doc rec = srv->files()->FindUnique("file_id", asked);
  if (!rec) return Answer(ctx, s, Status::NotFound("no such file:", asked));
  const std::string id = (*rec)["file_id"].get<std::string>();  // what opsd recorded, exactly
  auto cluster = srv->cluster();
  if (!cluster.ok()) return Answer(ctx, s, cluster.status());
  uint64_t size = (*rec)["size"].get<uint64_t>();
  std::string etag = "\"" + (*rec)["sha256"].get<std::string>().substr(0, 32) + "\"";
  net::HttpHeaders h = {{"Content-Type", (*rec)["content_type"].get<std::string>()},
                        {"Content-Disposition", ContentDisposition((*rec)["name"])},
                        {"ETag", etag},
                        {"Accept-Ranges", "bytes"},
                        {"Cache-Control", "private, max-age=0"}};
  const std::string* inm = s.head().Header("if-none-match");
  if (inm && *inm == etag) {
    ctx.status = 304;
    static_cast<void>(s.SendHead(304, h, std::nullopt));
    return;
  }
  uint64_t off = 0, len = size;
  int status = 200;
  if (const std::string* range = s.head().Header("range")) {
    switch (ParseRange(*range, size, &off, &len)) {
      case RangeKind::kNone:
        break;
      case RangeKind::kBad: {
        net::HttpResponse r;
        ErrorReply(&r, ApiError{416, "range_not_satisfiable", "range outside the file"});
        r.headers.emplace_back("Content-Range", "bytes */" + std::to_string(size));
        ctx.status = 416;
        static_cast<void>(s.Send(r));
        return;
      }
      case RangeKind::kOne:
        status = 206;
        h.emplace_back("Content-Range", "bytes " + std::to_string(off) + "-" +
                                            std::to_string(off + len - 1) + "/" +
                                            std::to_string(size));
        break;
    }
  }
  ctx.status = status;
  // The head goes out before the first byte is fetched; a cluster failure after that can only
  // cut the body short, which the client sees as a short read (the connection closes).
  if (!s.SendHead(status, h, len).ok() || s.head().method == "HEAD" || len == 0) return;
  uint64_t sent = 0;
  Status st = (*cluster)->DownloadToSink(id, off, len, [&](const char* d, size_t n) {
    sent += n;
    return s.SendBody(d, n);
  });
  srv->CountFileBytes("out", sent);
  if (!st.ok()) DEPOT_LOG_WARN("download of {} to {} cut short: {}", id, ctx.ip, st.ToString());
}

}  // namespace

void AddFileRoutes(OpsdServer* s, Router* r) {
  r->Add({"GET", "/api/v1/files", "files.file.view", net::RouteMode::kInline, "",
          ListHandler(s->files(), {"id", "name", "size", "created_at"},
                      {"name", "sha256", "uploaded_by", "content_type"}, {"name"}),
          nullptr});
  r->Add({"POST", "/api/v1/files", "files.file.upload", net::RouteMode::kStream, "files.upload",
          nullptr, [s](Ctx& ctx, net::HttpStream& st) { Upload(s, ctx, st); }});
  r->Add({"GET", "/api/v1/files/{file_id+}", "files.file.view", net::RouteMode::kStream, "",
          nullptr, [s](Ctx& ctx, net::HttpStream& st) { Download(s, ctx, st); }});
  r->Add({"DELETE", "/api/v1/files/{file_id+}", "files.file.delete", net::RouteMode::kWorker,
          "files.delete", [s](Ctx& ctx, net::HttpResponse* resp) {
            ctx.resource = "files/" + ctx.params["file_id"];
            Doc rec = s->files()->FindUnique("file_id", ctx.params["file_id"]);
            if (!rec) return ErrorReply(resp, Status::NotFound("no such file:", ctx.params["file_id"]));
            const std::string id = (*rec)["file_id"].get<std::string>();
            auto cluster = s->cluster();
            if (!Ok(resp, cluster.status())) return;
            {
              Txn t(s->store());  // ends before the call into the cluster
              if (!Ok(resp, t.Remove(s->files(), (*rec)["id"].get<int64_t>(), std::nullopt))) return;
              if (!Ok(resp, s->CommitAudited(t, ctx, rec.get(), nullptr))) return;
            }
            // The record goes first: a failure here leaves an unreferenced file, never a
            // record of a missing one.
            Status st = (*cluster)->Delete(id);  // logged below; the record is already gone
            if (!st.ok() && !st.IsNotFound()) {
              DEPOT_LOG_WARN("file {} unrecorded but not deleted: {}", id, st.ToString());
            }
            resp->status = 204;
          },
          nullptr});
}

}  // namespace depot::opsd
