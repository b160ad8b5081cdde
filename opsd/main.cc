// depot-opsd: the ops platform's HTTP JSON API. See conf/opsd.conf and doc/opsd-api.md.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "common/base/daemon.h"
#include "common/base/logging.h"
#include "opsd/opsd_server.h"

int main(int argc, char** argv) {
  depot::DaemonFlags flags;
  if (!depot::ParseDaemonFlags(argc, argv, "depot-opsd", "conf/opsd.conf", &flags)) return 2;
  auto config = depot::opsd::LoadOpsdConfig(flags.config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "depot-opsd: %s\n", config.status().ToString().c_str());
    return 1;
  }
  depot::Status s = depot::InitLogging(config->log_file, config->log_level);
  if (!s.ok()) {
    std::fprintf(stderr, "depot-opsd: %s\n", s.ToString().c_str());
    return 1;
  }
  depot::opsd::OpsdServer server(*config);
  s = server.Start();
  if (!s.ok()) {
    DEPOT_LOG_ERROR("start failed: {}", s.ToString());
    std::fprintf(stderr, "depot-opsd: %s\n", s.ToString().c_str());
    return 1;
  }
  if (!server.generated_password().empty()) {
    // Printed once, and only to a terminal: standard output sent to a file would keep it. The
    // log never holds it; the owner-only file does, for scripts.
    if (isatty(STDOUT_FILENO)) {
      std::printf("depot-opsd: first start: superuser '%s', password %s (also in %s/"
                  "initial-admin-password; change it after logging in)\n",
                  config->admin_user.c_str(), server.generated_password().c_str(),
                  config->base_path.c_str());
    } else {
      std::printf("depot-opsd: first start: superuser '%s' created; its password is in %s/"
                  "initial-admin-password\n",
                  config->admin_user.c_str(), config->base_path.c_str());
    }
    std::fflush(stdout);
  }
  s = depot::WriteReadyFile(flags.ready_file, {{"port", server.port()}});
  if (!s.ok()) {
    std::fprintf(stderr, "depot-opsd: %s\n", s.ToString().c_str());
    return 1;
  }
  int sig = depot::WaitForTermination();
  DEPOT_LOG_INFO("signal {}: shutting down", sig);
  server.Stop();
  DEPOT_LOG_INFO("stopped");
  spdlog::shutdown();
  std::_Exit(0);
}
