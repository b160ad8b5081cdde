// Test harness: starts the real Depot daemons as child processes on 127.0.0.1 with generated
// configs in a temp dir, port 0 everywhere (the daemon reports its bound ports in a ready file),
// waits for readiness with deadlines (never a bare sleep), prints the daemons' log tails when a
// test fails, and stops them by pid: SIGTERM, then SIGKILL.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "depot/client.h"

namespace depot::testing {

// build/bin, where the daemons and the CLI are.
std::string BinDir();
// A fresh directory under $TMPDIR (or /tmp), removed by the destructor unless DEPOT_KEEP_TMP=1.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Polls `cond` every few milliseconds until it is true or `timeout_ms` passes.
bool WaitFor(const std::function<bool()>& cond, int timeout_ms);

class Daemon {
 public:
  // `binary` is a file name in BinDir(); `dir` holds conf, log and ready file.
  Daemon(std::string binary, std::string dir, std::string name);
  ~Daemon();

  void set_config(std::string text) { config_ = std::move(text); }
  const std::string& config() const { return config_; }
  // Writes the config, starts the process and waits for its ready file.
  Status Start(int timeout_ms = 15000);
  // SIGTERM, wait up to 10 s, then SIGKILL. Returns the exit status (or -1 if killed).
  int Stop();
  void Kill9();
  bool Running();
  pid_t pid() const { return pid_; }
  int port() const { return port_; }
  // The address it listens on (storages of a MiniCluster each have their own 127.0.0.N).
  const std::string& host() const { return host_; }
  void set_host(std::string h) { host_ = std::move(h); }
  // A command the daemon runs under (e.g. {"/usr/sbin/ip", "netns", "exec", "ns1"}); it must
  // exec the daemon in place, so that pid() stays the daemon's.
  void set_wrapper(std::vector<std::string> argv) { wrapper_ = std::move(argv); }
  int metrics_port() const { return metrics_port_; }
  int http_port() const { return http_port_; }  // storages: their HTTP reads
  const std::string& dir() const { return dir_; }
  std::string log_path() const { return dir_ + "/" + name_ + ".log"; }
  std::string LogTail(int lines) const;
  // Peak resident set (VmHWM) of the running process in KiB.
  long PeakRssKb() const;

 private:
  std::string binary_, dir_, name_, config_;
  std::string host_ = "127.0.0.1";
  std::vector<std::string> wrapper_;
  pid_t pid_ = -1;
  int port_ = 0;
  int metrics_port_ = 0;
  int http_port_ = 0;
};

struct ClusterOptions {
  int trackers = 1;
  int groups = 1;
  int per_group = 1;
  int store_paths = 1;
  bool durable_writes = false;
  std::string extra_tracker_conf;  // appended to every tracker.conf
  std::string extra_storage_conf;  // appended to every storage.conf
  // depot-dhtd nodes, started before the storages; with any, every storage has dedup = on.
  int dht_nodes = 0;
  // A command every storage runs under (Daemon::set_wrapper), e.g. {"/usr/bin/env", "X=1"}.
  std::vector<std::string> storage_wrapper;
};

class MiniCluster {
 public:
  explicit MiniCluster(ClusterOptions opt = {});
  ~MiniCluster();  // prints log tails if the current test failed, then stops everything

  // Starts trackers, then storages, and waits until every storage is ACTIVE on every tracker.
  Status Start();
  // Waits until each running tracker lists every running storage as ACTIVE.
  Status WaitAllActive(int timeout_ms = 20000);

  Daemon& tracker(int i) { return *trackers_[static_cast<size_t>(i)]; }
  Daemon& storage(int group, int member) {
    return *storages_[static_cast<size_t>(group * opt_.per_group + member)];
  }
  std::vector<std::unique_ptr<Daemon>>& storages() { return storages_; }
  std::string GroupName(int g) const { return "group" + std::to_string(g + 1); }
  // Each storage has its own loopback address (127.0.0.1 for the first), as servers of a real
  // group have their own IPs: file IDs name their source by address.
  std::string StorageIp(int group, int member) const {
    return "127.0.0." + std::to_string(1 + group * opt_.per_group + member);
  }
  // Replaces a storage's config (written at its next Start) with its current one plus `extra`.
  void SetStorageExtraConf(int group, int member, const std::string& extra);
  // Creates and starts one more member of `group` (index per_group, per_group + 1, ...).
  Status AddStorage(int group);
  std::string TrackerList() const;  // "127.0.0.1:p1,127.0.0.1:p2"
  // dht nodes (ClusterOptions::dht_nodes, then AddDht()).
  Daemon& dht(int i) { return *dhts_[static_cast<size_t>(i)]; }
  size_t dht_count() const { return dhts_.size(); }
  std::string DhtList() const;  // "127.0.0.1:p1,127.0.0.1:p2"
  // Starts one more dht node that joins the running ones.
  Status AddDht();
  ClientOptions ClientOpts() const;
  std::unique_ptr<Client> NewClient() const;
  const std::string& dir() const { return tmp_.path(); }
  const std::string& secret() const { return secret_; }
  // Store path `p` of a storage.
  std::string StorePath(int group, int member, int p) const;
  void PrintLogs() const;

 private:
  std::string TrackerConf(int i, int port) const;
  std::string StorageConf(int g, int m, int port, const std::string& extra = "") const;
  std::string DhtConf(size_t i, int port, const std::vector<std::string>& peers) const;

  ClusterOptions opt_;
  TempDir tmp_;
  std::string secret_ = "test-cluster-secret";
  std::vector<std::unique_ptr<Daemon>> trackers_;
  std::vector<std::unique_ptr<Daemon>> storages_;
  std::vector<std::unique_ptr<Daemon>> dhts_;
  size_t extra_storages_ = 0;
};

// Runs a program (argv[0] is looked up in BinDir() when it has no slash), feeding nothing on
// stdin; returns its exit code, stdout and, if asked, its peak RSS in KiB (getrusage).
struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
  long max_rss_kb = 0;
};
RunResult RunProgram(const std::vector<std::string>& argv,
                     const std::vector<std::string>& extra_env = {});

// Every regular file below `dir` (recursively), with its size; none when `dir` is missing.
struct FoundFile {
  std::string path;
  uint64_t size = 0;
};
std::vector<FoundFile> FilesUnder(const std::string& dir);

// Writes `size` deterministic pseudo-random bytes to `path` (streamed, not held in memory).
Status WritePatternFile(const std::string& path, uint64_t size, uint64_t seed);
std::string PatternBytes(size_t size, uint64_t seed);
// True when the two files have identical bytes.
bool FilesEqual(const std::string& a, const std::string& b);

}  // namespace depot::testing
