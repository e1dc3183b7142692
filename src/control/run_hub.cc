#include "control/run_hub.h"

#include <algorithm>

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace ap::control {

namespace asio = boost::asio;

void Subscription::push(const RunEvent& e) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back(e);
  }
  asio::post(timer_.get_executor(), [w = weak_from_this()] {
    if (auto s = w.lock()) s->timer_.cancel();
  });
}

void Subscription::end() {
  {
    std::lock_guard lock(mu_);
    ended_ = true;
  }
  asio::post(timer_.get_executor(), [w = weak_from_this()] {
    if (auto s = w.lock()) s->timer_.cancel();
  });
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

std::shared_ptr<Subscription> RunHub::subscribe(const Uuid& run, asio::any_io_executor ex, std::optional<int64_t> after) {
  auto s = std::make_shared<Subscription>(ex);
  std::lock_guard lock(mu_);
  auto& st = streams_[run];
  if (after)
    for (const auto& e : st.log)
      if (e.id > *after) s->queue_.push_back(e);
  st.subs.push_back(s);
  return s;
}

void RunHub::unsubscribe(const Uuid& run, const std::shared_ptr<Subscription>& s) {
  std::lock_guard lock(mu_);
  auto it = streams_.find(run);
  if (it == streams_.end()) return;
  auto& subs = it->second.subs;
  subs.erase(std::remove(subs.begin(), subs.end(), s), subs.end());
  if (subs.empty() && !it->second.active) streams_.erase(it);
}

void RunHub::begin(const Uuid& run, int64_t next_id) {
  std::lock_guard lock(mu_);
  auto& st = streams_[run];
  st.active = true;
  st.next_id = next_id;
  st.log.clear();
}

int64_t RunHub::publish(const Uuid& run, std::string event, std::string data) {
  std::lock_guard lock(mu_);
  auto& st = streams_[run];
  RunEvent e{st.next_id++, std::move(event), std::move(data)};
  if (st.log.size() < kMaxLog) st.log.push_back(e);
  for (auto& s : st.subs) s->push(e);
  return e.id;
}

void RunHub::end(const Uuid& run) {
  std::lock_guard lock(mu_);
  auto it = streams_.find(run);
  if (it == streams_.end()) return;
  for (auto& s : it->second.subs) s->end();
  streams_.erase(it);
}

void RunHub::request_cancel(const Uuid& run, std::string action) {
  std::lock_guard lock(mu_);
  auto it = streams_.find(run);
  if (it != streams_.end() && it->second.active) it->second.cancel = std::move(action);
}

std::optional<std::string> RunHub::cancel_requested(const Uuid& run) const {
  std::lock_guard lock(mu_);
  auto it = streams_.find(run);
  if (it == streams_.end() || it->second.cancel.empty()) return std::nullopt;
  return it->second.cancel;
}

}  // namespace ap::control
