#include "graph/checkpoint.h"

#include <mutex>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/ids.h"

namespace ap::graph {

Json Checkpoint::to_json() const {
  Json values = Json::object(), versions = Json::object(), seen_j = Json::object();
  for (size_t c = 0; c < channels->size(); ++c) {
    if (this->values[c]) values[(*channels)[c]] = this->values[c]->to_json();
    if (this->versions[c]) versions[(*channels)[c]] = this->versions[c];
  }
  for (size_t n = 0; n < nodes->size(); ++n) {
    Json row = Json::object();
    for (size_t c = 0; c < channels->size(); ++c)
      if (uint64_t v = seen_at(n, c)) row[(*channels)[c]] = v;
    seen_j[(*nodes)[n]] = std::move(row);
  }
  if (!interrupt_seen.empty()) {
    Json row = Json::object();
    for (size_t c = 0; c < channels->size() && c < interrupt_seen.size(); ++c)
      if (interrupt_seen[c]) row[(*channels)[c]] = interrupt_seen[c];
    seen_j["__interrupt__"] = std::move(row);
  }
  return {{"v", v},
          {"id", id},
          {"ts", ts},
          {"channel_values", std::move(values)},
          {"channel_versions", std::move(versions)},
          {"versions_seen", std::move(seen_j)}};
}

Json CheckpointMetadata::to_json() const {
  Json j = extra_json.empty() || extra_json == "{}" ? Json::object() : Json::parse(extra_json, nullptr, false);
  if (!j.is_object()) j = Json::object();
  j["source"] = source;
  j["step"] = step;
  Json p = Json::object();
  for (const auto& [ns, id] : parents) p[ns] = id;
  j["parents"] = std::move(p);
  return j;
}

std::string next_checkpoint_id() {
  // UUIDv7: 48 bits of milliseconds, then random bits. A new millisecond draws fresh random bits
  // once; within one millisecond (or if the clock steps back) the previous id plus one keeps
  // ids strictly increasing in this process at the cost of an increment.
  static std::mutex mu;
  static std::array<uint8_t, 16> last{};
  int64_t ms = Clock::system().unix_ms();
  std::lock_guard lock(mu);
  int64_t last_ms = 0;
  for (int i = 0; i < 6; ++i) last_ms = last_ms << 8 | last[i];
  std::array<uint8_t, 16> b;
  if (ms > last_ms) {
    b = Uuid::v7(ms).bytes();
  } else {
    b = last;
    for (int i = 15; i >= 9; --i)
      if (++b[i] != 0) break;
  }
  last = b;
  return Uuid(b).to_string();
}

}  // namespace ap::graph
