#include "common/base/logging.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

namespace depot {

bool IsValidLogLevel(const std::string& level) {
  return level == "trace" || level == "debug" || level == "info" || level == "warn" ||
         level == "error" || level == "critical" || level == "off";
}

Status InitLogging(const std::string& path, const std::string& level) {
  if (!IsValidLogLevel(level)) return Status::InvalidArgument("log_level: unknown level", level);
  std::shared_ptr<spdlog::logger> logger;
  try {
    if (path.empty() || path == "-") {
      logger = std::make_shared<spdlog::logger>(
          "depot", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    } else {
      logger = std::make_shared<spdlog::logger>(
          "depot", std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, false));
    }
  } catch (const spdlog::spdlog_ex& e) {
    return Status::IOError("log_file: cannot open", path + " (" + e.what() + ")");
  }
  logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ [%t] %s:%# %v");
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
  return Status::OK();
}

}  // namespace depot
