// A LISTEN connection that stays open: connects (retrying every second, with TCP keepalives so
// that a silently dropped connection is noticed within seconds), LISTENs on its channels and
// hands each notification to a callback. Notifications sent while it was not listening are lost:
// `on_ready` runs after every (re)connection so the owner can catch up by reading the tables.
// Not thread-safe: lives on one executor; stop() may be called from any thread.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/steady_timer.hpp>

#include "store/conn.h"

namespace ap::store {

class Listener {
 public:
  using OnNotify = std::function<void(std::string_view channel, std::string_view payload)>;
  Listener(asio::any_io_executor ex, std::string conninfo, std::vector<std::string> channels);
  ~Listener();

  // Runs until stop(). `on_ready` (may be empty) runs after each LISTEN succeeded.
  asio::awaitable<void> run(OnNotify on_notify, std::function<void()> on_ready);
  // Makes run() return soon. Thread-safe.
  void stop();
  bool listening() const { return listening_; }

 private:
  asio::any_io_executor ex_;
  std::string conninfo_;
  std::vector<std::string> channels_;
  std::unique_ptr<Conn> conn_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> listening_{false};
  asio::steady_timer backoff_;
};

// libpq options for long-lived connections: keepalives and a bounded connect.
std::vector<std::pair<std::string, std::string>> long_lived_options();

}  // namespace ap::store
