// depot-opsd: the ops platform's HTTP JSON API. See conf/opsd.conf and doc/opsd-api.md.
#include <unistd.h>

#include <cstdio>

#include "common/base/daemon_main.h"
#include "opsd/opsd_server.h"

int main(int argc, char** argv) {
  using depot::opsd::OpsdConfig;
  using depot::opsd::OpsdServer;
  return depot::RunDaemon<OpsdServer, OpsdConfig>(
      argc, argv, "depot-opsd", "conf/opsd.conf", &depot::opsd::LoadOpsdConfig,
      [](OpsdServer& s) { return std::vector<std::pair<std::string, int>>{{"port", s.port()}}; },
      [](OpsdServer& server, const OpsdConfig& config) {
        if (server.generated_password().empty()) return;
        // Printed once, and only to a terminal: standard output sent to a file would keep it.
        // The log never holds it; the owner-only file does, for scripts.
        if (isatty(STDOUT_FILENO)) {
          std::printf("depot-opsd: first start: superuser '%s', password %s (also in %s/"
                      "initial-admin-password; change it after logging in)\n",
                      config.admin_user.c_str(), server.generated_password().c_str(),
                      config.base_path.c_str());
        } else {
          std::printf("depot-opsd: first start: superuser '%s' created; its password is in %s/"
                      "initial-admin-password\n",
                      config.admin_user.c_str(), config.base_path.c_str());
        }
        std::fflush(stdout);
      });
}
