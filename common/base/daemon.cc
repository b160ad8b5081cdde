#include "common/base/daemon.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/base/fs.h"

namespace depot {

bool ParseDaemonFlags(int argc, char** argv, const char* name, const char* default_config,
                      DaemonFlags* flags) {
  flags->config_path = default_config;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* flag) -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s: %s needs a value\n", name, flag);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--config" || a == "-c") {
      flags->config_path = value("--config");
    } else if (a.rfind("--config=", 0) == 0) {
      flags->config_path = a.substr(9);
    } else if (a == "--ready-file") {
      flags->ready_file = value("--ready-file");
    } else if (a == "--help" || a == "-h") {
      std::printf(
          "Usage: %s [--config PATH] [--ready-file PATH]\n"
          "  --config PATH      configuration file (default %s); every key is documented there\n"
          "  --ready-file PATH  once serving, write {\"pid\":..,\"port\":..} to PATH\n"
          "  --version          print the version\n"
          "Runs in the foreground; SIGTERM or SIGINT stops it cleanly.\n",
          name, default_config);
      std::exit(0);
    } else if (a == "--version") {
      std::printf("%s %s\n", name, kDepotVersion);
      std::exit(0);
    } else {
      std::fprintf(stderr, "%s: unknown argument `%s` (try --help)\n", name, a.c_str());
      return false;
    }
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return true;
}

Status WriteReadyFile(const std::string& path,
                      const std::vector<std::pair<std::string, int>>& fields) {
  if (path.empty()) return Status::OK();
  std::string json = "{\"pid\":" + std::to_string(getpid());
  for (const auto& [k, v] : fields) json += ",\"" + k + "\":" + std::to_string(v);
  json += "}\n";
  return WriteFileAtomic(path, json, false);
}

int WaitForTermination() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) == 0) return sig;
  }
}

void CrashPoint(const char* point) {
  static const char* const wanted = std::getenv("DEPOT_CRASH_POINT");
  if (wanted != nullptr && std::strcmp(wanted, point) == 0) {
    std::fprintf(stderr, "crash point %s: exiting\n", point);
    _exit(86);
  }
}

}  // namespace depot
