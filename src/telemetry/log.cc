#include "telemetry/log.h"

#include <spdlog/async.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <type_traits>

#include "common/clock.h"

namespace ap::telemetry {
namespace {

LogOptions g_options;
std::shared_ptr<spdlog::logger> g_logger;
// The installed logger's level (-1: none yet): lines below it return before touching the logger
// (a shared_ptr copy per line is an atomic write every request's access line would contend on).
std::atomic<int> g_level{-1};

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

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 15];
        } else {
          out += static_cast<char>(c);  // UTF-8 passes through
        }
    }
  }
  out += '"';
}

Level parse_level(std::string_view s) {
  if (s == "debug") return Level::kDebug;
  if (s == "warn") return Level::kWarn;
  if (s == "error") return Level::kError;
  return Level::kInfo;
}

void init_logging(const LogOptions& options) {
  g_options = options;
  // Lines go to a background thread that does the writing: the request path only enqueues.
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
  g_level.store(static_cast<int>(options.level), std::memory_order_relaxed);
}

void shutdown_logging() {
  if (g_logger) g_logger->flush();
  g_level.store(-1, std::memory_order_relaxed);
  g_logger.reset();
  spdlog::shutdown();
}

const LogOptions& log_options() { return g_options; }

bool log_enabled(Level level) {
  const int installed = g_level.load(std::memory_order_relaxed);
  return installed < 0 ? level >= Level::kWarn : static_cast<int>(level) >= installed;
}

void log(Level level, std::string_view event, std::initializer_list<Field> fields) {
  const int installed = g_level.load(std::memory_order_relaxed);
  if (installed >= 0 && static_cast<int>(level) < installed) return;
  auto logger = g_logger;
  if (!logger) {
    // Before init (or in tests): warnings and errors still reach stderr.
    if (level < Level::kWarn) return;
    init_logging(g_options);
    logger = g_logger;
  }
  if (!logger->should_log(to_spd(level))) return;
  // Built by hand (no JSON DOM): this runs once per request.
  std::string line;
  line.reserve(256);
  line += "{\"ts\":\"";
  line += format_rfc3339(std::chrono::system_clock::now());
  line += "\",\"level\":\"";
  line += level_name(level);
  line += "\",\"event\":";
  append_json_string(line, event);
  for (const auto& f : fields) {
    line += ',';
    append_json_string(line, f.key);
    line += ':';
    std::visit(
        [&](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, std::string_view>) {
            append_json_string(line, v);
          } else if constexpr (std::is_same_v<T, bool>) {
            line += v ? "true" : "false";
          } else if constexpr (std::is_same_v<T, double>) {
            char buf[32];
            std::snprintf(buf, sizeof buf, "%.3f", v);
            line += buf;
          } else {
            line += std::to_string(v);
          }
        },
        f.value);
  }
  line += '}';
  logger->log(to_spd(level), "{}", line);
}

}  // namespace ap::telemetry
