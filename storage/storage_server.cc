#include "storage/storage_server.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <prometheus/gauge.h>

#include "common/base/hash.h"
#include "common/base/logging.h"
#include "storage/dedup.h"
#include "storage/http/http_server.h"
#include "storage/replicator.h"
#include "storage/tracker_reporter.h"
#include "storage/trunk.h"

namespace depot::storage {

FileLocks::Guard::Guard(FileLocks* owner, std::string name)
    : owner_(owner), name_(std::move(name)) {
  {
    std::lock_guard<std::mutex> l(owner_->mu_);
    auto& e = owner_->map_[name_];
    if (!e) e = std::make_unique<Entry>();
    e->refs++;
    mu_ = &e->mu;
  }
  mu_->lock();
}

FileLocks::Guard::~Guard() {
  mu_->unlock();
  std::lock_guard<std::mutex> l(owner_->mu_);
  auto it = owner_->map_.find(name_);
  if (it != owner_->map_.end() && --it->second->refs == 0) owner_->map_.erase(it);
}

StorageServer::StorageServer(StorageConfig config) : config_(std::move(config)) {}

StorageServer::~StorageServer() { Stop(); }

Status StorageServer::Start() {
  up_time_ = UnixSeconds();
  if (!config_.advertise_address.empty()) {
    DEPOT_ASSIGN_OR_RETURN(uint32_t ip, proto::ParseIpv4(config_.advertise_address));
    source_ip_ = ip;
  }
  for (size_t i = 0; i < config_.store_paths.size(); ++i) {
    auto p = std::make_unique<StorePath>(static_cast<int>(i), config_.store_paths[i],
                                         config_.durable_writes, config_.disk_writer_threads,
                                         config_.disk_reader_threads);
    DEPOT_RETURN_IF_ERROR(p->Init());
    paths_.push_back(std::move(p));
  }
  DEPOT_ASSIGN_OR_RETURN(meta_, MetaStore::Open(config_.base_path + "/data", config_.durable_writes));
  DEPOT_ASSIGN_OR_RETURN(auto jt, meta_->Get("sys/join_time"));
  if (jt) {
    join_time_ = std::strtoll(jt->c_str(), nullptr, 10);
  } else {
    join_time_ = up_time_;
    DEPOT_RETURN_IF_ERROR(meta_->Put("sys/join_time", std::to_string(join_time_)));
  }

  for (auto& p : paths_) {
    TrunkStore::Options to;
    to.store_path = p->index();
    to.trunk_file_size = config_.trunk_file_size;
    to.slot_min_size = static_cast<uint32_t>(config_.slot_min_size);
    to.slot_max_size = static_cast<uint32_t>(config_.slot_max_size);
    to.durable = config_.durable_writes;
    to.deleted = [this](const std::string& name) {
      auto t = meta_->Get("t/" + name);
      return t.ok() && t->has_value();
    };
    auto trunk = std::make_unique<TrunkStore>(p->root(), std::move(to));
    DEPOT_RETURN_IF_ERROR(trunk->Init());
    p->set_trunk(std::move(trunk));
  }

  metrics_ = std::make_unique<metrics::MetricsServer>();
  if (config_.metrics_port >= 0) {
    DEPOT_RETURN_IF_ERROR(metrics_->Start(config_.bind_addr, config_.metrics_port));
  }
  rpc_metrics_ = std::make_unique<metrics::RpcMetrics>(metrics_->registry(), "storage");
  replicator_ = std::make_unique<Replicator>(this);
  dedup_ = std::make_unique<Dedup>(this);
  DEPOT_RETURN_IF_ERROR(replicator_->Open());
  {
    // With durable writes, an upload's binlog record must be as durable as its file: the store
    // path's syncfs covers it when the binlog shares its filesystem, else the binlog is synced too.
    struct stat bs;
    bool binlog_stat = stat((config_.base_path + "/binlog").c_str(), &bs) == 0;
    for (auto& p : paths_) {
      struct stat ps;
      if (binlog_stat && stat(p->root().c_str(), &ps) == 0 && ps.st_dev == bs.st_dev) continue;
      p->set_after_sync([this] { return replicator_->binlog().Sync(); });
      p->trunk()->set_sync_log([this] { return replicator_->binlog().Sync(); });
    }
  }
  auto& free_family = prometheus::BuildGauge()
                          .Name("depot_store_path_free_bytes")
                          .Help("Free bytes on the filesystem of each store path")
                          .Register(metrics_->registry());
  auto& total_family = prometheus::BuildGauge()
                           .Name("depot_store_path_total_bytes")
                           .Help("Size of the filesystem of each store path")
                           .Register(metrics_->registry());
  auto trunk_family = [&](const char* name, const char* help) -> prometheus::Family<prometheus::Gauge>& {
    return prometheus::BuildGauge().Name(name).Help(help).Register(metrics_->registry());
  };
  auto& tf = trunk_family("depot_trunk_files", "Trunk files on the store path (own and peers')");
  auto& tb = trunk_family("depot_trunk_bytes", "Total size of the trunk files");
  auto& lf = trunk_family("depot_trunk_live_files", "Files held in trunk slots");
  auto& lb = trunk_family("depot_trunk_live_bytes", "Content bytes of the files in trunk slots");
  for (const auto& p : paths_) {
    prometheus::Labels l{{"store_path", std::to_string(p->index())}};
    free_gauges_.push_back(&free_family.Add(l));
    total_gauges_.push_back(&total_family.Add(l));
    trunk_gauges_.push_back({&tf.Add(l), &tb.Add(l), &lf.Add(l), &lb.Add(l)});
  }
  RefreshSpace();

  net::ServerOptions opt;
  opt.bind_addr = config_.bind_addr;
  opt.port = config_.port;
  opt.threads = config_.work_threads;
  opt.max_connections = config_.max_connections;
  opt.idle_timeout_s = config_.idle_timeout;
  opt.network_timeout_s = config_.network_timeout;
  opt.cluster_secret = config_.cluster_secret;
  opt.allow_hosts = config_.allow_hosts;
  server_ = std::make_unique<net::FrameServer>(opt);
  server_->SetObserver(rpc_metrics_.get());
  RegisterUpload(this, server_.get());
  RegisterDownload(this, server_.get());
  RegisterFileOps(this, server_.get());
  RegisterMetadata(this, server_.get());
  RegisterSync(this, server_.get());
  RegisterFsck(this, server_.get());
  RegisterAppender(this, server_.get());
  RegisterDedup(this, server_.get());
  DEPOT_RETURN_IF_ERROR(server_->Start());

  if (config_.http_port >= 0) {
    HttpOptions ho;
    ho.bind_addr = config_.bind_addr;
    ho.port = config_.http_port;
    ho.threads = config_.http_threads;
    ho.cache_max_age = config_.http_cache_max_age;
    ho.token = config_.http_token;
    ho.secret = config_.http_secret;
    ho.token_ttl = config_.http_token_ttl;
    ho.mime_types = config_.http_mime_types;
    ho.miss = config_.http_miss;
    ho.upstream_timeout = config_.network_timeout;
    http_ = std::make_unique<HttpServer>(this, ho, &metrics_->registry());
    DEPOT_RETURN_IF_ERROR(http_->Start());
  }

  timer_loop_ = std::make_unique<net::EventLoop>();
  // statvfs is cheap but it is still a syscall on a filesystem: it runs on the timer thread.
  timer_loop_->RunEvery(1000, [this] { RefreshSpace(); });
  timer_loop_->Start();

  reporter_ = std::make_unique<TrackerReporter>(this);
  reporter_->Start();
  replicator_->Start();
  DEPOT_LOG_INFO("storage of group {} listening on {}:{} with {} store paths (durable writes {})",
                 config_.group_name, config_.bind_addr, server_->port(), paths_.size(),
                 config_.durable_writes ? "on" : "off");
  return Status::OK();
}

void StorageServer::Stop() {
  // The reporter's threads stop first; the object lives until the end, since the replicator and
  // the disk threads may still kick it.
  if (reporter_) reporter_->Stop();
  if (replicator_) replicator_->Stop();
  if (timer_loop_) {
    timer_loop_->Stop();
    timer_loop_->Join();
    timer_loop_.reset();
  }
  // Close the connections first, then drain the disk threads and pending commits (their
  // completions post to the loops, which must still exist), then stop the loops.
  if (http_) http_->Stop();  // before the store paths go
  if (server_) server_->CloseAll();
  if (dedup_) dedup_->Stop();
  paths_.clear();
  if (server_) server_->Stop();
  replicator_.reset();  // closes the binlog cleanly once nothing appends any more
  reporter_.reset();
  meta_.reset();
}

Result<StorageServer::OpenedFile> StorageServer::OpenFile(StorePath* p, const proto::FileId& id) {
  OpenedFile f;
  if (id.InTrunk()) {
    DEPOT_ASSIGN_OR_RETURN(TrunkStore::Located loc, p->trunk()->Locate(id));
    f.fd = loc.fd;
    f.offset = loc.offset;
    f.size = loc.size;
    f.mtime = id.fields.create_time;
    f.pin = std::move(loc.pin);
    return f;
  }
  std::string full = p->FullPath(id.RelativePath());
  f.fd = open(full.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0) {
    return errno == ENOENT ? Status::NotFound("no such file:", id.RemoteName())
                           : Status::FromErrno(errno, "open", full);
  }
  struct stat st;
  if (fstat(f.fd, &st) != 0) {
    Status s = Status::FromErrno(errno, "fstat", full);
    close(f.fd);
    return s;
  }
  f.size = static_cast<uint64_t>(st.st_size);
  f.mtime = st.st_mtime;
  return f;
}

bool StorageServer::HasFile(StorePath* p, const proto::FileId& id) {
  if (id.InTrunk()) return p->trunk()->Holds(id);
  struct stat st;
  return stat(p->FullPath(id.RelativePath()).c_str(), &st) == 0;
}

Status StorageServer::RemoveContent(StorePath* p, const proto::FileId& id) {
  if (id.InTrunk()) return p->trunk()->Free(id);
  std::string full = p->FullPath(id.RelativePath());
  if (unlink(full.c_str()) != 0) {
    return errno == ENOENT ? Status::NotFound("no such file:", id.RemoteName())
                           : Status::FromErrno(errno, "unlink", full);
  }
  return Status::OK();
}

void StorageServer::RefreshSpace() {
  for (size_t i = 0; i < paths_.size(); ++i) {
    paths_[i]->RefreshSpace();
    if (i < free_gauges_.size()) {
      free_gauges_[i]->Set(static_cast<double>(paths_[i]->free_bytes()));
      total_gauges_[i]->Set(static_cast<double>(paths_[i]->total_bytes()));
    }
    if (i < trunk_gauges_.size() && paths_[i]->trunk() != nullptr) {
      TrunkStore::Stats st = paths_[i]->trunk()->GetStats();
      trunk_gauges_[i][0]->Set(static_cast<double>(st.trunk_files));
      trunk_gauges_[i][1]->Set(static_cast<double>(st.trunk_bytes));
      trunk_gauges_[i][2]->Set(static_cast<double>(st.live_files));
      trunk_gauges_[i][3]->Set(static_cast<double>(st.live_bytes));
    }
  }
}

int64_t StorageServer::ReservedBytes(const StorePath& p) const {
  auto r = storage::ReservedBytes(config_.reserved_space, static_cast<uint64_t>(p.total_bytes()));
  return r.ok() ? static_cast<int64_t>(*r) : 0;
}

Result<StorePath*> StorageServer::PathForUpload(uint8_t requested, uint64_t size) {
  auto fits = [&](StorePath& p) {
    return p.free_bytes() - static_cast<int64_t>(size) >= ReservedBytes(p);
  };
  if (requested != proto::kStorePathAny) {
    if (requested >= paths_.size()) {
      return Status::InvalidArgument("store path index out of range:", std::to_string(requested));
    }
    StorePath& p = *paths_[requested];
    if (!fits(p)) return Status::ResourceExhausted("store path is at its reserved space:", p.root());
    return &p;
  }
  for (size_t i = 0; i < paths_.size(); ++i) {
    StorePath& p = *paths_[(path_rr_++) % paths_.size()];
    if (fits(p)) return &p;
  }
  return Status::ResourceExhausted("every store path is at its reserved space");
}

Result<StorePath*> StorageServer::PathForFile(const proto::FileId& id) {
  if (id.group != config_.group_name) {
    return Status::InvalidArgument("file of another group:", id.group);
  }
  if (id.store_path < 0 || static_cast<size_t>(id.store_path) >= paths_.size()) {
    return Status::InvalidArgument("store path index out of range in", id.ToString());
  }
  return paths_[id.store_path].get();
}

Result<proto::FileId> ParseGroupAndName(StorageServer* s, std::string_view body) {
  if (body.size() <= proto::kGroupNameLen) return Status::InvalidArgument("body too short");
  std::string group(proto::TrimFixed(body.substr(0, proto::kGroupNameLen)));
  return proto::ParseRemoteName(group, body.substr(proto::kGroupNameLen));
}

void StorageServer::Count(int counter, bool ok, int64_t n) {
  counters_[counter] += n;
  if (ok) counters_[counter + 1] += n;
}

void StorageServer::Snapshot(int64_t out[proto::kStorageCounterCount]) const {
  for (int i = 0; i < proto::kStorageCounterCount; ++i) out[i] = counters_[i].load();
}

int StorageServer::http_port() const { return http_ ? http_->port() : 0; }

void StorageServer::KickReporter() {
  if (reporter_) reporter_->Kick();
}

void StorageServer::TouchSourceUpdate() { last_source_update_ = UnixSeconds(); }

}  // namespace depot::storage
