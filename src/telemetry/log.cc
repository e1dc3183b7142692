#include "telemetry/log.h"

#include <spdlog/async.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "common/clock.h"

namespace ap::telemetry {
namespace {

LogOptions g_options;
std::shared_ptr<spdlog::logger> g_logger;

spdlog::level::level_enum to_spd(Level l) {
  switch (l) {
    case Level::kDebug: return spdlog::level::debug;
    case Level::kInfo: return spdlog::level::info;
    case Level::kWarn: return spdlog::level::warn;
    case Level::kError: return spdlog::level::err;
  }
  return spdlog::level::info;
}

std::string_view level_name(Level l) {
  switch (l) {
    case Level::kDebug: return "debug";
    case Level::kInfo: return "info";
    case Level::kWarn: return "warn";
    case Level::kError: return "error";
  }
  return "info";
}

}  // namespace

void init_logging(const LogOptions& options) {
  g_options = options;
  spdlog::init_thread_pool(8192, 1);
  spdlog::sink_ptr sink;
  if (options.file.empty()) {
    sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  } else {
    sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(options.file);
  }
  auto logger = std::make_shared<spdlog::async_logger>(
      "agentplane", sink, spdlog::thread_pool(), spdlog::async_overflow_policy::overrun_oldest);
  logger->set_pattern("%v");
  logger->set_level(to_spd(options.level));
  logger->flush_on(spdlog::level::warn);
  spdlog::flush_every(std::chrono::seconds(1));
  spdlog::drop("agentplane");
  spdlog::register_logger(logger);
  g_logger = logger;
}

void shutdown_logging() {
  if (g_logger) g_logger->flush();
  g_logger.reset();
  spdlog::shutdown();
}

const LogOptions& log_options() { return g_options; }

void log(Level level, std::string_view event, std::initializer_list<Field> fields) {
  auto logger = g_logger;
  if (!logger) {
    // Before init (or in tests): warnings and errors still reach stderr.
    if (level < Level::kWarn) return;
    init_logging(g_options);
    logger = g_logger;
  }
  if (!logger->should_log(to_spd(level))) return;
  nlohmann::json j;
  j["ts"] = format_rfc3339(std::chrono::system_clock::now());
  j["level"] = level_name(level);
  j["event"] = event;
  for (const auto& f : fields) {
    std::visit([&](const auto& v) { j[std::string(f.key)] = v; }, f.value);
  }
  logger->log(to_spd(level), "{}", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

}  // namespace ap::telemetry
