#include "control/run_hub.h"

#include <algorithm>

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace ap::control {

namespace asio = boost::asio;

void Subscription::push(const RunEvent& e) {
  if (!events_) return;
  {
    std::lock_guard lock(mu_);
    if (e.id <= after_) return;
    queue_.push_back(e);
  }
  asio::post(timer_.get_executor(), [w = weak_from_this()] {
    if (auto s = w.lock()) s->timer_.cancel();
  });
}

void Subscription::end(const std::string& result) {
  {
    std::lock_guard lock(mu_);
    ended_ = true;
    result_ = result;
  }
  asio::post(timer_.get_executor(), [w = weak_from_this()] {
    if (auto s = w.lock()) s->timer_.cancel();
  });
}

std::string Subscription::result() const {
  std::lock_guard lock(mu_);
  return result_;
}

bool Subscription::ended() const {
  std::lock_guard lock(mu_);
  return ended_ && queue_.empty();
}

asio::awaitable<std::optional<RunEvent>> Subscription::next(std::chrono::milliseconds idle) {
  timed_out_ = false;
  auto deadline = std::chrono::steady_clock::now() + idle;
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (!queue_.empty()) {
        RunEvent e = std::move(queue_.front());
        queue_.pop_front();
        co_return e;
      }
      if (ended_) co_return std::nullopt;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      timed_out_ = true;
      co_return std::nullopt;
    }
    timer_.expires_at(deadline);
    boost::system::error_code ec;
    co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

RunHub::RunHub(std::string replica) : replica_(std::move(replica)) {
  if (replica_.empty()) replica_ = Uuid::random_v4().to_string();
}

void RunHub::notify(const Uuid& run, const TenantId& tenant, bool watch, bool catch_up) const {
  if (watcher_) watcher_(run, tenant, watch, catch_up);
}

std::shared_ptr<Subscription> RunHub::subscribe(const Uuid& run, const TenantId& tenant, asio::any_io_executor ex,
                                                std::optional<int64_t> after, bool catch_up, bool events) {
  bool watch = false;
  std::shared_ptr<Subscription> s;
  {
    std::lock_guard lock(mu_);
    auto& st = streams_[run];
    st.tenant = tenant;
    const int64_t seen = st.active ? st.next_id - 1 : st.delivered;
    s = std::make_shared<Subscription>(ex, after.value_or(seen), events);
    if (after && events)
      for (const auto& e : st.log)
        if (e.id > *after) s->queue_.push_back(e);
    st.subs.push_back(s);
    if (!st.active && !st.watched) watch = st.watched = true;
  }
  if (watch) notify(run, tenant, true, catch_up);
  return s;
}

bool RunHub::wants_events(const Uuid& run) const {
  std::lock_guard lock(mu_);
  auto it = streams_.find(run);
  if (it == streams_.end()) return false;
  for (const auto& s : it->second.subs)
    if (s->events_) return true;
  return false;
}

void RunHub::unsubscribe(const Uuid& run, const std::shared_ptr<Subscription>& s) {
  bool unwatch = false;
  TenantId tenant;
  {
    std::lock_guard lock(mu_);
    auto it = streams_.find(run);
    if (it == streams_.end()) return;
    auto& st = it->second;
    st.subs.erase(std::remove(st.subs.begin(), st.subs.end(), s), st.subs.end());
    if (!st.subs.empty() || st.active) return;
    unwatch = st.watched;
    tenant = st.tenant;
    streams_.erase(it);
  }
  if (unwatch) notify(run, tenant, false, false);
}

bool RunHub::local(const Uuid& run) const {
  std::lock_guard lock(mu_);
  auto it = streams_.find(run);
  return it != streams_.end() && it->second.active;
}

int64_t RunHub::last_event(const Uuid& run) const {
  std::lock_guard lock(mu_);
  auto it = streams_.find(run);
  return it == streams_.end() ? -1 : it->second.delivered;
}

void RunHub::begin(const Uuid& run, const TenantId& tenant, int64_t next_id) {
  std::lock_guard lock(mu_);
  auto& st = streams_[run];
  st.tenant = tenant;
  st.active = true;
  st.next_id = next_id;
  st.log.clear();
}

void RunHub::push_locked(Stream& st, RunEvent e) {
  st.delivered = std::max(st.delivered, e.id);
  for (auto& s : st.subs) s->push(e);
  if (st.log.size() < kMaxLog) st.log.push_back(std::move(e));
}

int64_t RunHub::publish(const Uuid& run, std::string event, std::string data) {
  std::lock_guard lock(mu_);
  auto& st = streams_[run];
  RunEvent e{st.next_id++, std::move(event), std::move(data)};
  const int64_t id = e.id;
  push_locked(st, std::move(e));
  return id;
}

void RunHub::end(const Uuid& run, const std::string& result) {
  bool unwatch = false;
  TenantId tenant;
  {
    std::lock_guard lock(mu_);
    auto it = streams_.find(run);
    if (it == streams_.end()) return;
    for (auto& s : it->second.subs) s->end(result);
    unwatch = it->second.watched;
    tenant = it->second.tenant;
    streams_.erase(it);
  }
  if (unwatch) notify(run, tenant, false, false);
}

void RunHub::release(const Uuid& run) {
  bool watch = false;
  TenantId tenant;
  {
    std::lock_guard lock(mu_);
    auto it = streams_.find(run);
    if (it == streams_.end()) return;
    auto& st = it->second;
    st.active = false;
    if (st.subs.empty() && !st.watched) {
      streams_.erase(it);
      return;
    }
    // Subscribers stay: the next attempt's events come through the relay.
    tenant = st.tenant;
    if (!st.watched) watch = st.watched = true;
  }
  if (watch) notify(run, tenant, true, true);
}

std::vector<RunEvent> RunHub::events_after(const Uuid& run, int64_t after, size_t max) const {
  std::vector<RunEvent> out;
  std::lock_guard lock(mu_);
  auto it = streams_.find(run);
  if (it == streams_.end()) return out;
  const auto& log = it->second.log;
  // Ids ascend within a run's log.
  auto from = std::lower_bound(log.begin(), log.end(), after + 1,
                               [](const RunEvent& e, int64_t id) { return e.id < id; });
  for (; from != log.end() && out.size() < max; ++from) out.push_back(*from);
  return out;
}

void RunHub::deliver(const Uuid& run, const std::vector<RunEvent>& events) {
  std::lock_guard lock(mu_);
  auto it = streams_.find(run);
  if (it == streams_.end() || it->second.active) return;
  for (const auto& e : events)
    if (e.id > it->second.delivered) push_locked(it->second, e);
}

}  // namespace ap::control
