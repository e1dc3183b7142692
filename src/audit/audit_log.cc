#include "audit/audit_log.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <algorithm>
#include <deque>
#include <future>
#include <thread>

#include "audit/canonical.h"
#include "common/crypto.h"
#include "store/pool.h"
#include "store/tx.h"
#include "telemetry/log.h"

namespace ap::audit {

namespace asio = boost::asio;

namespace {

// bytea[] in PostgreSQL's text form: {"\\x7b22...", ...}
std::string bytea_array(const std::vector<std::string>& items) {
  std::string out = "{";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ',';
    out += "\"\\\\x";
    out += hex_encode(items[i]);
    out += '"';
  }
  return out + '}';
}

std::string text_array(const std::vector<std::string>& items) {
  std::string out = "{";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ',';
    out += '"';
    for (char c : items[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + '}';
}

}  // namespace

void report_failure(const TenantId& tenant, const Error& e, size_t events) {
  telemetry::log_error("audit_append_failed", {{"tenant_id", tenant.to_string()},
                                               {"error", e.message},
                                               {"events", static_cast<int64_t>(events)}});
}

// One shard's queue. Used only on its pool's executor, so it needs no lock.
class AuditLog::Batcher {
 public:
  Batcher(store::Pool& pool, std::chrono::milliseconds linger)
      : pool_(pool), linger_(pool.executor(), asio::steady_timer::time_point::max()), linger_for_(linger) {}

  struct Waiter {
    explicit Waiter(asio::any_io_executor ex) : timer(ex, asio::steady_timer::time_point::max()) {}
    asio::steady_timer timer;
    Status result = Error::internal("not written");
    bool done = false;
  };
  struct Item {
    TenantId tenant;
    Level level;
    std::string kind, bytes;
    std::shared_ptr<Waiter> waiter;  // null: nobody waits
  };

  void enqueue(Item item) {
    const bool urgent = item.waiter != nullptr;
    if (urgent) ++urgent_;
    queue_.push_back(std::move(item));
    if (lingering_) {
      // The next batch is gathering: someone waiting, or a full batch, sends it now.
      if (urgent || queue_.size() >= kFullBatch) linger_.cancel();
      return;
    }
    if (flushing_ < kMaxFlushes) {
      ++flushing_;
      asio::co_spawn(pool_.executor(), flush(), asio::detached);
    }
  }

  // Stops lingering: what is queued goes out now, and so does everything after (shutdown).
  void stop_lingering() {
    draining_ = true;
    linger_.cancel();
  }
  bool idle() const { return queue_.empty() && flushing_ == 0; }
  asio::any_io_executor executor() { return pool_.executor(); }

 private:
  // Two batches may be on their way at once (one being written while the next is sent); one
  // tenant's appends still commit one after the other, as each locks its chain's head row.
  static constexpr int kMaxFlushes = 2;
  // A batch of events nobody waits for gathers for up to `linger_for_` (or this many events)
  // before it is written: one commit for many events instead of one each.
  static constexpr size_t kFullBatch = 512;

  // One batch, every tenant in it, in one transaction and one round trip: per tenant (in id
  // order, so that two shards never wait on each other's head rows), its set_config and one
  // audit_append of its events in arrival order.
  asio::awaitable<Status> write(const std::vector<TenantId>& tenants,
                                std::unordered_map<TenantId, std::vector<Item*>, UuidHash>& by_tenant) {
    std::vector<store::Statement> st;
    st.push_back({"BEGIN", {}});
    for (const auto& tenant : tenants) {
      std::vector<std::string> levels, kinds, bodies;
      for (auto* it : by_tenant[tenant]) {
        levels.push_back(std::to_string(static_cast<int>(it->level)));
        kinds.push_back(it->kind);
        bodies.push_back(it->bytes);
      }
      st.push_back({"SELECT set_config('app.tenant_id', $1, true)", store::params(tenant.to_string())});
      st.push_back({"SELECT last_seq FROM audit_append($1, $2::smallint[], $3::text[], $4::bytea[])",
                    store::params(tenant.to_string(), text_array(levels), text_array(kinds), bytea_array(bodies))});
    }
    st.push_back({"COMMIT", {}});
    auto lease = co_await pool_.acquire();
    if (!lease) co_return lease.error();
    auto r = co_await (*lease)->pipeline(st);
    if (!r) co_return r.error();
    co_return ok_status();
  }

  asio::awaitable<void> flush() {
    while (!queue_.empty()) {
      if (lingering_) break;  // another flush gathers the next batch
      if (linger_for_.count() > 0 && urgent_ == 0 && !draining_ && queue_.size() < kFullBatch) {
        lingering_ = true;
        linger_.expires_after(linger_for_);
        boost::system::error_code ec;
        co_await linger_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        lingering_ = false;
        if (queue_.empty()) break;
      }
      std::deque<Item> batch;
      batch.swap(queue_);
      urgent_ = 0;
      std::unordered_map<TenantId, std::vector<Item*>, UuidHash> by_tenant;
      for (auto& it : batch) by_tenant[it.tenant].push_back(&it);
      std::vector<TenantId> tenants;
      for (const auto& [t, _] : by_tenant) tenants.push_back(t);
      std::sort(tenants.begin(), tenants.end());
      Status status = co_await write(tenants, by_tenant);
      std::vector<std::pair<TenantId, Status>> results;
      if (status || tenants.size() == 1) {
        for (const auto& t : tenants) results.emplace_back(t, status);
      } else {
        // The batch's transaction rolled back: each tenant on its own, so that one tenant's
        // failure is not every tenant's.
        for (const auto& t : tenants) {
          std::vector<TenantId> one(1, t);  // (g++ 12: no braced lists in co_await)
          Status alone = co_await write(one, by_tenant);
          results.emplace_back(t, alone);
        }
      }
      for (const auto& [tenant, st] : results) {
        if (!st) report_failure(tenant, st.error(), by_tenant[tenant].size());
        for (auto* it : by_tenant[tenant]) {
          if (!it->waiter) continue;
          it->waiter->result = st;
          it->waiter->done = true;
          it->waiter->timer.cancel();
        }
      }
    }
    --flushing_;
  }

  store::Pool& pool_;
  std::deque<Item> queue_;
  int flushing_ = 0;
  size_t urgent_ = 0;  // queued events someone waits for
  asio::steady_timer linger_;
  std::chrono::milliseconds linger_for_;
  bool lingering_ = false, draining_ = false;
};

AuditLog::AuditLog(Clock& clock, std::chrono::milliseconds linger) : clock_(clock), linger_(linger) {}
AuditLog::~AuditLog() = default;

AuditLog::Batcher& AuditLog::batcher(store::Pool& pool) {
  std::lock_guard lock(mu_);
  auto& b = batchers_[&pool];
  if (!b) b = std::make_unique<Batcher>(pool, linger_);
  return *b;
}

void AuditLog::drain(const std::vector<store::Pool*>& pools, std::chrono::milliseconds max_wait) {
  std::vector<Batcher*> all;
  {
    std::lock_guard lock(mu_);
    for (auto* pool : pools)
      if (auto it = batchers_.find(pool); it != batchers_.end()) all.push_back(it->second.get());
  }
  const auto deadline = std::chrono::steady_clock::now() + max_wait;
  for (Batcher* b : all) {
    for (;;) {
      auto idle = std::make_shared<std::promise<bool>>();
      auto f = idle->get_future();
      asio::post(b->executor(), [b, idle] {
        b->stop_lingering();
        idle->set_value(b->idle());
      });
      if (f.wait_until(deadline) != std::future_status::ready || f.get()) break;
      if (std::chrono::steady_clock::now() >= deadline) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
}

void AuditLog::forget(const std::vector<store::Pool*>& pools) {
  std::lock_guard lock(mu_);
  for (auto* pool : pools) batchers_.erase(pool);
}

std::string AuditLog::entry_bytes(const Context& ctx, const Event& event) const {
  Json entry{{"v", 1},
             {"tenant", ctx.tenant.to_string()},
             {"time", format_rfc3339(clock_.now())},
             {"kind", event.kind},
             {"level", event.level == Level::kDecision ? "decision" : "replay"},
             {"actor", ctx.actor},
             {"payload", event.payload}};
  if (!ctx.request_id.empty()) entry["request_id"] = ctx.request_id;
  return canonical_json(entry);
}

Task<void> AuditLog::append(Context ctx, Event event) {
  if (!ctx.pool) co_return Error::internal("audit context has no database pool");
  auto waiter = std::make_shared<Batcher::Waiter>(ctx.pool->executor());
  batcher(*ctx.pool).enqueue({ctx.tenant, event.level, event.kind, entry_bytes(ctx, event), waiter});
  boost::system::error_code ec;
  while (!waiter->done) co_await waiter->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  co_return waiter->result;
}

void AuditLog::record(const Context& ctx, Event event) {
  if (!ctx.pool) return;
  batcher(*ctx.pool).enqueue({ctx.tenant, event.level, event.kind, entry_bytes(ctx, event), nullptr});
}

}  // namespace ap::audit
