// Ring: consistent-hash placement of dht keys over nodes (doc/dht.md, "Placement").
//
// Each node ("host:port") has `vnodes` points on a 64-bit circle at XXH64(node + "#" + i, 0).
// A key sits at XXH64(key, 0); its preference list is the first `replicas` distinct nodes met
// walking clockwise from there. Every dht node and client builds the same ring from the same
// membership, so they agree on owners without talking. Immutable after construction: safe to share
// between threads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace depot::dht {

class Ring {
 public:
  Ring() = default;
  // Duplicates in `nodes` are dropped; the order does not matter.
  explicit Ring(std::vector<std::string> nodes, int vnodes = 64);

  // The members, sorted and unique.
  const std::vector<std::string>& nodes() const { return nodes_; }
  // The first min(replicas, nodes().size()) distinct nodes clockwise from the key's hash; the
  // first is the key's coordinator. Empty for an empty ring.
  std::vector<std::string> Preference(std::string_view key, int replicas) const;
  // True when `node` is in Preference(key, replicas).
  bool Owns(const std::string& node, std::string_view key, int replicas) const;

  static uint64_t KeyHash(std::string_view key);

 private:
  std::vector<std::string> nodes_;
  std::vector<std::pair<uint64_t, uint32_t>> points_;  // (hash, index in nodes_), sorted
};

}  // namespace depot::dht
