// The audit log: every tenant's events in a hash chain (docs/audit_format.md). Appends are
// batched per server shard and per tenant: events that arrive while a batch is being written go
// in the next one, and events nobody waits for gather for a few milliseconds first, so the rate
// is bounded by neither one commit per event nor a platform-wide lock (each tenant's chain head
// is its own row). Runs on a shard's executor; thread-safe.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/ids.h"
#include "common/result.h"

namespace ap::store {
class Pool;
}

namespace ap::audit {

using Json = nlohmann::json;
template <class T>
using Task = boost::asio::awaitable<Result<T>>;

// Full replay (every step, tool call, state change: for the tenant's developers) or decision
// log (key decisions with reasons, approvals, tool choices: for the tenant's customers).
enum class Level { kReplay = 0, kDecision = 1 };

struct Event {
  std::string kind;  // "auth.failure", "credential.use", "run.started", ... (docs/audit_format.md)
  Level level = Level::kReplay;
  Json payload = Json::object();  // structured; never a secret
};

// Who and where: the tenant whose chain gets the event, the actor ("key:<id>", "user:<sub>",
// "system"), the request id, and the shard's pool to write with.
struct Context {
  TenantId tenant;
  std::string actor;
  std::string request_id;
  store::Pool* pool = nullptr;
};

class AuditLog {
 public:
  // `linger`: how long events that nobody waits for (record) may gather into one batch before
  // they are written; 0 writes each batch at once. An append() is never held back.
  explicit AuditLog(Clock& clock = Clock::system(), std::chrono::milliseconds linger = kDefaultLinger);
  ~AuditLog();
  static constexpr std::chrono::milliseconds kDefaultLinger{20};

  // Shutdown of the users of these pools, before their executors stop: writes what is queued
  // now and stops lingering; returns when their queues are empty or after `max_wait`. Not from
  // a pool's own thread.
  void drain(const std::vector<store::Pool*>& pools, std::chrono::milliseconds max_wait);
  // Drops the queues of these pools once their executors have stopped, before the pools go.
  void forget(const std::vector<store::Pool*>& pools);

  // Appends and returns once the event is committed (durable). Callers that must not go on
  // unless the event is recorded (decrypting a credential) wait for this and stop on error.
  Task<void> append(Context ctx, Event event);
  // Queues without waiting (high-rate events such as authentication successes); a failed
  // write is logged.
  void record(const Context& ctx, Event event);

  // The bytes an entry stores and hashes (canonical JSON), for tests and tools.
  std::string entry_bytes(const Context& ctx, const Event& event) const;

 private:
  class Batcher;
  Batcher& batcher(store::Pool& pool);
  Clock& clock_;
  std::chrono::milliseconds linger_;
  std::mutex mu_;
  std::unordered_map<store::Pool*, std::unique_ptr<Batcher>> batchers_;
};

}  // namespace ap::audit
