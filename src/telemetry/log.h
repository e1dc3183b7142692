// Structured JSON logging, written asynchronously (spdlog's async logger): one JSON object per
// line with ts, level, event and fields. Thread-safe. Never pass a secret as a field: the types
// below cannot hold a SecretString, by design.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <variant>

namespace ap::telemetry {

enum class Level { kDebug, kInfo, kWarn, kError };

// "debug", "info", "warn", "error"; anything else is info.
Level parse_level(std::string_view name);

struct LogOptions {
  Level level = Level::kInfo;
  std::string file;  // empty: stderr
  bool access_log_health = false;  // log /ok and /metrics requests too
};

// Installs the process-wide logger. Call once at start-up; safe to call again (replaces it).
void init_logging(const LogOptions& options);
// Flushes and stops the background writer. Call before exit.
void shutdown_logging();
const LogOptions& log_options();

struct Field {
  std::string_view key;
  std::variant<std::string_view, int64_t, double, bool> value;
  Field(std::string_view k, std::string_view v) : key(k), value(v) {}
  Field(std::string_view k, const std::string& v) : key(k), value(std::string_view(v)) {}
  Field(std::string_view k, const char* v) : key(k), value(std::string_view(v)) {}
  Field(std::string_view k, int64_t v) : key(k), value(v) {}
  Field(std::string_view k, int v) : key(k), value(int64_t{v}) {}
  Field(std::string_view k, uint64_t v) : key(k), value(static_cast<int64_t>(v)) {}
  Field(std::string_view k, double v) : key(k), value(v) {}
  Field(std::string_view k, bool v) : key(k), value(v) {}
};

// Appends `s` as a JSON string literal (quotes, escapes for control characters).
void append_json_string(std::string& out, std::string_view s);

void log(Level level, std::string_view event, std::initializer_list<Field> fields = {});
// Whether a line at `level` would be written (to skip building its fields).
bool log_enabled(Level level);
inline void log_info(std::string_view e, std::initializer_list<Field> f = {}) {
  log(Level::kInfo, e, f);
}
inline void log_warn(std::string_view e, std::initializer_list<Field> f = {}) {
  log(Level::kWarn, e, f);
}
inline void log_error(std::string_view e, std::initializer_list<Field> f = {}) {
  log(Level::kError, e, f);
}

}  // namespace ap::telemetry
