#include "storage/replicator.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <set>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>

#include "common/base/conf.h"
#include "common/base/hash.h"
#include "common/base/logging.h"
#include "common/net/blocking_conn.h"
#include "common/proto/dedup.h"
#include "common/proto/file_id.h"
#include "storage/dedup.h"
#include "storage/storage_server.h"
#include "storage/trunk.h"
#include "storage/tracker_reporter.h"

namespace depot::storage {

const char* ReplStateName(ReplState s) {
  switch (s) {
    case ReplState::kWaitSync: return "wait_sync";
    case ReplState::kSyncing: return "syncing";
    case ReplState::kActive: return "active";
  }
  return "wait_sync";
}

namespace {

constexpr int kFlushEvery = 64;        // own records per SYNC_FLUSH
constexpr int kIdlePingSeconds = 30;   // ACTIVE_TEST on an idle push connection
constexpr int64_t kDumpStallNs = 30LL * 1000 * 1000 * 1000;
constexpr int64_t kUnlistedNs = 60LL * 1000 * 1000 * 1000;  // before a pusher is retired
constexpr int64_t kViewTtlNs = 15LL * 1000 * 1000 * 1000;   // a tracker's member list is fresh

std::string Hex64(uint64_t v) {
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// Where a pusher stands, persisted as its hint (`sync/out/<peer>`).
struct PushMark {
  BinlogPos pos;
  uint64_t seq = 0;        // last record passed
  uint32_t watermark = 0;  // its watermark
  uint64_t origin = 0;     // last own record passed (for the validity check)
  uint64_t oseq = 0;
  std::string Encode() const {
    char buf[160];
    std::snprintf(buf, sizeof buf, "%u %llu %llu %u %llx %llu", pos.segment,
                  static_cast<unsigned long long>(pos.offset), static_cast<unsigned long long>(seq),
                  watermark, static_cast<unsigned long long>(origin),
                  static_cast<unsigned long long>(oseq));
    return buf;
  }
  static std::optional<PushMark> Decode(const std::string& s) {
    PushMark m;
    unsigned long long off = 0, seq = 0, origin = 0, oseq = 0;
    if (std::sscanf(s.c_str(), "%u %llu %llu %u %llx %llu", &m.pos.segment, &off, &seq,
                    &m.watermark, &origin, &oseq) != 6) {
      return std::nullopt;
    }
    m.pos.offset = off;
    m.seq = seq;
    m.origin = origin;
    m.oseq = oseq;
    return m;
  }
};

}  // namespace

// Pushes binlog records to one peer: its own records (an ordinary pusher) or every record up to
// the binlog's end when it started (a catch-up dump). Owns one thread.
class PeerPusher {
 public:
  PeerPusher(Replicator* r, StorageServer* s, std::string self_id, std::string peer_id,
             std::string ip, int port, bool dump)
      : r_(r), s_(s), self_id_(std::move(self_id)), peer_(std::move(peer_id)), ip_(std::move(ip)),
        port_(port), dump_(dump) {
    if (!dump_) {
      auto hint = s_->meta().Get("sync/out/" + peer_);
      if (hint.ok() && *hint) mark_ = PushMark::Decode(**hint).value_or(PushMark());
    }
    synced_until_ = mark_.seq > 0 ? mark_.watermark : r_->binlog().first_created() - 1;
    thread_ = std::thread([this] { Run(); });
  }
  ~PeerPusher() { Stop(); }

  void Stop() {
    stop_ = true;
    int fd = fd_.load();
    if (fd >= 0) shutdown(fd, SHUT_RDWR);
    r_->binlog().Wake();
    if (thread_.joinable()) thread_.join();
  }
  bool finished() const { return finished_.load(); }
  bool live() const { return live_.load(); }
  uint64_t durable_seq() const { return durable_seq_.load(); }
  const std::string& peer() const { return peer_; }

  proto::SyncReport Report() {
    proto::SyncReport rep;
    rep.peer = peer_;
    rep.connected = live_.load();
    uint64_t passed = passed_seq_.load();
    auto w = r_->binlog().CaughtUpWatermark(passed);
    rep.synced_until = w ? *w : synced_until_.load();
    uint64_t last = r_->binlog().last_seq();
    rep.lag_records = static_cast<int64_t>(last > passed ? last - passed : 0);
    if (rep.lag_records > 0) {
      int64_t oldest = pending_time_.load();
      if (oldest == 0) oldest = passed_time_.load();
      rep.lag_seconds = oldest > 0 ? std::max<int64_t>(0, UnixSeconds() - oldest) : 0;
    }
    return rep;
  }

 private:
  enum class Kind { kRecord, kSkip, kFlush };
  struct Item {
    Kind kind;
    PushMark mark;  // where the pusher stands once this item is answered
    uint32_t time = 0;
    std::string link;  // a create sent as a dedup link: its name
  };

  void Run() {
    int backoff_ms = 200;
    while (!stop_) {
      Status s = Session();
      // A session that got going resets the backoff: the next attempt comes soon.
      if (live_.exchange(false)) backoff_ms = 200;
      if (stop_ || finished_) return;
      if (!s.ok() && s.code() != StatusCode::kBusy) {
        if (!warned_) DEPOT_LOG_WARN("sync to {}: {} (retrying)", peer_, s.ToString());
        warned_ = true;
        r_->CountSyncError(peer_);
      }
      for (int waited = 0; waited < backoff_ms && !stop_; waited += 50) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      backoff_ms = std::min(backoff_ms * 2, 5000);
    }
  }

  Status Session() {
    const StorageConfig& cfg = s_->config();
    DEPOT_ASSIGN_OR_RETURN(auto conn, net::BlockingConn::Connect(ip_, port_, 3000));
    fd_ = conn->fd();
    // Forget the descriptor before `conn` closes it, so that Stop() never shuts down a reused one.
    struct ForgetFd {
      std::atomic<int>* fd;
      ~ForgetFd() { fd->store(-1); }
    } forget{&fd_};
    if (stop_) return Status::Unavailable("stopping");
    conn->set_timeout_ms(cfg.network_timeout * 1000);
    DEPOT_RETURN_IF_ERROR(conn->Authenticate(cfg.cluster_secret));
    proto::SyncHello hello{self_id_, dump_};
    DEPOT_ASSIGN_OR_RETURN(auto rep, conn->Call(proto::kDepotSyncHello, proto::EncodeSyncHello(hello)));
    if (rep.status != 0) return proto::WireToStatus(rep.status, "sync hello to " + peer_);
    DEPOT_ASSIGN_OR_RETURN(auto hr, proto::DecodeSyncHelloReply(rep.body));
    if (!hr.accepting) return Status::Busy("peer is catching up:", peer_);
    applied_ = std::move(hr.applied);
    auto applied = [&](uint64_t origin) {
      auto it = applied_.find(origin);
      return it == applied_.end() ? 0 : it->second;
    };

    Binlog& log = r_->binlog();
    // Resume from the hint when the peer confirms it has everything before it.
    PushMark at;
    if (!dump_ && mark_.seq > 0 && (mark_.origin == 0 || applied(mark_.origin) >= mark_.oseq)) {
      at = mark_;
    }
    BinlogReader reader(&log, at.pos);
    BinlogPos dump_end = log.end();
    passed_seq_ = at.seq;
    // From the start: nothing of ours is known to be there (the peer may have lost its data).
    synced_until_ = at.seq > 0 ? at.watermark : log.first_created() - 1;
    durable_seq_ = std::min(durable_seq_.load(), at.seq);
    live_ = true;
    if (warned_) DEPOT_LOG_INFO("sync to {}: connected", peer_);
    warned_ = false;

    std::deque<Item> inflight;
    PushMark sent = at;  // the mark after the last item queued
    uint64_t last_read = at.seq;
    int unflushed = 0;
    int64_t idle_since = MonotonicNanos();
    bool at_end = false;
    const size_t window = static_cast<size_t>(cfg.sync_window);
    for (;;) {
      if (stop_) return Status::Unavailable("stopping");
      // 1. Queue what the window allows.
      at_end = false;
      while (inflight.size() < window) {
        if (dump_ && !(reader.pos().segment < dump_end.segment ||
                       (reader.pos().segment == dump_end.segment &&
                        reader.pos().offset < dump_end.offset))) {
          at_end = true;
          break;
        }
        DEPOT_ASSIGN_OR_RETURN(auto rec, reader.Next());
        if (!rec) {
          at_end = true;
          break;
        }
        last_read = rec->seq;
        bool own = log.IsOwn(rec->origin);
        sent.pos = reader.pos();
        sent.seq = rec->seq;
        sent.watermark = rec->watermark;
        if (own) {
          sent.origin = rec->origin;
          sent.oseq = rec->oseq;
        }
        if ((!dump_ && !own) || applied(rec->origin) >= rec->oseq) {
          inflight.push_back({Kind::kSkip, sent, rec->time, {}});
          if (own) ++unflushed;
          continue;
        }
        if (cfg.sync_delay_ms > 0) {
          for (int w = 0; w < cfg.sync_delay_ms && !stop_; w += 10) {
            std::this_thread::sleep_for(std::chrono::milliseconds(std::min(10, cfg.sync_delay_ms - w)));
          }
        }
        if (inflight.empty()) pending_time_ = rec->time;
        bool as_link = false;
        DEPOT_RETURN_IF_ERROR(SendRecord(*conn, *rec, &as_link));
        inflight.push_back({Kind::kRecord, sent, rec->time, as_link ? rec->name : std::string()});
        if (++unflushed >= kFlushEvery) {
          DEPOT_RETURN_IF_ERROR(conn->SendHeader(0, proto::kDepotSyncFlush));
          inflight.push_back({Kind::kFlush, sent, 0, {}});
          unflushed = 0;
        }
      }
      if (at_end && unflushed > 0) {
        DEPOT_RETURN_IF_ERROR(conn->SendHeader(0, proto::kDepotSyncFlush));
        inflight.push_back({Kind::kFlush, sent, 0, {}});
        unflushed = 0;
      }
      // 2. Answered items at the front: skips need no answer.
      while (!inflight.empty() && inflight.front().kind == Kind::kSkip) {
        Pass(inflight.front());
        inflight.pop_front();
      }
      if (inflight.empty()) {
        pending_time_ = 0;
        if (dump_ && at_end) {
          auto done = conn->Call(proto::kDepotSyncDumpDone, "");
          if (!done.ok()) return done.status();
          if (done->status != 0) return proto::WireToStatus(done->status, "dump done to " + peer_);
          DEPOT_LOG_INFO("catch-up dump to {} complete ({} records)", peer_, sent.seq);
          finished_ = true;
          return Status::OK();
        }
        if (MonotonicNanos() - idle_since > kIdlePingSeconds * 1000000000LL) {
          auto ping = conn->Call(proto::kActiveTest, "");
          if (!ping.ok()) return ping.status();
          idle_since = MonotonicNanos();
        }
        // Nothing is in flight: any byte or EOF from the peer now means it closed the connection
        // (it restarted or died). Notice it here rather than at the next push, so that live()
        // tells the truth to the write-quorum checks.
        struct pollfd pfd{conn->fd(), POLLIN | POLLRDHUP, 0};
        if (poll(&pfd, 1, 0) > 0) {
          return Status::Unavailable("sync to " + peer_ + ": connection closed by the peer");
        }
        log.WaitBeyond(last_read, 500);
        continue;
      }
      // 3. One answer.
      DEPOT_ASSIGN_OR_RETURN(auto h, conn->RecvHeader(1 << 16));
      if (h.body_len > 0) {
        std::string skip(h.body_len, '\0');
        DEPOT_RETURN_IF_ERROR(conn->RecvExact(skip.data(), skip.size()));
      }
      Item item = inflight.front();
      inflight.pop_front();
      if (h.status == ENOENT && !item.link.empty()) {
        // The peer has no copy of the content this file links to: the session starts again from
        // the last flush and sends this file's bytes instead (doc/dedup.md).
        if (send_bytes_.size() >= 100000) send_bytes_.clear();  // bounded; a peer asks again
        send_bytes_.insert(item.link);
        return Status::Unavailable("sync to " + peer_ + ": no link target for " + item.link);
      }
      if (h.status != 0) {
        return proto::WireToStatus(h.status, "sync record to " + peer_);
      }
      idle_since = MonotonicNanos();
      if (item.kind == Kind::kFlush) {
        durable_seq_ = item.mark.seq;
        if (!dump_) {
          mark_ = item.mark;
          Status ps = s_->meta().Put("sync/out/" + peer_, mark_.Encode());
          if (!ps.ok()) DEPOT_LOG_WARN("sync to {}: saving position: {}", peer_, ps.ToString());
        }
        r_->OnDurable();
      } else {
        Pass(item);
        r_->CountPushed(peer_);
      }
      while (!inflight.empty() && inflight.front().kind == Kind::kSkip) {
        Pass(inflight.front());
        inflight.pop_front();
      }
      pending_time_ = inflight.empty() ? 0 : inflight.front().time;
    }
  }

  void Pass(const Item& item) {
    passed_seq_ = item.mark.seq;
    synced_until_ = item.mark.watermark;
    passed_time_ = item.time;
  }

  Status SendRecord(net::BlockingConn& conn, const BinlogRecord& rec, bool* as_link) {
    proto::SyncRecordHead head;
    head.origin = rec.origin;
    head.oseq = rec.oseq;
    head.op = rec.op;
    head.name_len = static_cast<uint16_t>(rec.name.size());
    std::string data;
    std::string dedup_head;
    int fd = -1;
    std::shared_ptr<void> pin;  // a trunk slot stays its file's until the bytes are sent
    auto id = proto::ParseRemoteName(s_->config().group_name, rec.name);
    if (!id.ok()) {
      head.flags |= proto::kSyncFlagGone;  // cannot happen for records we wrote; keep the order
    } else if (rec.op == kOpCreate) {
      DEPOT_ASSIGN_OR_RETURN(StorePath * path, s_->PathForFile(*id));
      auto opened = StorageServer::OpenFile(path, *id);
      if (!opened.ok() && opened.status().code() == StatusCode::kNotFound) {
        head.flags |= proto::kSyncFlagGone;  // deleted since: its delete record follows
      } else if (!opened.ok()) {
        return opened.status();  // sent again in the next session
      } else {
        fd = opened->fd;
        pin = opened->pin;
        head.data_len = opened->size;
        if (opened->offset != 0 && lseek(fd, static_cast<off_t>(opened->offset), SEEK_SET) < 0) {
          Status err = Status::FromErrno(errno, "lseek trunk");
          close(fd);
          return err;
        }
        // A deduplicated file travels with its content key; one that shares its canonical
        // file's content travels as a link, without its bytes (doc/dedup.md).
        auto ref = id->InTrunk() ? Result<std::optional<DedupRef>>(std::optional<DedupRef>())
                                 : s_->dedup().GetIndex(rec.name);
        if (ref.ok() && ref->has_value()) {
          const DedupRef& r = **ref;
          dedup_head = proto::EncodeDedupHead(r.key, r.canonical);
          head.flags |= proto::kSyncFlagDedup;
          auto cid = proto::ParseRemoteName(s_->config().group_name, r.canonical);
          struct stat a, b;
          if (!r.canonical.empty() && r.canonical != rec.name && !send_bytes_.count(rec.name) &&
              cid.ok() && cid->store_path == id->store_path && fstat(fd, &a) == 0 &&
              stat(Dedup::HiddenPath(path, *cid).c_str(), &b) == 0 && a.st_ino == b.st_ino) {
            head.flags |= proto::kSyncFlagLink;
            head.data_len = 0;
            close(fd);
            fd = -1;
            *as_link = true;
          }
        }
      }
    } else if (rec.op == kOpAppend || rec.op == kOpModify) {
      // The file's current bytes of the changed range: when a later change has touched them
      // too, its own record follows, so the peer ends with the current content either way.
      head.version = rec.offset;
      DEPOT_ASSIGN_OR_RETURN(StorePath * path, s_->PathForFile(*id));
      std::string full = path->FullPath(id->RelativePath());
      struct stat st;
      int open_errno = 0;
      {
        // The record is written before the bytes, under this lock: once we hold it, they are in.
        auto lock = s_->ContentLock(id->RemoteName());
        fd = open(full.c_str(), O_RDONLY | O_CLOEXEC);
        open_errno = errno;
        if (fd >= 0 && fstat(fd, &st) != 0) {
          Status err = Status::FromErrno(errno, "fstat", full);
          close(fd);
          return err;
        }
      }
      if (fd < 0 && open_errno == ENOENT) {
        head.flags |= proto::kSyncFlagGone;
      } else if (fd < 0) {
        return Status::FromErrno(open_errno, "open", full);
      } else {
        uint64_t size = static_cast<uint64_t>(st.st_size);
        head.data_len = size > rec.offset ? std::min(rec.length, size - rec.offset) : 0;
        if (lseek(fd, static_cast<off_t>(rec.offset), SEEK_SET) < 0) {
          Status err = Status::FromErrno(errno, "lseek", full);
          close(fd);
          return err;
        }
      }
    } else if (rec.op == kOpTruncate) {
      // The file's size now, not the record's: a crash between a truncate's record and the cut
      // leaves the file uncut here, and the peers must keep what the source keeps.
      DEPOT_ASSIGN_OR_RETURN(StorePath * path, s_->PathForFile(*id));
      std::string full = path->FullPath(id->RelativePath());
      struct stat st;
      int rc, stat_errno;
      {
        auto lock = s_->ContentLock(id->RemoteName());
        rc = stat(full.c_str(), &st);
        stat_errno = errno;
      }
      if (rc == 0) {
        head.version = static_cast<uint64_t>(st.st_size);
      } else if (stat_errno == ENOENT) {
        head.flags |= proto::kSyncFlagGone;
      } else {
        return Status::FromErrno(stat_errno, "stat", full);
      }
    } else if (rec.op == kOpMeta) {
      std::string key = id->RemoteName();
      std::lock_guard<std::mutex> l(s_->MetaLock("m/" + key));
      auto v = s_->meta().Get("mv/" + key);
      if (v.ok() && *v) head.version = std::strtoull((*v)->c_str(), nullptr, 10);
      auto m = s_->meta().Get("m/" + key);
      if (m.ok() && *m) {
        data = std::move(**m);
        head.data_len = data.size();
      } else if (head.version == 0) {
        head.flags |= proto::kSyncFlagGone;
      }
    }
    std::string prefix = proto::EncodeSyncRecordHead(head) + rec.name + dedup_head;
    Status s = conn.SendHeader(prefix.size() + head.data_len, proto::kDepotSyncRecord);
    if (s.ok()) s = conn.SendAll(prefix.data(), prefix.size());
    if (s.ok() && fd >= 0) s = conn.SendFromFile(fd, head.data_len);
    if (s.ok() && !data.empty()) s = conn.SendAll(data.data(), data.size());
    if (fd >= 0) close(fd);
    return s;
  }

  Replicator* r_;
  StorageServer* s_;
  std::string self_id_, peer_, ip_;
  int port_;
  bool dump_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> finished_{false};
  std::atomic<bool> live_{false};
  std::atomic<int> fd_{-1};
  bool warned_ = false;
  PushMark mark_;  // the persisted hint (pusher thread only)
  // Dedup links the peer could not make: sent with their bytes from now on (pusher thread only).
  std::set<std::string> send_bytes_;
  std::map<uint64_t, uint64_t> applied_;
  std::atomic<uint64_t> passed_seq_{0};
  std::atomic<uint64_t> durable_seq_{0};
  std::atomic<uint32_t> synced_until_{0};
  std::atomic<int64_t> passed_time_{0};
  std::atomic<int64_t> pending_time_{0};
};

Replicator::Replicator(StorageServer* server) : server_(server) {}

Replicator::~Replicator() { Stop(); }

Status Replicator::Open() {
  DEPOT_ASSIGN_OR_RETURN(binlog_, Binlog::Open(server_->config().base_path + "/binlog"));
  DEPOT_RETURN_IF_ERROR(server_->meta().Scan("sync/applied/", [&](const std::string& k,
                                                                 const std::string& v) {
    uint64_t origin = std::strtoull(k.c_str() + 13, nullptr, 16);
    applied_[origin] = std::strtoull(v.c_str(), nullptr, 10);
  }));
  {
    // A pusher's position hint may lie past a tail that Open() cut: the next records take those
    // bytes, and a pusher resuming there would skip them. Such hints are dropped (the pusher then
    // reads from the start and skips what its peer says it has).
    BinlogPos end = binlog_->end();
    std::vector<std::string> stale;
    DEPOT_RETURN_IF_ERROR(server_->meta().Scan("sync/out/", [&](const std::string& k,
                                                              const std::string& v) {
      auto m = PushMark::Decode(v);
      if (!m || m->pos.segment > end.segment ||
          (m->pos.segment == end.segment && m->pos.offset > end.offset)) {
        stale.push_back(k);
      }
    }));
    for (const auto& k : stale) {
      DEPOT_LOG_WARN("binlog was cut: dropping the position hint {}", k);
      DEPOT_RETURN_IF_ERROR(server_->meta().Delete(k));
    }
  }
  if (auto since = binlog_->reannounce_since()) {
    DEPOT_RETURN_IF_ERROR(ReannounceRecentFiles(*since));
    DEPOT_RETURN_IF_ERROR(binlog_->Sync());
    DEPOT_RETURN_IF_ERROR(binlog_->ClearReannounce());
  }
  DEPOT_ASSIGN_OR_RETURN(auto caught_up, server_->meta().Get("sys/caught_up"));
  // A server with history (a binlog that has records) is a member that has caught up before.
  if (caught_up || binlog_->last_seq() > 0) state_ = ReplState::kActive;
  auto& reg = server_->metrics_registry();
  lag_records_ = &prometheus::BuildGauge()
                      .Name("depot_sync_lag_records")
                      .Help("Binlog records a peer has not applied yet, by peer")
                      .Register(reg);
  lag_seconds_ = &prometheus::BuildGauge()
                      .Name("depot_sync_lag_seconds")
                      .Help("Age of the oldest record a peer has not applied yet, by peer")
                      .Register(reg);
  pushed_ = &prometheus::BuildCounter()
                 .Name("depot_sync_records_pushed_total")
                 .Help("Binlog records pushed to and applied by a peer, by peer")
                 .Register(reg);
  errors_ = &prometheus::BuildCounter()
                 .Name("depot_sync_errors_total")
                 .Help("Failed push sessions (connection or peer errors), by peer")
                 .Register(reg);
  applied_total_ = &prometheus::BuildCounter()
                        .Name("depot_sync_records_applied_total")
                        .Help("Records received from peers and applied here")
                        .Register(reg)
                        .Add({});
  binlog_seq_ = &prometheus::BuildGauge()
                     .Name("depot_binlog_seq")
                     .Help("Sequence number of the last binlog record")
                     .Register(reg)
                     .Add({});
  repl_state_ = &prometheus::BuildGauge()
                     .Name("depot_replication_state")
                     .Help("0 wait_sync, 1 syncing, 2 active (caught up)")
                     .Register(reg)
                     .Add({});
  return Status::OK();
}

// After a damaged binlog tail, the records of the last changes may be gone, and with them the
// pushes of the files they created. Every file created since shortly before the last good record
// is announced again as this server's create: peers that have it skip it (it is intact there, or
// deleted: tombstone), the others receive it. Deletes lost in the tail are found by fsck.
Status Replicator::ReannounceRecentFiles(uint32_t last_good) {
  uint32_t since = last_good > 60 ? last_good - 60 : 0;
  int n = 0;
  for (auto& p : server_->paths()) {
    Status inner;
    DEPOT_RETURN_IF_ERROR(p->ForEachFile([&](const std::string& name) {
      auto id = proto::ParseRemoteName(server_->config().group_name, name);
      if (!inner.ok() || !id.ok() || id->fields.create_time < since) return;
      auto r = binlog_->AppendOwn(kOpCreate, name);
      if (!r.ok()) inner = r.status();
      ++n;
    }));
    DEPOT_RETURN_IF_ERROR(inner);
    if (p->trunk() != nullptr) {
      for (const auto& name : p->trunk()->CreatedSince(since)) {
        DEPOT_RETURN_IF_ERROR(binlog_->AppendOwn(kOpCreate, name).status());
        ++n;
      }
    }
  }
  DEPOT_LOG_WARN("binlog damaged: announced {} files created since {} again", n, since);
  return Status::OK();
}

void Replicator::Start() {
  coordinator_ = std::thread([this] { Coordinate(); });
}

void Replicator::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stop_) return;
    stop_ = true;
  }
  cv_.notify_all();
  if (coordinator_.joinable()) coordinator_.join();
  std::map<std::string, std::unique_ptr<PeerPusher>> pushers, dumps;
  std::vector<Waiter> waiters;
  {
    std::lock_guard<std::mutex> l(mu_);
    pushers.swap(pushers_);
    dumps.swap(dumps_);
    waiters.swap(waiters_);
  }
  pushers.clear();
  dumps.clear();
  for (auto& w : waiters) w.done(Status::Unavailable("storage is stopping"));
}

bool Replicator::sync_mode() const { return server_->config().replication == "sync"; }

void Replicator::UpdatePeers(const std::string& tracker, const std::string& self_id,
                             const std::vector<proto::PeerInfo>& peers) {
  std::lock_guard<std::mutex> l(mu_);
  self_id_ = self_id;
  int64_t now = MonotonicNanos();
  TrackerView& view = views_[tracker];
  view.at_ns = now;
  view.peers.clear();
  for (const auto& p : peers) {
    if (p.id == self_id) continue;
    view.peers.push_back({p.id, p.ip, p.port, p.state, p.http_port});
    last_listed_ns_[p.id] = now;
  }
  // The peers are every member some tracker listed lately (trackers may briefly disagree: one
  // that has just restarted has not heard from every member yet).
  peers_.clear();
  for (const auto& [addr, v] : views_) {
    if (now - v.at_ns > kViewTtlNs) continue;
    for (const auto& p : v.peers) {
      auto it = std::find_if(peers_.begin(), peers_.end(),
                             [&](const PeerAddr& x) { return x.id == p.id; });
      if (it == peers_.end()) {
        peers_.push_back(p);
      } else if (v.at_ns == now) {
        *it = p;  // the latest view's state
      }
    }
  }
  cv_.notify_all();
}

int Replicator::PeerHttpPort(const std::string& ip, int port) const {
  std::lock_guard<std::mutex> l(mu_);
  for (const auto& p : peers_) {
    if (p.ip == ip && p.port == port) return p.http_port;
  }
  return 0;
}

bool Replicator::AllPeersNewLocked(int64_t now) const {
  // Every tracker heard from lately must agree that no other member holds anything: a tracker
  // that lost its state (and lists this member alone) must not turn a wiped member ACTIVE while
  // another tracker knows its peers.
  bool any = false;
  for (const auto& [addr, v] : views_) {
    if (now - v.at_ns > kViewTtlNs) continue;
    any = true;
    for (const auto& p : v.peers) {
      if (p.state != static_cast<int>(proto::StorageState::kWaitSync)) return false;
    }
  }
  return any;
}

int Replicator::LivePeersLocked() const {
  int n = 0;
  for (const auto& [id, p] : pushers_) n += p->live() ? 1 : 0;
  return n;
}

Status Replicator::CheckQuorumPossible() {
  if (!sync_mode()) return Status::OK();
  int w = server_->config().write_quorum;
  std::lock_guard<std::mutex> l(mu_);
  int live = LivePeersLocked() + 1;
  if (live < w) {
    return Status::Unavailable("replication = sync needs " + std::to_string(w) +
                               " live members of the group; " + std::to_string(live) + " are up");
  }
  return Status::OK();
}

void Replicator::AwaitQuorum(uint64_t seq, std::function<void(Status)> done) {
  int need = server_->config().write_quorum - 1;
  if (!sync_mode() || need <= 0) return done(Status::OK());
  {
    std::lock_guard<std::mutex> l(mu_);
    int have = 0;
    for (const auto& [id, p] : pushers_) have += p->durable_seq() >= seq ? 1 : 0;
    if (have < need) {
      int64_t deadline = MonotonicNanos() + server_->config().network_timeout * 1000000000LL;
      waiters_.push_back({seq, deadline, std::move(done)});
      return;
    }
  }
  done(Status::OK());
}

void Replicator::OnDurable() {
  int need = server_->config().write_quorum - 1;
  std::vector<std::function<void(Status)>> ready;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      int have = 0;
      for (const auto& [id, p] : pushers_) have += p->durable_seq() >= it->seq ? 1 : 0;
      if (have >= need) {
        ready.push_back(std::move(it->done));
        it = waiters_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& d : ready) d(Status::OK());
}

void Replicator::FillHeartbeat(proto::HeartbeatInfo* hb) {
  hb->repl_state = ReplStateName(state_.load());
  hb->binlog_seq = static_cast<int64_t>(binlog_->last_seq());
  std::lock_guard<std::mutex> l(mu_);
  for (const auto& [id, p] : pushers_) hb->sync.push_back(p->Report());
}

prometheus::Gauge* Replicator::PeerGauge(prometheus::Family<prometheus::Gauge>* f,
                                         const std::string& peer) {
  return &f->Add({{"peer", peer}});
}

void Replicator::CountApplied() { applied_total_->Increment(); }
void Replicator::CountPushed(const std::string& peer) { pushed_->Add({{"peer", peer}}).Increment(); }
void Replicator::CountSyncError(const std::string& peer) {
  errors_->Add({{"peer", peer}}).Increment();
}

void Replicator::Coordinate() {
  bool warned_wait = false;
  bool saved_caught_up = false;
  for (;;) {
    std::string dump_to_ip, dump_to_id, self;
    int dump_to_port = 0;
    std::vector<Waiter> expired;
    std::vector<std::unique_ptr<PeerPusher>> retired;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait_for(l, std::chrono::milliseconds(250), [this] { return stop_; });
      if (stop_) return;
      self = self_id_;
      int64_t now_ns = MonotonicNanos();
      // Pushers follow the trackers' member lists.
      if (!views_.empty()) {  // a tracker has told us who we are and who the peers are
        for (const auto& p : peers_) {
          if (!pushers_.count(p.id)) {
            pushers_[p.id] = std::make_unique<PeerPusher>(this, server_, self_id_, p.id, p.ip,
                                                          p.port, /*dump=*/false);
          }
        }
        for (auto it = pushers_.begin(); it != pushers_.end();) {
          auto seen = last_listed_ns_.find(it->first);
          bool known = seen != last_listed_ns_.end() && now_ns - seen->second < kUnlistedNs;
          if (!known) {
            last_listed_ns_.erase(it->first);
            retired.push_back(std::move(it->second));
            it = pushers_.erase(it);
          } else {
            ++it;
          }
        }
      }
      for (auto it = dumps_.begin(); it != dumps_.end();) {
        auto seen = last_listed_ns_.find(it->first);
        bool listed = seen != last_listed_ns_.end() && now_ns - seen->second < kUnlistedNs;
        if (it->second->finished() || !listed) {
          retired.push_back(std::move(it->second));
          it = dumps_.erase(it);
        } else {
          ++it;
        }
      }
      // Quorum waiters: out of time, or not enough live members to ever complete.
      int64_t now = MonotonicNanos();
      bool too_few = sync_mode() && LivePeersLocked() + 1 < server_->config().write_quorum;
      for (auto it = waiters_.begin(); it != waiters_.end();) {
        if (too_few || now > it->deadline_ns) {
          expired.push_back(std::move(*it));
          it = waiters_.erase(it);
        } else {
          ++it;
        }
      }
      // Catch-up.
      ReplState st = state_.load();
      if (st == ReplState::kWaitSync && !views_.empty()) {
        const PeerAddr* active = nullptr;
        for (const auto& p : peers_) {
          if (p.state == static_cast<int>(proto::StorageState::kActive) && active == nullptr) {
            active = &p;
          }
        }
        bool all_new = AllPeersNewLocked(now);
        if (all_new) {
          // Nobody in the group has anything yet: this member starts the group's history.
          state_ = ReplState::kActive;
          DEPOT_LOG_INFO("replication: no peer holds data; {} is ACTIVE", self_id_);
        } else if (active != nullptr) {
          dump_to_id = active->id;
          dump_to_ip = active->ip;
          dump_to_port = active->port;
        } else if (!warned_wait) {
          DEPOT_LOG_WARN("replication: new member waits for an ACTIVE peer to copy from");
          warned_wait = true;
        }
      } else if (st == ReplState::kSyncing) {
        int64_t last = std::max(dump_requested_ns_, last_dump_activity_ns_.load());
        if (now - last > kDumpStallNs) {
          DEPOT_LOG_WARN("replication: catch-up from {} stalled; asking again", dump_source_);
          state_ = ReplState::kWaitSync;
        }
      }
    }
    retired.clear();
    for (auto& w : expired) {
      w.done(Status::Unavailable("write quorum of " +
                                 std::to_string(server_->config().write_quorum) +
                                 " members not reached"));
    }
    if (!saved_caught_up && state_.load() == ReplState::kActive) {
      Status s = server_->meta().Put("sys/caught_up", "1");
      if (!s.ok()) DEPOT_LOG_WARN("replication: {}", s.ToString());
      saved_caught_up = s.ok();
      server_->KickReporter();
    }
    if (!dump_to_id.empty()) {
      // Ask the peer for its whole binlog.
      Status s;
      auto conn = net::BlockingConn::Connect(dump_to_ip, dump_to_port, 3000);
      if (!conn.ok()) s = conn.status();
      if (s.ok()) s = (*conn)->Authenticate(server_->config().cluster_secret);
      if (s.ok()) {
        auto r = (*conn)->Call(proto::kDepotSyncDumpRequest, proto::EncodeDumpRequest(self));
        s = !r.ok() ? r.status() : proto::WireToStatus(r->status, "dump request");
      }
      std::lock_guard<std::mutex> l(mu_);
      if (s.ok()) {
        DEPOT_LOG_INFO("replication: catching up from {}", dump_to_id);
        state_ = ReplState::kSyncing;
        dump_requested_ns_ = MonotonicNanos();
        dump_source_ = dump_to_id;
      } else {
        DEPOT_LOG_WARN("replication: dump request to {}: {}", dump_to_id, s.ToString());
      }
    }
    repl_state_->Set(static_cast<double>(static_cast<int>(state_.load())));
    binlog_seq_->Set(static_cast<double>(binlog_->last_seq()));
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& [id, p] : pushers_) {
      auto rep = p->Report();
      PeerGauge(lag_records_, id)->Set(static_cast<double>(rep.lag_records));
      PeerGauge(lag_seconds_, id)->Set(static_cast<double>(rep.lag_seconds));
    }
  }
}

// --- receiver side ---

proto::SyncHelloReply Replicator::Hello(const proto::SyncHello& hello, const void* conn_key) {
  proto::SyncHelloReply r;
  std::lock_guard<std::mutex> l(applied_mu_);
  r.applied = applied_;
  if (hello.dump) {
    r.accepting = true;
    dump_conns_.insert(conn_key);
    last_dump_activity_ns_ = MonotonicNanos();
    ReplState expected = ReplState::kWaitSync;
    state_.compare_exchange_strong(expected, ReplState::kSyncing);
  } else {
    r.accepting = state_.load() == ReplState::kActive;
  }
  return r;
}

void Replicator::ConnectionClosed(const void* conn_key) {
  std::lock_guard<std::mutex> l(applied_mu_);
  dump_conns_.erase(conn_key);
}

bool Replicator::Accepting(const void* conn_key) {
  if (state_.load() == ReplState::kActive) return true;
  std::lock_guard<std::mutex> l(applied_mu_);
  if (dump_conns_.count(conn_key) == 0) return false;
  last_dump_activity_ns_ = MonotonicNanos();
  return true;
}

uint64_t Replicator::Applied(uint64_t origin) {
  std::lock_guard<std::mutex> l(applied_mu_);
  auto it = applied_.find(origin);
  return it == applied_.end() ? 0 : it->second;
}

void Replicator::MarkApplied(uint64_t origin, uint64_t oseq) {
  std::lock_guard<std::mutex> l(applied_mu_);
  uint64_t& v = applied_[origin];
  if (oseq > v) {
    v = oseq;
    dirty_.insert(origin);
  }
}

Status Replicator::Flush() {
  // The positions first, then the sync: a position may be saved only for what the sync covers
  // (another connection may apply and mark records while this sync runs).
  std::map<uint64_t, uint64_t> dirty;
  {
    std::lock_guard<std::mutex> l(applied_mu_);
    for (uint64_t o : dirty_) dirty[o] = applied_[o];
    dirty_.clear();
  }
  if (server_->config().durable_writes) {
    Status s;
    for (auto& p : server_->paths()) {
      if (s.ok()) s = p->SyncAll();
    }
    if (s.ok()) s = binlog_->Sync();
    if (!s.ok()) {
      std::lock_guard<std::mutex> l(applied_mu_);
      for (const auto& [o, v] : dirty) dirty_.insert(o);
      return s;
    }
  }
  for (const auto& [origin, oseq] : dirty) {
    DEPOT_RETURN_IF_ERROR(server_->meta().Put("sync/applied/" + Hex64(origin), std::to_string(oseq)));
  }
  return Status::OK();
}

Status Replicator::DumpDone(const void* conn_key) {
  {
    std::lock_guard<std::mutex> l(applied_mu_);
    if (dump_conns_.count(conn_key) == 0) return Status::InvalidArgument("not a dump connection");
  }
  DEPOT_RETURN_IF_ERROR(Flush());
  DEPOT_RETURN_IF_ERROR(server_->meta().Put("sys/caught_up", "1"));
  if (state_.exchange(ReplState::kActive) != ReplState::kActive) {
    DEPOT_LOG_INFO("replication: caught up; ACTIVE");
  }
  server_->KickReporter();
  return Status::OK();
}

Status Replicator::StartDump(const std::string& to_id) {
  std::string host;
  int port = 0;
  DEPOT_RETURN_IF_ERROR(ParseHostPort(to_id, &host, &port));
  std::unique_ptr<PeerPusher> old;  // joined after the lock is released
  std::lock_guard<std::mutex> l(mu_);
  if (stop_) return Status::Unavailable("stopping");
  if (state_.load() != ReplState::kActive) return Status::Busy("this member is not caught up itself");
  // Only to a member of this group that a tracker lists: the dump is the group's whole content.
  if (std::none_of(peers_.begin(), peers_.end(), [&](const PeerAddr& p) { return p.id == to_id; })) {
    return Status::PermissionDenied("dump requested for a server that is not a peer:", to_id);
  }
  auto it = dumps_.find(to_id);
  if (it != dumps_.end() && !it->second->finished()) return Status::OK();  // already running
  if (it != dumps_.end()) old = std::move(it->second);
  dumps_[to_id] = std::make_unique<PeerPusher>(this, server_, self_id_, to_id, host, port,
                                               /*dump=*/true);
  DEPOT_LOG_INFO("replication: sending a catch-up dump to {}", to_id);
  return Status::OK();
}

}  // namespace depot::storage
