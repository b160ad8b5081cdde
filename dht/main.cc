// depot-dhtd: one node of the dedup index. See conf/dht.conf and doc/dht.md. Start() returns once
// the node has caught up, so the ready file means "serving".
#include "common/base/daemon_main.h"
#include "dht/dht_server.h"

int main(int argc, char** argv) {
  using depot::dht::DhtServer;
  return depot::RunDaemon<DhtServer, depot::dht::DhtConfig>(
      argc, argv, "depot-dhtd", "conf/dht.conf", &depot::dht::LoadDhtConfig, [](DhtServer& s) {
        return std::vector<std::pair<std::string, int>>{{"port", s.port()},
                                                        {"metrics_port", s.metrics_port()}};
      });
}
