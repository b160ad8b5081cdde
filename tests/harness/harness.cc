#include "tests/harness/harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "common/base/fs.h"
#include "common/net/blocking_conn.h"
#include "common/proto/protocol.h"
#include "common/proto/stat_records.h"

extern char** environ;

namespace depot::testing {

std::string BinDir() { return DEPOT_BIN_DIR; }

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base ? base : "/tmp") + "/depot-test-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  char* p = mkdtemp(buf.data());
  if (p == nullptr) std::abort();
  path_ = p;
}

TempDir::~TempDir() {
  const char* keep = std::getenv("DEPOT_KEEP_TMP");
  if (keep != nullptr && std::string(keep) == "1") return;
  RunProgram({"/bin/rm", "-rf", path_});
}

bool WaitFor(const std::function<bool()>& cond, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return cond();
}

Daemon::Daemon(std::string binary, std::string dir, std::string name)
    : binary_(std::move(binary)), dir_(std::move(dir)), name_(std::move(name)) {
  (void)MakeDirs(dir_);
}

Daemon::~Daemon() {
  if (pid_ > 0) Stop();
}

Status Daemon::Start(int timeout_ms) {
  if (pid_ > 0) return Status::AlreadyExists("already running:", name_);
  std::string conf = dir_ + "/" + name_ + ".conf";
  std::string ready = dir_ + "/" + name_ + ".ready";
  unlink(ready.c_str());
  DEPOT_RETURN_IF_ERROR(WriteFileAtomic(conf, config_, false));
  std::string bin = BinDir() + "/" + binary_;
  std::string log = dir_ + "/" + name_ + ".stderr";
  std::vector<std::string> args = wrapper_;
  for (const std::string& a : {bin, std::string("--config"), conf, std::string("--ready-file"), ready}) {
    args.push_back(a);
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) return Status::FromErrno(errno, "fork");
  if (pid == 0) {
    // If the test process dies (a crash, a timeout kill), its daemons die with it.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  pid_ = pid;
  bool exited = false;
  bool ok = WaitFor(
      [&] {
        int status;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
          exited = true;
          return true;
        }
        return access(ready.c_str(), R_OK) == 0;
      },
      timeout_ms);
  if (exited) {
    pid_ = -1;
    return Status::Unavailable(name_ + " exited at start-up; stderr:", LogTail(20));
  }
  if (!ok) {
    Kill9();
    return Status::TimedOut(name_ + " not ready in time; log:", LogTail(20));
  }
  auto text = ReadSmallFile(ready);
  if (!text.ok()) return text.status();
  auto field = [&](const std::string& key) {
    size_t p = text->find("\"" + key + "\":");
    return p == std::string::npos ? 0 : std::atoi(text->c_str() + p + key.size() + 3);
  };
  port_ = field("port");
  metrics_port_ = field("metrics_port");
  http_port_ = field("http_port");
  return Status::OK();
}

int Daemon::Stop() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  int status = 0;
  bool done = WaitFor([&] { return waitpid(pid_, &status, WNOHANG) == pid_; }, 10000);
  if (!done) {
    kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return -1;
  }
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void Daemon::Kill9() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

bool Daemon::Running() {
  if (pid_ <= 0) return false;
  int status;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

std::string Daemon::LogTail(int lines) const {
  std::string out;
  for (const std::string& f : {dir_ + "/" + name_ + ".stderr", log_path()}) {
    std::ifstream in(f);
    if (!in) continue;
    std::deque<std::string> q;
    std::string line;
    while (std::getline(in, line)) {
      q.push_back(line);
      if (static_cast<int>(q.size()) > lines) q.pop_front();
    }
    for (auto& l : q) out += "    " + l + "\n";
  }
  return out;
}

long Daemon::PeakRssKb() const {
  std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return 0;
}

MiniCluster::MiniCluster(ClusterOptions opt) : opt_(std::move(opt)) {}

MiniCluster::~MiniCluster() {
  if (::testing::Test::HasFailure()) PrintLogs();
  for (auto& s : storages_) s->Stop();
  for (auto& t : trackers_) t->Stop();
  for (auto& d : dhts_) d->Stop();
}

void MiniCluster::PrintLogs() const {
  for (const auto& d : trackers_) {
    std::fprintf(stderr, "---- %s (last lines)\n%s", d->dir().c_str(), d->LogTail(30).c_str());
  }
  for (const auto& d : storages_) {
    std::fprintf(stderr, "---- %s (last lines)\n%s", d->dir().c_str(), d->LogTail(30).c_str());
  }
  for (const auto& d : dhts_) {
    std::fprintf(stderr, "---- %s (last lines)\n%s", d->dir().c_str(), d->LogTail(30).c_str());
  }
}

namespace {

// Joins default lines and `extra`; a key given in `extra` replaces the default line.
std::string MergeConf(const std::string& defaults, const std::string& extra) {
  std::set<std::string> overridden;
  std::istringstream ex(extra);
  std::string line;
  while (std::getline(ex, line)) {
    size_t eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string key = line.substr(0, eq);
    key.erase(key.find_last_not_of(" \t") + 1);
    overridden.insert(key);
  }
  std::string out;
  std::istringstream in(defaults);
  while (std::getline(in, line)) {
    size_t eq = line.find('=');
    std::string key = eq == std::string::npos ? "" : line.substr(0, eq);
    key.erase(key.find_last_not_of(" \t") + 1);
    if (!overridden.count(key)) out += line + "\n";
  }
  return out + extra + "\n";
}

}  // namespace

std::string MiniCluster::TrackerConf(int i, int port) const {
  std::string base = tmp_.path() + "/tracker-" + std::to_string(i + 1);
  std::ostringstream c;
  c << "bind_addr = 127.0.0.1\nport = " << port << "\nmetrics_port = 0\n"
    << "base_path = " << base << "\nlog_file = " << base << "/tracker.log\n"
    << "log_level = debug\ncluster_secret = " << secret_ << "\nstorage_timeout = 5\n";
  return MergeConf(c.str(), opt_.extra_tracker_conf);
}

std::string MiniCluster::StorageConf(int g, int m, int port, const std::string& extra) const {
  std::string base = tmp_.path() + "/storage-" + GroupName(g) + "-" + std::to_string(m + 1);
  std::string ip = StorageIp(g, m);
  std::ostringstream c;
  c << "group_name = " << GroupName(g) << "\nbind_addr = " << ip << "\nport = " << port
    << "\nadvertise_address = " << ip << "\nmetrics_port = 0\nbase_path = " << base
    << "\nlog_file = " << base << "/storage.log\nlog_level = debug\ncluster_secret = " << secret_
    << "\nheartbeat_interval = 1\nreserved_space = 64M\nhttp_port = 0\n"
    << "durable_writes = " << (opt_.durable_writes ? "true" : "false") << "\n";
  for (int p = 0; p < opt_.store_paths; ++p) c << "store_path" << p << " = " << StorePath(g, m, p) << "\n";
  for (const auto& t : trackers_) c << "tracker_server = 127.0.0.1:" << t->port() << "\n";
  if (!dhts_.empty()) c << "dedup = on\ndht_servers = " << DhtList() << "\n";
  return MergeConf(MergeConf(c.str(), opt_.extra_storage_conf), extra);
}

std::string MiniCluster::DhtConf(size_t i, int port, const std::vector<std::string>& peers) const {
  std::string base = tmp_.path() + "/dht-" + std::to_string(i + 1);
  std::ostringstream c;
  c << "bind_addr = 127.0.0.1\nport = " << port << "\nmetrics_port = 0\ndata_path = " << base
    << "/data\nlog_file = " << base << "/dht.log\nlog_level = debug\ncluster_secret = " << secret_
    << "\n";
  std::string list;
  for (const auto& p : peers) list += (list.empty() ? "" : ",") + p;
  if (!list.empty()) c << "peers = " << list << "\n";
  return c.str();
}

std::string MiniCluster::DhtList() const {
  std::string out;
  for (const auto& d : dhts_) {
    out += (out.empty() ? "" : ",") + std::string("127.0.0.1:") + std::to_string(d->port());
  }
  return out;
}

Status MiniCluster::AddDht() {
  size_t i = dhts_.size();
  std::vector<std::string> peers;
  for (const auto& d : dhts_) peers.push_back("127.0.0.1:" + std::to_string(d->port()));
  auto d = std::make_unique<Daemon>("depot-dhtd", tmp_.path() + "/dht-" + std::to_string(i + 1), "dht");
  d->set_config(DhtConf(i, 0, peers));
  DEPOT_RETURN_IF_ERROR(d->Start());
  // Restarts keep the port (it is the node's id) and know every other node.
  d->set_config(DhtConf(i, d->port(), peers));
  std::string self = "127.0.0.1:" + std::to_string(d->port());
  dhts_.push_back(std::move(d));
  for (size_t k = 0; k < i; ++k) {
    std::vector<std::string> others;
    for (size_t j = 0; j < dhts_.size(); ++j) {
      if (j != k) others.push_back("127.0.0.1:" + std::to_string(dhts_[j]->port()));
    }
    dhts_[k]->set_config(DhtConf(k, dhts_[k]->port(), others));
  }
  return Status::OK();
}

std::string MiniCluster::StorePath(int group, int member, int p) const {
  return tmp_.path() + "/storage-" + GroupName(group) + "-" + std::to_string(member + 1) +
         "/store" + std::to_string(p);
}

Status MiniCluster::Start() {
  for (int i = 0; i < opt_.dht_nodes; ++i) DEPOT_RETURN_IF_ERROR(AddDht());
  for (int i = 0; i < opt_.trackers; ++i) {
    std::string dir = tmp_.path() + "/tracker-" + std::to_string(i + 1);
    auto d = std::make_unique<Daemon>("depot-trackerd", dir, "tracker");
    d->set_config(TrackerConf(i, 0));
    DEPOT_RETURN_IF_ERROR(d->Start());
    // Restarts keep the port so that storages and clients find it again.
    d->set_config(TrackerConf(i, d->port()));
    trackers_.push_back(std::move(d));
  }
  for (int g = 0; g < opt_.groups; ++g) {
    for (int m = 0; m < opt_.per_group; ++m) {
      std::string dir = tmp_.path() + "/storage-" + GroupName(g) + "-" + std::to_string(m + 1);
      auto d = std::make_unique<Daemon>("depot-storaged", dir, "storage");
      d->set_host(StorageIp(g, m));
      d->set_wrapper(opt_.storage_wrapper);
      d->set_config(StorageConf(g, m, 0));
      DEPOT_RETURN_IF_ERROR(d->Start());
      d->set_config(StorageConf(g, m, d->port()));
      storages_.push_back(std::move(d));
    }
  }
  return WaitAllActive();
}

void MiniCluster::SetStorageExtraConf(int group, int member, const std::string& extra) {
  Daemon& d = *storages_[static_cast<size_t>(group * opt_.per_group + member)];
  d.set_config(StorageConf(group, member, d.port(), extra));
}

Status MiniCluster::AddStorage(int group) {
  // Extra members live after the regular ones in storages_ and use addresses past them.
  int m = opt_.per_group + static_cast<int>(extra_storages_);
  std::string ip = "127.0.1." + std::to_string(1 + group * 16 + static_cast<int>(extra_storages_));
  std::string dir = tmp_.path() + "/storage-" + GroupName(group) + "-" + std::to_string(m + 1);
  auto d = std::make_unique<Daemon>("depot-storaged", dir, "storage");
  d->set_host(ip);
  auto conf = [&](int port) {
    std::string c = StorageConf(group, m, port);
    return MergeConf(c, "bind_addr = " + ip + "\nadvertise_address = " + ip);
  };
  d->set_config(conf(0));
  DEPOT_RETURN_IF_ERROR(d->Start());
  d->set_config(conf(d->port()));
  storages_.push_back(std::move(d));
  extra_storages_++;
  return Status::OK();
}

Status MiniCluster::WaitAllActive(int timeout_ms) {
  std::string why;
  bool ok = WaitFor(
      [&] {
        for (auto& t : trackers_) {
          if (!t->Running()) continue;
          for (int g = 0; g < opt_.groups; ++g) {
            auto conn = net::BlockingConn::Connect("127.0.0.1", t->port(), 1000);
            if (!conn.ok()) {
              why = conn.status().ToString();
              return false;
            }
            std::string body;
            proto::AppendFixed(&body, GroupName(g), proto::kGroupNameLen);
            auto r = (*conn)->Call(proto::kTrackerListStorages, body);
            if (!r.ok() || r->status != 0) {
              why = "group " + GroupName(g) + " not listed yet";
              return false;
            }
            auto stats = proto::DecodeStorageStats(r->body);
            if (!stats.ok()) return false;
            for (int m = 0; m < opt_.per_group; ++m) {
              Daemon& s = storage(g, m);
              if (!s.Running()) continue;
              bool active = false;
              for (const auto& st : *stats) {
                if (st.storage_port == s.port() && st.status == 7) active = true;
              }
              if (!active) {
                why = GroupName(g) + " member " + std::to_string(m + 1) + " not ACTIVE";
                return false;
              }
            }
          }
        }
        return true;
      },
      timeout_ms);
  if (!ok) return Status::TimedOut("cluster not active:", why);
  return Status::OK();
}

std::string MiniCluster::TrackerList() const {
  std::string out;
  for (const auto& t : trackers_) {
    if (!out.empty()) out += ",";
    out += "127.0.0.1:" + std::to_string(t->port());
  }
  return out;
}

ClientOptions MiniCluster::ClientOpts() const {
  ClientOptions o;
  for (const auto& t : trackers_) o.trackers.push_back("127.0.0.1:" + std::to_string(t->port()));
  o.connect_timeout_ms = 2000;
  o.network_timeout_ms = 30000;
  return o;
}

std::unique_ptr<Client> MiniCluster::NewClient() const {
  auto c = Client::Create(ClientOpts());
  if (!c.ok()) return nullptr;
  return std::move(*c);
}

RunResult RunProgram(const std::vector<std::string>& argv,
                     const std::vector<std::string>& extra_env) {
  RunResult r;
  int out_pipe[2], err_pipe[2];
  if (pipe(out_pipe) != 0 || pipe(err_pipe) != 0) return r;
  std::string bin = argv[0].find('/') == std::string::npos ? BinDir() + "/" + argv[0] : argv[0];
  pid_t pid = fork();
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    close(out_pipe[0]);
    close(err_pipe[0]);
    for (const auto& e : extra_env) putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args[0] = const_cast<char*>(bin.c_str());
    args.push_back(nullptr);
    execv(bin.c_str(), args.data());
    _exit(127);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  // Read both pipes without deadlock: stderr is small, read stdout fully, then stderr.
  std::thread err_reader([&] {
    char buf[4096];
    ssize_t n;
    while ((n = read(err_pipe[0], buf, sizeof buf)) > 0) r.err.append(buf, static_cast<size_t>(n));
  });
  char buf[65536];
  ssize_t n;
  while ((n = read(out_pipe[0], buf, sizeof buf)) > 0) r.out.append(buf, static_cast<size_t>(n));
  err_reader.join();
  close(out_pipe[0]);
  close(err_pipe[0]);
  int status = 0;
  struct rusage ru {};
  wait4(pid, &status, 0, &ru);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.max_rss_kb = ru.ru_maxrss;
  return r;
}

std::string PatternBytes(size_t size, uint64_t seed) {
  std::string out(size, '\0');
  uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;
  for (size_t i = 0; i < size; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(out.data() + i, &x, std::min<size_t>(8, size - i));
  }
  return out;
}

std::vector<FoundFile> FilesUnder(const std::string& dir) {
  std::vector<FoundFile> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    std::string p = dir + "/" + n;
    struct stat st;
    if (lstat(p.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      for (auto& f : FilesUnder(p)) out.push_back(std::move(f));
    } else if (S_ISREG(st.st_mode)) {
      out.push_back({p, static_cast<uint64_t>(st.st_size)});
    }
  }
  closedir(d);
  return out;
}

Status WritePatternFile(const std::string& path, uint64_t size, uint64_t seed) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::FromErrno(errno, "create", path);
  uint64_t done = 0;
  uint64_t block = 0;
  while (done < size) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(size - done, 1 << 20));
    std::string chunk = PatternBytes(n, seed + block++);
    Status s = WriteAll(fd, chunk.data(), n, path);
    if (!s.ok()) {
      close(fd);
      return s;
    }
    done += n;
  }
  close(fd);
  return Status::OK();
}

bool FilesEqual(const std::string& a, const std::string& b) {
  std::ifstream fa(a, std::ios::binary), fb(b, std::ios::binary);
  if (!fa || !fb) return false;
  std::vector<char> ba(1 << 20), bb(1 << 20);
  for (;;) {
    fa.read(ba.data(), static_cast<std::streamsize>(ba.size()));
    fb.read(bb.data(), static_cast<std::streamsize>(bb.size()));
    if (fa.gcount() != fb.gcount()) return false;
    if (std::memcmp(ba.data(), bb.data(), static_cast<size_t>(fa.gcount())) != 0) return false;
    if (fa.gcount() == 0 || !fa) return !fb || fb.gcount() == fa.gcount();
  }
}

}  // namespace depot::testing
