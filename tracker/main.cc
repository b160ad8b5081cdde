// depot-trackerd: the cluster directory. See conf/tracker.conf and doc/tracker-state.md.
#include "common/base/daemon_main.h"
#include "tracker/tracker_server.h"

int main(int argc, char** argv) {
  using depot::tracker::TrackerServer;
  return depot::RunDaemon<TrackerServer, depot::tracker::TrackerConfig>(
      argc, argv, "depot-trackerd", "conf/tracker.conf", &depot::tracker::LoadTrackerConfig,
      [](TrackerServer& s) {
        return std::vector<std::pair<std::string, int>>{{"port", s.port()},
                                                        {"metrics_port", s.metrics_port()}};
      });
}
