// DEDUP_SCAN (232, internal; doc/dedup.md): reconciles this member's files, its dedup index and
// the dht. `depot dedup-scan` calls it on every member of a group, the reconciling one first.
#include "common/base/logging.h"
#include "common/proto/dedup.h"
#include "storage/dedup.h"
#include "storage/storage_server.h"

namespace depot::storage {

void RegisterDedup(StorageServer* s, net::FrameServer* fs) {
  net::CommandSpec scan;
  scan.internal = true;
  scan.max_body = 256;
  scan.handle = [s](const net::ConnectionPtr& conn, const proto::FrameHeader&, std::string body) {
    auto req = proto::DecodeDedupScanRequest(body);
    if (!req.ok()) return conn->Reply(EINVAL);
    // A scan reads every file of the member: it runs on the first store path's reader threads,
    // never on a loop.
    s->paths().front()->reader().Submit([s, conn, req = *req] {
      auto rep = s->dedup().Scan(req);
      if (!rep.ok()) {
        DEPOT_LOG_WARN("dedup scan: {}", rep.status().ToString());
        return conn->PostReply(proto::StatusToWire(rep.status()));
      }
      DEPOT_LOG_INFO("dedup scan (repair={}, reconcile={}): {}", req.repair, req.reconcile,
                     proto::EncodeDedupScanReport(*rep));
      conn->PostReply(0, proto::EncodeDedupScanReport(*rep));
    });
  };
  fs->Register(proto::kDepotDedupScan, scan);
}

}  // namespace depot::storage
