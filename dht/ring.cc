#include "dht/ring.h"

#include <xxhash.h>

#include <algorithm>

namespace depot::dht {

uint64_t Ring::KeyHash(std::string_view key) { return XXH64(key.data(), key.size(), 0); }

Ring::Ring(std::vector<std::string> nodes, int vnodes) : nodes_(std::move(nodes)) {
  std::sort(nodes_.begin(), nodes_.end());
  nodes_.erase(std::unique(nodes_.begin(), nodes_.end()), nodes_.end());
  if (vnodes < 1) vnodes = 1;
  points_.reserve(nodes_.size() * static_cast<size_t>(vnodes));
  for (uint32_t n = 0; n < nodes_.size(); ++n) {
    for (int i = 0; i < vnodes; ++i) {
      points_.emplace_back(KeyHash(nodes_[n] + "#" + std::to_string(i)), n);
    }
  }
  // Ties (two points with the same hash) are broken by node index, so every ring built from the
  // same membership is identical.
  std::sort(points_.begin(), points_.end());
}

std::vector<std::string> Ring::Preference(std::string_view key, int replicas) const {
  std::vector<std::string> out;
  if (points_.empty() || replicas <= 0) return out;
  size_t want = std::min(static_cast<size_t>(replicas), nodes_.size());
  uint64_t h = KeyHash(key);
  auto it = std::lower_bound(points_.begin(), points_.end(), std::make_pair(h, uint32_t{0}));
  std::vector<bool> taken(nodes_.size(), false);
  for (size_t step = 0; step < points_.size() && out.size() < want; ++step, ++it) {
    if (it == points_.end()) it = points_.begin();
    if (taken[it->second]) continue;
    taken[it->second] = true;
    out.push_back(nodes_[it->second]);
  }
  return out;
}

bool Ring::Owns(const std::string& node, std::string_view key, int replicas) const {
  for (const auto& n : Preference(key, replicas)) {
    if (n == node) return true;
  }
  return false;
}

}  // namespace depot::dht
