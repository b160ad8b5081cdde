// Client::Fsck: compares the members of each group through the internal LIST_FILES command and
// repairs through REPAIR_FILE (or an ordinary delete for files deleted elsewhere). Both need the
// cluster secret. doc/replication.md describes what is compared.
#include <map>
#include <set>

#include "common/net/blocking_conn.h"
#include "common/proto/file_id.h"
#include "common/proto/protocol.h"
#include "common/proto/sync.h"
#include "depot/client.h"

namespace depot {

bool FsckReport::clean() const {
  for (const auto& p : problems) {
    if (!p.repaired) return false;
  }
  return true;
}

namespace {

struct Seen {
  uint64_t size = 0;
  bool intact = true;
  bool has_crc = false;
  uint32_t crc = 0;
};

Result<std::unique_ptr<net::BlockingConn>> AdminConn(const ClientOptions& o, const std::string& ip,
                                                     int port) {
  DEPOT_ASSIGN_OR_RETURN(auto c, net::BlockingConn::Connect(ip, port, o.connect_timeout_ms));
  c->set_timeout_ms(std::max(o.network_timeout_ms, 120000));  // a verify listing reads files
  DEPOT_RETURN_IF_ERROR(c->Authenticate(o.cluster_secret));
  return c;
}

}  // namespace

Result<FsckReport> Client::Fsck(const FsckOptions& fo) {
  const ClientOptions& o = options();
  if (o.cluster_secret.empty()) {
    return Status::InvalidArgument("fsck needs the cluster secret (--secret, DEPOT_CLUSTER_SECRET "
                                   "or cluster_secret in client.conf)");
  }
  DEPOT_ASSIGN_OR_RETURN(auto groups, ClusterStatus());
  FsckReport report;
  bool found_group = fo.group.empty();
  for (const auto& g : groups) {
    if (!fo.group.empty() && g.name != fo.group) continue;
    found_group = true;
    struct Member {
      std::string addr, ip;
      int port;
      std::unique_ptr<net::BlockingConn> conn;
    };
    std::vector<Member> members;
    int paths = 1;
    for (const auto& m : g.members) {
      std::string addr = m.ip + ":" + std::to_string(m.port);
      auto conn = m.state == static_cast<int>(proto::StorageState::kActive)
                      ? AdminConn(o, m.ip, m.port)
                      : Result<std::unique_ptr<net::BlockingConn>>(
                            Status::Unavailable("member is " + m.state_name));
      if (!conn.ok()) {
        report.problems.push_back({"", addr, "unreachable", false, conn.status().ToString()});
        continue;
      }
      members.push_back({addr, m.ip, m.port, std::move(*conn)});
      paths = std::max(paths, m.store_path_count);
    }
    report.members += static_cast<int64_t>(members.size());
    for (int p = 0; p < paths; ++p) {
      for (int d1 = 0; d1 < 256; ++d1) {
        std::map<std::string, std::vector<std::optional<Seen>>> files;
        std::set<std::string> deleted;
        proto::ListFilesRequest req{p, d1, fo.verify};
        for (size_t i = 0; i < members.size(); ++i) {
          if (!members[i].conn) continue;  // failed earlier: reported once, skipped since
          auto r = members[i].conn->Call(proto::kDepotListFiles, proto::EncodeListFilesRequest(req),
                                         256ULL << 20);
          Status st = r.ok() ? proto::WireToStatus(r->status, "list files") : r.status();
          Result<proto::ListFilesReply> list =
              st.ok() ? proto::DecodeListFilesReply(r->body) : Result<proto::ListFilesReply>(st);
          if (!list.ok()) {
            report.problems.push_back({"", members[i].addr, "unreachable", false,
                                       list.status().ToString()});
            members[i].conn.reset();
            continue;
          }
          for (const auto& f : list->files) {
            auto& v = files[f.name];
            v.resize(members.size());
            v[i] = Seen{f.size, f.intact, f.has_crc, f.crc};
          }
          deleted.insert(list->deleted.begin(), list->deleted.end());
        }
        for (auto& [name, seen] : files) {
          seen.resize(members.size());
          std::string file_id = g.name + "/" + name;
          if (deleted.count(name)) {
            // Deleted on some member, still present on others: finish the delete.
            for (size_t i = 0; i < members.size(); ++i) {
              if (!seen[i] || !members[i].conn) continue;
              FsckProblem pr{file_id, members[i].addr, "deleted", false,
                             "deleted on another member"};
              if (fo.repair) {
                std::string body;
                proto::AppendFixed(&body, g.name, proto::kGroupNameLen);
                body += name;
                auto r = members[i].conn->Call(proto::kStorageDelete, body, 1024);
                pr.repaired = r.ok() && (r->status == 0 || r->status == ENOENT);
                if (!pr.repaired) pr.detail += "; repair failed";
              }
              report.problems.push_back(std::move(pr));
            }
            continue;
          }
          report.files++;
          auto id = proto::ParseRemoteName(g.name, name);
          uint64_t want = 0;
          bool by_name = id.ok() && id->NamePinsContent();
          // Files whose name does not pin their content (appender, slave): the source's copy
          // is the reference when it has one, else the largest.
          std::optional<uint32_t> want_crc;
          if (by_name) {
            want = proto::SizeFromWord(id->fields.size_word);
          } else {
            int ref = -1;
            for (size_t i = 0; i < members.size(); ++i) {
              if (seen[i] && id.ok() && members[i].ip == proto::IpToString(id->fields.source_ip)) {
                ref = static_cast<int>(i);
              }
            }
            for (size_t i = 0; ref < 0 && i < members.size(); ++i) {
              if (seen[i] && seen[i]->size >= want) want = seen[i]->size;
            }
            for (size_t i = 0; ref < 0 && i < members.size(); ++i) {
              if (seen[i] && seen[i]->size == want) ref = static_cast<int>(i);
            }
            if (ref >= 0) want = seen[ref]->size;
            if (ref >= 0 && seen[ref]->has_crc) want_crc = seen[ref]->crc;
          }
          auto matches = [&](const Seen& s) {
            return s.intact && s.size == want && (!want_crc || !s.has_crc || s.crc == *want_crc);
          };
          int good = -1;
          for (size_t i = 0; i < members.size(); ++i) {
            if (seen[i] && matches(*seen[i])) good = static_cast<int>(i);
          }
          for (size_t i = 0; i < members.size(); ++i) {
            if (!members[i].conn) continue;  // unreachable: reported once
            std::string kind;
            if (!seen[i]) {
              kind = "missing";
            } else if (seen[i]->size != want) {
              kind = "size";
            } else if (!matches(*seen[i])) {
              kind = "corrupt";
            } else {
              continue;
            }
            FsckProblem pr{file_id, members[i].addr, kind, false, ""};
            if (kind == "size") {
              pr.detail = "size " + std::to_string(seen[i]->size) + ", expected " + std::to_string(want);
            }
            if (fo.repair) {
              if (good < 0) {
                pr.detail += (pr.detail.empty() ? "" : "; ") + std::string("no good copy to repair from");
              } else {
                proto::RepairRequest rr{name, members[good].ip, members[good].port};
                auto r = members[i].conn->Call(proto::kDepotRepairFile, proto::EncodeRepairRequest(rr), 1024);
                pr.repaired = r.ok() && r->status == 0;
                if (!pr.repaired) {
                  pr.detail += (pr.detail.empty() ? "" : "; ") + std::string("repair failed: ") +
                               (r.ok() ? proto::WireToStatus(r->status, "repair").ToString()
                                       : r.status().ToString());
                } else {
                  pr.detail += (pr.detail.empty() ? "" : "; ") + ("copied from " + members[good].addr);
                }
              }
            }
            report.problems.push_back(std::move(pr));
          }
        }
      }
    }
  }
  if (!found_group) return Status::NotFound("no such group:", fo.group);
  return report;
}

}  // namespace depot
