// The `depot` command line: shared pieces of the subcommands.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "depot/client.h"

namespace depot::cli {

struct GlobalOptions {
  std::string trackers;  // --trackers a:1,b:2
  std::string config;    // --config client.conf
  bool json = false;
  bool quiet = false;    // no progress bar
  std::string secret;    // --secret (admin commands: fsck)
};

// Builds a client from --trackers, DEPOT_TRACKERS, --config or /etc/depot/client.conf.
Result<std::unique_ptr<Client>> MakeClient(const GlobalOptions& g);

// Prints the one-line error and returns the exit code for it.
int Fail(const GlobalOptions& g, const Status& s);
// Prints a JSON document (always one line).
void PrintJson(const nlohmann::json& j);

// Renders a progress bar on stderr when it is a terminal and the transfer is big enough.
class ProgressBar {
 public:
  ProgressBar(const std::string& label, bool enabled);
  ~ProgressBar();
  void Update(uint64_t done, uint64_t total);
  ProgressFn Callback() {
    return [this](uint64_t d, uint64_t t) { Update(d, t); };
  }

 private:
  std::string label_;
  bool enabled_;
  bool drawn_ = false;
  int64_t start_ns_;
  int64_t last_draw_ns_ = 0;
};

struct BenchOptions {
  std::string op = "upload";  // upload, download, delete
  uint64_t size = 4096;
  int connections = 8;
  double duration = 10;
  int files = 2000;  // files prepared for download, uploaded first for delete (per connection cap)
  std::string group;
  // upload: every file is new content (the first 16 bytes carry a per-thread nonce and a
  // counter); without it every upload sends the same bytes (duplicates, for a dedup group).
  bool unique = false;
};
int RunBench(const GlobalOptions& g, const BenchOptions& b);

}  // namespace depot::cli
