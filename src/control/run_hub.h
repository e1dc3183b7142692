// In-process delivery of run events: the worker that runs a run publishes its events here
// (from any thread); stream requests on the same replica subscribe (on their shard's executor)
// and get them at once. Each run's events are numbered from 0 (the `metadata` event) and kept
// while the run is active, so a subscriber that joins late can replay from any id. Cancel
// requests made on this replica reach the run through here too. Thread-safe.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/ids.h"

namespace ap::control {

struct RunEvent {
  int64_t id = 0;
  std::string event;  // "metadata", "values", "updates|child:<task>", "error", ...
  std::string data;   // one line of JSON
};

class RunHub;

class Subscription : public std::enable_shared_from_this<Subscription> {
 public:
  Subscription(boost::asio::any_io_executor ex) : timer_(ex, boost::asio::steady_timer::time_point::max()) {}
  // The next event, or nullopt when the run has ended (or the hub is closing), or after
  // `idle` without one (then `timed_out()`).
  boost::asio::awaitable<std::optional<RunEvent>> next(std::chrono::milliseconds idle);
  bool timed_out() const { return timed_out_; }
  bool ended() const;

 private:
  friend class RunHub;
  void push(const RunEvent& e);
  void end();
  boost::asio::steady_timer timer_;
  mutable std::mutex mu_;
  std::deque<RunEvent> queue_;
  bool ended_ = false;
  bool timed_out_ = false;
};

class RunHub {
 public:
  // Subscribes to a run's events: after event id `after` (-1: from the start, replaying what is
  // kept; nullopt: only events published from now on).
  std::shared_ptr<Subscription> subscribe(const Uuid& run, boost::asio::any_io_executor ex, std::optional<int64_t> after);
  void unsubscribe(const Uuid& run, const std::shared_ptr<Subscription>& s);

  // The worker's side. begin() starts a run's log (its next id is `next_id`), publish() numbers
  // and delivers an event, end() tells subscribers and drops the log.
  void begin(const Uuid& run, int64_t next_id);
  int64_t publish(const Uuid& run, std::string event, std::string data);
  void end(const Uuid& run);

  // Cancel requests: set here by the API, read by the running run between supersteps.
  void request_cancel(const Uuid& run, std::string action);
  std::optional<std::string> cancel_requested(const Uuid& run) const;

 private:
  struct Stream {
    std::vector<RunEvent> log;
    int64_t next_id = 0;
    bool active = false;
    std::vector<std::shared_ptr<Subscription>> subs;
    std::string cancel;
  };
  static constexpr size_t kMaxLog = 100000;
  mutable std::mutex mu_;
  std::unordered_map<Uuid, Stream, UuidHash> streams_;
};

}  // namespace ap::control
