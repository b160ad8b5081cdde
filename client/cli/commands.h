// Registers the subcommands of `depot` on a CLI11 app and runs the chosen one.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "client/cli/cli.h"

namespace depot {
inline constexpr const char* kClientVersion = "0.1.0";
}

namespace depot::cli {

class Commands {
 public:
  Commands(CLI::App* app, GlobalOptions* g);
  int exit_code() const { return exit_code_; }

 private:
  int Upload();
  int Download();
  int Delete();
  int Info();
  int MetaGet();
  int MetaSet();
  int Status();
  int Fsck();
  int DedupScan();
  int Url();
  int UploadAppender();
  int Append();
  int Modify();
  int Truncate();
  int Regenerate();
  int UploadSlave();
  // The options of an upload (group, extension, metadata), its progress bar and its output.
  using UploadCall =
      std::function<Result<std::string>(Client&, const UploadOptions&, const ProgressFn&)>;
  // `instant` (upload --dedup-check): set by `call` when the upload was instant; printed with
  // --json.
  int UploadWith(UploadCall call, const bool* instant = nullptr);
  // --ext, else the extension of file_ (up to 6 characters).
  std::string ExtFor() const;

  GlobalOptions* g_;
  int exit_code_ = 0;
  std::string file_, file_id_, group_, ext_, output_;
  std::vector<std::string> meta_;
  bool merge_ = false;
  bool repair_ = false;
  bool verify_ = false;
  bool dedup_check_ = false;
  uint64_t offset_ = 0;
  std::string prefix_, slave_ext_;
  BenchOptions bench_;
  struct UrlOptions {
    std::string base;      // http://host:port (default: the HTTP address of a member that has it)
    std::string secret;    // the group's http_secret (default: DEPOT_HTTP_SECRET)
    int64_t ttl = 0;       // seconds the URL stays valid (0: token_ttl, from now)
    int64_t token_ttl = 900;  // the storage's http_token_ttl
    std::string filename;  // download name
  } url_;
};

}  // namespace depot::cli
