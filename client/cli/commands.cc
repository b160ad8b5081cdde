#include "client/cli/commands.h"

#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <sstream>

#include "common/base/hash.h"
#include "common/proto/file_id.h"

namespace depot::cli {

using nlohmann::json;

Result<std::unique_ptr<Client>> MakeClient(const GlobalOptions& g) {
  ClientOptions o;
  std::string list = g.trackers;
  if (list.empty() && std::getenv("DEPOT_TRACKERS") != nullptr) list = std::getenv("DEPOT_TRACKERS");
  if (!list.empty()) {
    std::stringstream ss(list);
    std::string item;
    while (std::getline(ss, item, ',')) {
      if (!item.empty()) o.trackers.push_back(item);
    }
  } else {
    std::string conf = g.config;
    if (conf.empty() && access("/etc/depot/client.conf", R_OK) == 0) conf = "/etc/depot/client.conf";
    if (conf.empty()) {
      return Status::InvalidArgument(
          "no trackers: pass --trackers host:port, set DEPOT_TRACKERS or use --config client.conf");
    }
    DEPOT_ASSIGN_OR_RETURN(o, LoadClientOptions(conf));
  }
  if (!g.secret.empty()) {
    o.cluster_secret = g.secret;
  } else if (const char* s = std::getenv("DEPOT_CLUSTER_SECRET"); s != nullptr && *s != '\0') {
    o.cluster_secret = s;
  }
  return Client::Create(o);
}

int Fail(const GlobalOptions& g, const Status& s) {
  if (g.json) {
    PrintJson({{"error", {{"code", StatusCodeName(s.code())}, {"message", s.message()}}}});
  } else {
    std::fprintf(stderr, "depot: %s\n", s.ToString().c_str());
  }
  switch (s.code()) {
    case StatusCode::kNotFound: return 3;
    case StatusCode::kInvalidArgument: return 2;
    case StatusCode::kUnavailable:
    case StatusCode::kTimedOut: return 4;
    default: return 1;
  }
}

void PrintJson(const json& j) { std::printf("%s\n", j.dump().c_str()); }

namespace {

Result<std::map<std::string, std::string>> ParsePairs(const std::vector<std::string>& items) {
  std::map<std::string, std::string> out;
  for (const auto& kv : items) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Status::InvalidArgument("metadata must be key=value, got", "`" + kv + "`");
    }
    out[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return out;
}

std::string FormatTime(int64_t t) {
  char buf[64];
  time_t tt = static_cast<time_t>(t);
  struct tm tm;
  gmtime_r(&tt, &tm);
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

Commands::Commands(CLI::App* app, GlobalOptions* g) : g_(g) {
  auto* up = app->add_subcommand("upload", "upload a file; prints its file ID");
  up->add_option("FILE", file_, "file to upload")->required()->check(CLI::ExistingFile);
  up->add_option("--group", group_, "store in this group (default: the tracker picks)");
  up->add_option("--ext", ext_, "extension recorded in the file ID (default: from FILE)");
  up->add_option("--meta", meta_, "metadata key=value (repeatable)");
  up->add_flag("--dedup-check", dedup_check_,
               "first hash FILE and ask whether the group already holds its content: if so the "
               "file ID comes without sending the bytes, else FILE is uploaded normally");
  up->callback([this] { exit_code_ = Upload(); });

  auto* down = app->add_subcommand("download", "download a file (to stdout without -o)");
  down->add_option("FILE_ID", file_id_, "file ID")->required();
  down->add_option("-o,--output", output_, "write to this path (atomically)");
  down->callback([this] { exit_code_ = Download(); });

  auto* del = app->add_subcommand("delete", "delete a file");
  del->add_option("FILE_ID", file_id_, "file ID")->required();
  del->callback([this] { exit_code_ = Delete(); });

  auto* info = app->add_subcommand("info", "size, CRC32, creation time and source of a file");
  info->add_option("FILE_ID", file_id_, "file ID")->required();
  info->callback([this] { exit_code_ = Info(); });

  auto* meta = app->add_subcommand("meta", "get or set a file's metadata");
  meta->require_subcommand(1);
  auto* mget = meta->add_subcommand("get", "print metadata as key=value lines");
  mget->add_option("FILE_ID", file_id_, "file ID")->required();
  mget->callback([this] { exit_code_ = MetaGet(); });
  auto* mset = meta->add_subcommand("set", "replace (or with --merge, update) metadata");
  mset->add_option("FILE_ID", file_id_, "file ID")->required();
  mset->add_option("PAIRS", meta_, "key=value ...");
  mset->add_flag("--merge", merge_, "merge into the existing metadata instead of replacing it");
  mset->callback([this] { exit_code_ = MetaSet(); });

  auto* st = app->add_subcommand("status", "groups, members, states, space and sync lag");
  st->callback([this] { exit_code_ = Status(); });

  auto* fsck = app->add_subcommand(
      "fsck", "compare the members of a group file by file; exit 0 only when all hold every file "
              "intact (needs the cluster secret)");
  fsck->add_option("GROUP", group_, "group to check (default: all)");
  fsck->add_flag("--repair", repair_, "copy good versions onto members that lack them");
  fsck->add_flag("--verify", verify_, "read every file and check it against its CRC32 (slow)");
  fsck->add_option("--secret", g_->secret,
                   "cluster secret (default: DEPOT_CLUSTER_SECRET or cluster_secret in client.conf)");
  fsck->callback([this] { exit_code_ = Fsck(); });

  auto* dscan = app->add_subcommand(
      "dedup-scan",
      "scan every ACTIVE member of a group for duplicate contents and check the dht's dedup "
      "records; exit 0 only when nothing needs repair (with --repair: when it was repaired) "
      "(needs the cluster secret)");
  dscan->add_option("GROUP", group_, "group to scan (default: all)");
  dscan->add_flag("--repair", repair_,
                  "merge duplicate copies and fix the dht records (default: only count)");
  dscan->add_option("--secret", g_->secret,
                    "cluster secret (default: DEPOT_CLUSTER_SECRET or cluster_secret in "
                    "client.conf)");
  dscan->callback([this] { exit_code_ = DedupScan(); });

  auto* url = app->add_subcommand(
      "url", "print an HTTP URL of a file, signed with the anti-leech token when a secret is given");
  url->add_option("FILE_ID", file_id_, "file ID")->required();
  url->add_option("--base", url_.base,
                  "http://host:port to use (default: the HTTP address a tracker gives for a member "
                  "that has the file: its nginx in a cluster from scripts/cluster.sh)");
  url->add_option("--http-secret", url_.secret,
                  "the group's http_secret (default: DEPOT_HTTP_SECRET; none: an unsigned URL)");
  url->add_option("--ttl", url_.ttl,
                  "seconds the URL stays valid, up to twice --token-ttl (default: --token-ttl)")
      ->check(CLI::Range(int64_t{1}, int64_t{60} * 86400));
  url->add_option("--token-ttl", url_.token_ttl, "the storages' http_token_ttl (default 900)")
      ->check(CLI::Range(int64_t{1}, int64_t{30} * 86400));
  url->add_option("--filename", url_.filename, "download name (Content-Disposition)");
  url->add_option("--slave-prefix", prefix_,
                  "the URL of FILE_ID's slave with this prefix (a thumbnail, a transcode)");
  url->add_option("--slave-ext", slave_ext_, "the slave's extension (default: the master's)");
  url->callback([this] { exit_code_ = Url(); });

  auto* upa = app->add_subcommand(
      "upload-appender", "upload a file as an appender file (append, modify and truncate work on "
                         "it); prints its file ID");
  upa->add_option("FILE", file_, "file to upload")->required()->check(CLI::ExistingFile);
  upa->add_option("--group", group_, "store in this group (default: the tracker picks)");
  upa->add_option("--ext", ext_, "extension recorded in the file ID (default: from FILE)");
  upa->add_option("--meta", meta_, "metadata key=value (repeatable)");
  upa->callback([this] { exit_code_ = UploadAppender(); });

  auto* app_ = app->add_subcommand("append", "append a local file to an appender file");
  app_->add_option("FILE_ID", file_id_, "appender file ID")->required();
  app_->add_option("FILE", file_, "bytes to append")->required()->check(CLI::ExistingFile);
  app_->callback([this] { exit_code_ = Append(); });

  auto* mod = app->add_subcommand(
      "modify", "overwrite an appender file from OFFSET (at most its size) with a local file");
  mod->add_option("FILE_ID", file_id_, "appender file ID")->required();
  mod->add_option("OFFSET", offset_, "byte offset")->required();
  mod->add_option("FILE", file_, "bytes to write")->required()->check(CLI::ExistingFile);
  mod->callback([this] { exit_code_ = Modify(); });

  auto* tr = app->add_subcommand("truncate", "cut an appender file to SIZE bytes");
  tr->add_option("FILE_ID", file_id_, "appender file ID")->required();
  tr->add_option("SIZE", offset_, "new size, at most the current one")->required();
  tr->callback([this] { exit_code_ = Truncate(); });

  auto* regen = app->add_subcommand(
      "regenerate", "turn a finished appender file into a normal file; prints its new file ID "
                    "(the old one is gone)");
  regen->add_option("FILE_ID", file_id_, "appender file ID")->required();
  regen->callback([this] { exit_code_ = Regenerate(); });

  auto* slave = app->add_subcommand(
      "upload-slave", "upload a slave file of MASTER_ID, named after it with PREFIX; prints its "
                      "file ID");
  slave->add_option("MASTER_ID", file_id_, "the master's file ID")->required();
  slave->add_option("PREFIX", prefix_, "slave prefix, 1-16 of [A-Za-z0-9_-], e.g. _150x150")
      ->required();
  slave->add_option("FILE", file_, "file to upload")->required()->check(CLI::ExistingFile);
  slave->add_option("--ext", ext_, "extension (default: from FILE)");
  slave->add_option("--meta", meta_, "metadata key=value (repeatable)");
  slave->callback([this] { exit_code_ = UploadSlave(); });

  auto* bench = app->add_subcommand(
      "bench", "N connections upload, download or delete files of a size for a while");
  bench->add_option("--op", bench_.op, "upload, download or delete")
      ->check(CLI::IsMember({"upload", "download", "delete"}));
  bench->add_option("--size", bench_.size, "file size in bytes")->check(CLI::Range(0ULL, 1ULL << 32));
  bench->add_option("--connections,-c", bench_.connections, "concurrent connections")
      ->check(CLI::Range(1, 512));
  bench->add_option("--duration,-d", bench_.duration, "seconds to run")->check(CLI::Range(0.1, 3600.0));
  bench->add_option("--files", bench_.files, "files prepared for download/delete")
      ->check(CLI::Range(1, 10000000));
  bench->add_option("--group", bench_.group, "group to use");
  bench->add_flag("--unique", bench_.unique,
                  "upload: make every file new content (default: the same bytes every time)");
  bench->callback([this] { exit_code_ = RunBench(*g_, bench_); });
}

std::string Commands::ExtFor() const {
  if (!ext_.empty()) return ext_;
  size_t slash = file_.rfind('/');
  std::string base = slash == std::string::npos ? file_ : file_.substr(slash + 1);
  size_t dot = base.rfind('.');
  if (dot != std::string::npos && dot > 0 && base.size() - dot - 1 <= 6) return base.substr(dot + 1);
  return "";
}

namespace {

int PrintFileId(const GlobalOptions& g, const Result<std::string>& id,
                const bool* instant = nullptr) {
  if (!id.ok()) return Fail(g, id.status());
  if (g.json) {
    json j = {{"file_id", *id}};
    if (instant != nullptr) j["instant"] = *instant;
    PrintJson(j);
  } else {
    std::printf("%s\n", id->c_str());
  }
  return 0;
}

}  // namespace

int Commands::UploadWith(UploadCall call, const bool* instant) {
  auto client = MakeClient(*g_);
  if (!client.ok()) return Fail(*g_, client.status());
  UploadOptions o;
  o.group = group_;
  o.ext = ExtFor();
  auto meta = ParsePairs(meta_);
  if (!meta.ok()) return Fail(*g_, meta.status());
  o.meta = *meta;
  ProgressBar bar("upload", !g_->quiet && !g_->json);
  Result<std::string> id = call(**client, o, bar.Callback());
  return PrintFileId(*g_, id, instant);
}

int Commands::Upload() {
  if (!dedup_check_) {
    return UploadWith([this](Client& c, const UploadOptions& o, const ProgressFn& p) {
      return c.UploadFile(file_, o, p);
    });
  }
  bool instant = false;
  return UploadWith(
      [this, &instant](Client& c, const UploadOptions& o,
                       const ProgressFn& p) -> Result<std::string> {
        Result<InstantResult> r = depot::Status::Internal("not tried");
        {
          ProgressBar hashing("hash", !g_->quiet && !g_->json);
          r = c.InstantUploadFile(file_, o, hashing.Callback());
        }
        if (!r.ok()) return r.status();
        if (r->granted) {
          instant = true;
          return r->file_id;
        }
        return c.UploadFile(file_, o, p);
      },
      &instant);
}

int Commands::UploadAppender() {
  return UploadWith([this](Client& c, const UploadOptions& o, const ProgressFn& p) {
    return c.UploadAppenderFile(file_, o, p);
  });
}

int Commands::Append() {
  auto client = MakeClient(*g_);
  if (!client.ok()) return Fail(*g_, client.status());
  ProgressBar bar("append", !g_->quiet && !g_->json);
  depot::Status s = (*client)->AppendFile(file_id_, file_, bar.Callback());
  if (!s.ok()) return Fail(*g_, s);
  if (g_->json) PrintJson({{"file_id", file_id_}, {"appended", file_}});
  return 0;
}

int Commands::Modify() {
  auto client = MakeClient(*g_);
  if (!client.ok()) return Fail(*g_, client.status());
  ProgressBar bar("modify", !g_->quiet && !g_->json);
  depot::Status s = (*client)->ModifyFile(file_id_, offset_, file_, bar.Callback());
  if (!s.ok()) return Fail(*g_, s);
  if (g_->json) PrintJson({{"file_id", file_id_}, {"offset", offset_}, {"written", file_}});
  return 0;
}

int Commands::Truncate() {
  auto client = MakeClient(*g_);
  if (!client.ok()) return Fail(*g_, client.status());
  depot::Status s = (*client)->Truncate(file_id_, offset_);
  if (!s.ok()) return Fail(*g_, s);
  if (g_->json) PrintJson({{"file_id", file_id_}, {"size", offset_}});
  return 0;
}

int Commands::Regenerate() {
  auto client = MakeClient(*g_);
  if (!client.ok()) return Fail(*g_, client.status());
  return PrintFileId(*g_, (*client)->RegenerateAppender(file_id_));
}

int Commands::UploadSlave() {
  group_.clear();  // a slave goes to its master's group
  return UploadWith([this](Client& c, const UploadOptions& o, const ProgressFn& p) {
    return c.UploadSlaveFile(file_id_, prefix_, file_, o, p);
  });
}

int Commands::Download() {
  auto client = MakeClient(*g_);
  if (!client.ok()) return Fail(*g_, client.status());
  ProgressBar bar("download", !g_->quiet && !g_->json);
  depot::Status s = output_.empty() ? (*client)->DownloadToFd(file_id_, STDOUT_FILENO, 0, 0, nullptr)
                                    : (*client)->DownloadToFile(file_id_, output_, bar.Callback());
  if (!s.ok()) return Fail(*g_, s);
  if (g_->json && !output_.empty()) PrintJson({{"file_id", file_id_}, {"path", output_}});
  return 0;
}

int Commands::Delete() {
  auto client = MakeClient(*g_);
  if (!client.ok()) return Fail(*g_, client.status());
  depot::Status s = (*client)->Delete(file_id_);
  if (!s.ok()) return Fail(*g_, s);
  if (g_->json) PrintJson({{"deleted", file_id_}});
  return 0;
}

int Commands::Info() {
  auto client = MakeClient(*g_);
  if (!client.ok()) return Fail(*g_, client.status());
  auto info = (*client)->Info(file_id_);
  if (!info.ok()) return Fail(*g_, info.status());
  char crc[16];
  std::snprintf(crc, sizeof crc, "%08x", info->crc32);
  if (g_->json) {
    PrintJson({{"file_id", file_id_},
               {"size", info->size},
               {"create_time", info->create_time},
               {"crc32", crc},
               {"source_ip", info->source_ip}});
  } else {
    std::printf("size: %llu\ncreate_time: %s (%lld)\ncrc32: %s\nsource_ip: %s\n",
                static_cast<unsigned long long>(info->size), FormatTime(info->create_time).c_str(),
                static_cast<long long>(info->create_time), crc, info->source_ip.c_str());
  }
  return 0;
}

int Commands::MetaGet() {
  auto client = MakeClient(*g_);
  if (!client.ok()) return Fail(*g_, client.status());
  auto meta = (*client)->GetMeta(file_id_);
  if (!meta.ok()) return Fail(*g_, meta.status());
  if (g_->json) {
    PrintJson(json(*meta));
  } else {
    for (const auto& [k, v] : *meta) std::printf("%s=%s\n", k.c_str(), v.c_str());
  }
  return 0;
}

int Commands::MetaSet() {
  auto client = MakeClient(*g_);
  if (!client.ok()) return Fail(*g_, client.status());
  auto meta = ParsePairs(meta_);
  if (!meta.ok()) return Fail(*g_, meta.status());
  depot::Status s = (*client)->SetMeta(file_id_, *meta, merge_);
  if (!s.ok()) return Fail(*g_, s);
  if (g_->json) PrintJson({{"file_id", file_id_}, {"merged", merge_}});
  return 0;
}

int Commands::Status() {
  auto client = MakeClient(*g_);
  if (!client.ok()) return Fail(*g_, client.status());
  auto groups = (*client)->ClusterStatus();
  if (!groups.ok()) return Fail(*g_, groups.status());
  // How far behind each member is: the largest lag any peer reports for it.
  auto lag_of = [&](const GroupStatus& g, const MemberStatus& m, int64_t* records, int64_t* secs) {
    *records = 0;
    *secs = 0;
    bool known = false;
    for (const auto& src : g.members) {
      for (const auto& r : src.sync) {
        if (r.peer != m.id) continue;
        known = true;
        *records += r.lag_records;
        *secs = std::max(*secs, r.lag_seconds);
      }
    }
    return known;
  };
  if (g_->json) {
    json arr = json::array();
    for (const auto& g : *groups) {
      json members = json::array();
      for (const auto& m : g.members) {
        json sync = json::array();
        for (const auto& r : m.sync) {
          sync.push_back({{"peer", r.peer},
                          {"synced_until", r.synced_until},
                          {"lag_records", r.lag_records},
                          {"lag_seconds", r.lag_seconds},
                          {"connected", r.connected}});
        }
        int64_t lag_records = 0, lag_seconds = 0;
        bool known = lag_of(g, m, &lag_records, &lag_seconds);
        members.push_back({{"id", m.id},
                           {"ip", m.ip},
                           {"port", m.port},
                           {"state", m.state_name},
                           {"repl_state", m.repl_state},
                           {"total_mb", m.total_mb},
                           {"free_mb", m.free_mb},
                           {"reserved_mb", m.reserved_mb},
                           {"uploads", m.uploads},
                           {"downloads", m.downloads},
                           {"last_heartbeat", m.last_heartbeat},
                           {"version", m.version},
                           {"binlog_seq", m.binlog_seq},
                           {"sync_lag_records", known ? json(lag_records) : json(nullptr)},
                           {"sync_lag_s", known ? json(lag_seconds) : json(nullptr)},
                           {"pushing_to", sync}});
      }
      arr.push_back({{"group", g.name},
                     {"total_mb", g.total_mb},
                     {"free_mb", g.free_mb},
                     {"writable", g.writable},
                     {"readable", g.readable},
                     {"members", members}});
    }
    PrintJson({{"groups", arr}});
    return 0;
  }
  for (const auto& g : *groups) {
    std::printf("group %s: %lld members, %lld writable, free %lld of %lld MB\n", g.name.c_str(),
                static_cast<long long>(g.members.size()), static_cast<long long>(g.writable),
                static_cast<long long>(g.free_mb), static_cast<long long>(g.total_mb));
    std::printf("  %-22s %-9s %10s %10s %10s %10s %9s  %s\n", "member", "state", "free MB",
                "total MB", "uploads", "downloads", "binlog", "behind (records, seconds)");
    for (const auto& m : g.members) {
      int64_t lag_records = 0, lag_seconds = 0;
      std::string lag = g.members.size() < 2 ? "-" : "unknown";
      if (lag_of(g, m, &lag_records, &lag_seconds)) {
        lag = lag_records == 0 ? "in sync"
                               : std::to_string(lag_records) + " records, " +
                                     std::to_string(lag_seconds) + " s";
      }
      std::printf("  %-22s %-9s %10lld %10lld %10lld %10lld %9lld  %s\n",
                  (m.ip + ":" + std::to_string(m.port)).c_str(), m.state_name.c_str(),
                  static_cast<long long>(m.free_mb), static_cast<long long>(m.total_mb),
                  static_cast<long long>(m.uploads), static_cast<long long>(m.downloads),
                  static_cast<long long>(m.binlog_seq), lag.c_str());
    }
  }
  return 0;
}

int Commands::Fsck() {
  auto client = MakeClient(*g_);
  if (!client.ok()) return Fail(*g_, client.status());
  FsckOptions fo;
  fo.group = group_;
  fo.repair = repair_;
  fo.verify = verify_;
  auto report = (*client)->Fsck(fo);
  if (!report.ok()) return Fail(*g_, report.status());
  if (g_->json) {
    json problems = json::array();
    for (const auto& p : report->problems) {
      problems.push_back({{"file_id", p.file_id},
                          {"member", p.member},
                          {"kind", p.kind},
                          {"repaired", p.repaired},
                          {"detail", p.detail}});
    }
    PrintJson({{"files", report->files},
               {"members", report->members},
               {"clean", report->clean()},
               {"problems", problems}});
  } else {
    for (const auto& p : report->problems) {
      std::printf("%-11s %-22s %s%s%s\n", p.kind.c_str(), p.member.c_str(), p.file_id.c_str(),
                  p.detail.empty() ? "" : "  (", p.detail.empty() ? "" : (p.detail + ")").c_str());
    }
    size_t repaired = 0;
    for (const auto& p : report->problems) repaired += p.repaired ? 1 : 0;
    std::printf("%lld files on %lld members: %zu problems, %zu repaired\n",
                static_cast<long long>(report->files), static_cast<long long>(report->members),
                report->problems.size(), repaired);
  }
  return report->clean() ? 0 : 5;
}

int Commands::DedupScan() {
  auto client = MakeClient(*g_);
  if (!client.ok()) return Fail(*g_, client.status());
  auto members = (*client)->DedupScan(group_, repair_);
  if (!members.ok()) return Fail(*g_, members.status());
  uint64_t problems = 0, collisions = 0, bytes_saved = 0;
  size_t dht_down = 0;
  for (const auto& m : *members) {
    problems += m.report.problems();
    collisions += m.report.collisions;
    bytes_saved += m.report.bytes_saved;
    dht_down += m.report.dht_ok ? 0 : 1;
  }
  if (g_->json) {
    json arr = json::array();
    for (const auto& m : *members) {
      const proto::DedupScanReport& r = m.report;
      arr.push_back({{"group", m.group},
                     {"member", m.member},
                     {"reconcile", m.reconcile},
                     {"report",
                      {{"files", r.files},
                       {"fingerprinted", r.fingerprinted},
                       {"contents", r.contents},
                       {"merged", r.merged},
                       {"registered", r.registered},
                       {"refs_fixed", r.refs_fixed},
                       {"records_removed", r.records_removed},
                       {"collisions", r.collisions},
                       {"stale_entries", r.stale_entries},
                       {"bytes_saved", r.bytes_saved},
                       {"dht_ok", r.dht_ok}}}});
    }
    PrintJson(arr);
  } else {
    auto u = [](uint64_t v) { return static_cast<unsigned long long>(v); };
    for (const auto& m : *members) {
      const proto::DedupScanReport& r = m.report;
      std::printf("%s %-22s %s files=%llu fingerprinted=%llu contents=%llu merged=%llu "
                  "registered=%llu refs_fixed=%llu records_removed=%llu collisions=%llu "
                  "stale_entries=%llu bytes_saved=%llu dht_ok=%s\n",
                  m.group.c_str(), m.member.c_str(), m.reconcile ? "reconcile" : "member   ",
                  u(r.files), u(r.fingerprinted), u(r.contents), u(r.merged), u(r.registered),
                  u(r.refs_fixed), u(r.records_removed), u(r.collisions), u(r.stale_entries),
                  u(r.bytes_saved), r.dht_ok ? "yes" : "no");
    }
    std::printf("%zu members: %llu problems%s, %llu collisions, %llu bytes saved", members->size(),
                u(problems), repair_ ? " repaired" : "", u(collisions), u(bytes_saved));
    if (dht_down > 0) std::printf("; the dht was unreachable from %zu members", dht_down);
    std::printf("\n");
    if (!repair_ && problems > 0) {
      std::printf("%llu problems found; run with --repair\n", u(problems));
    }
  }
  return dht_down == 0 && (repair_ || problems == 0) ? 0 : 1;
}

namespace {

// RFC 3986 percent-encoding of a query value (unreserved characters kept).
std::string PercentEncode(std::string_view in) {
  std::string out;
  for (unsigned char c : in) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

}  // namespace

// The FastDFS token (DESIGN.md section 8) is valid while |now - ts| <= http_token_ttl, so a URL
// meant to last S seconds carries ts = now + S - ttl, which works for S up to twice the ttl.
int Commands::Url() {
  if (!prefix_.empty()) {
    auto slave = SlaveFileId(file_id_, prefix_, slave_ext_);
    if (!slave.ok()) return Fail(*g_, slave.status());
    file_id_ = *slave;
  } else if (!slave_ext_.empty()) {
    return Fail(*g_, Status::InvalidArgument("--slave-ext needs --slave-prefix"));
  }
  auto id = proto::ParseFileId(file_id_);
  if (!id.ok()) return Fail(*g_, Status::InvalidArgument("not a file ID:", file_id_));
  std::string base = url_.base;
  if (base.empty()) {
    auto client = MakeClient(*g_);
    if (!client.ok()) return Fail(*g_, client.status());
    auto node = (*client)->QueryFetch(file_id_);
    if (!node.ok()) return Fail(*g_, node.status());
    auto groups = (*client)->ClusterStatus();
    if (!groups.ok()) return Fail(*g_, groups.status());
    for (const auto& g : *groups) {
      for (const auto& m : g.members) {
        if (m.ip == node->ip && m.port == node->port && m.http_port > 0) {
          base = "http://" + m.ip + ":" + std::to_string(m.http_port);
        }
      }
    }
    if (base.empty()) {
      return Fail(*g_, Status::NotFound("no HTTP address is known for " + node->ip + ":" +
                                        std::to_string(node->port) + "; pass --base"));
    }
  }
  while (!base.empty() && base.back() == '/') base.pop_back();
  if (base.rfind("http://", 0) != 0 && base.rfind("https://", 0) != 0) base = "http://" + base;
  std::string secret = url_.secret;
  if (secret.empty() && std::getenv("DEPOT_HTTP_SECRET") != nullptr) {
    secret = std::getenv("DEPOT_HTTP_SECRET");
  }
  std::string query;
  int64_t now = UnixSeconds();
  int64_t expires = 0;
  if (!secret.empty()) {
    int64_t ttl = url_.ttl > 0 ? url_.ttl : url_.token_ttl;
    if (ttl > 2 * url_.token_ttl) {
      return Fail(*g_, Status::InvalidArgument(
                           "--ttl can be at most twice the storages' http_token_ttl (--token-ttl " +
                           std::to_string(url_.token_ttl) + ")"));
    }
    int64_t ts = now + ttl - url_.token_ttl;
    expires = now + ttl;
    query = "token=" + proto::MakeHttpToken(id->RemoteName(), secret, ts) +
            "&ts=" + std::to_string(ts);
  } else if (url_.ttl > 0) {
    return Fail(*g_, Status::InvalidArgument(
                         "--ttl needs the http secret (--http-secret or DEPOT_HTTP_SECRET)"));
  }
  if (!url_.filename.empty()) {
    query += (query.empty() ? "" : "&") + std::string("filename=") + PercentEncode(url_.filename);
  }
  std::string url = base + "/" + id->ToString() + (query.empty() ? "" : "?" + query);
  if (g_->json) {
    json j = {{"file_id", id->ToString()}, {"url", url}, {"signed", !secret.empty()}};
    if (expires > 0) j["expires_at"] = expires;
    PrintJson(j);
  } else {
    std::printf("%s\n", url.c_str());
  }
  return 0;
}

}  // namespace depot::cli
