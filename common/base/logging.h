// Logging for every Depot binary: spdlog underneath, one process-wide logger set up by main.
// The DEPOT_LOG_* macros add the source location. Thread-safe.
#pragma once

#include <string>

#include <spdlog/spdlog.h>

#include "common/base/status.h"

namespace depot {

// Sets up the default logger: to `path` (appending) or stderr when path is empty or "-".
// `level` is one of trace, debug, info, warn, error, critical, off.
Status InitLogging(const std::string& path, const std::string& level);

// True for a level name InitLogging accepts.
bool IsValidLogLevel(const std::string& level);

}  // namespace depot

#define DEPOT_LOG_DEBUG(...) SPDLOG_LOGGER_CALL(spdlog::default_logger_raw(), spdlog::level::debug, __VA_ARGS__)
#define DEPOT_LOG_INFO(...) SPDLOG_LOGGER_CALL(spdlog::default_logger_raw(), spdlog::level::info, __VA_ARGS__)
#define DEPOT_LOG_WARN(...) SPDLOG_LOGGER_CALL(spdlog::default_logger_raw(), spdlog::level::warn, __VA_ARGS__)
#define DEPOT_LOG_ERROR(...) SPDLOG_LOGGER_CALL(spdlog::default_logger_raw(), spdlog::level::err, __VA_ARGS__)
