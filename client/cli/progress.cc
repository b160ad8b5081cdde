#include <unistd.h>

#include <cstdio>

#include "client/cli/cli.h"
#include "common/base/hash.h"

namespace depot::cli {

namespace {
constexpr uint64_t kMinBytes = 4 << 20;  // smaller transfers finish before a bar helps
}

ProgressBar::ProgressBar(const std::string& label, bool enabled)
    : label_(label), enabled_(enabled && isatty(STDERR_FILENO)), start_ns_(MonotonicNanos()) {}

ProgressBar::~ProgressBar() {
  if (drawn_) std::fputc('\n', stderr);
}

void ProgressBar::Update(uint64_t done, uint64_t total) {
  if (!enabled_ || total < kMinBytes) return;
  int64_t now = MonotonicNanos();
  if (done < total && now - last_draw_ns_ < 100'000'000) return;
  last_draw_ns_ = now;
  double secs = static_cast<double>(now - start_ns_) / 1e9;
  double frac = static_cast<double>(done) / static_cast<double>(total);
  int width = 30, fill = static_cast<int>(frac * width);
  std::string bar(static_cast<size_t>(fill), '#');
  bar.append(static_cast<size_t>(width - fill), ' ');
  double mbps = secs > 0 ? static_cast<double>(done) / secs / 1e6 : 0;
  std::fprintf(stderr, "\r%s [%s] %5.1f%% %8.1f MB/s %6.1f/%.1f MB", label_.c_str(), bar.c_str(),
               frac * 100, mbps, static_cast<double>(done) / 1e6,
               static_cast<double>(total) / 1e6);
  std::fflush(stderr);
  drawn_ = true;
}

}  // namespace depot::cli
