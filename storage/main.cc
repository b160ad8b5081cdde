// depot-storaged: stores one group's files. See conf/storage.conf and doc/storage-layout.md.
#include "common/base/daemon_main.h"
#include "storage/storage_server.h"

int main(int argc, char** argv) {
  using depot::storage::StorageServer;
  return depot::RunDaemon<StorageServer, depot::storage::StorageConfig>(
      argc, argv, "depot-storaged", "conf/storage.conf", &depot::storage::LoadStorageConfig,
      [](StorageServer& s) {
        return std::vector<std::pair<std::string, int>>{
            {"port", s.port()}, {"metrics_port", s.metrics_port()}, {"http_port", s.http_port()}};
      });
}
