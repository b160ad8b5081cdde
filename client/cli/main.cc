// depot: the command-line client. `depot --help` and `depot COMMAND --help` list everything.
#include <CLI/CLI.hpp>

#include "client/cli/cli.h"
#include "client/cli/commands.h"

int main(int argc, char** argv) {
  using namespace depot::cli;
  CLI::App app{"depot: command-line client of a Depot (or FastDFS V6) cluster"};
  app.require_subcommand(1);
  app.fallthrough();
  GlobalOptions g;
  app.add_option("--trackers", g.trackers,
                 "trackers as host:port,host:port (default: $DEPOT_TRACKERS, then --config)");
  app.add_option("--config", g.config, "client.conf with tracker_server lines");
  app.add_flag("--json", g.json, "machine-readable output");
  app.add_flag("-q,--quiet", g.quiet, "no progress bar");
  app.set_version_flag("--version", std::string("depot ") + depot::kClientVersion);
  Commands cmds(&app, &g);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;  // usage errors: 2, like an invalid argument
  }
  return cmds.exit_code();
}
