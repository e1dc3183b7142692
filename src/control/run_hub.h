// In-process delivery of run events. The worker that runs a run publishes its events here (from
// any thread); stream requests on the same replica subscribe (on their shard's executor) and get
// them at once. A run that runs on another replica reaches this hub through the RunRelay
// (control/run_relay.h), which reads the PostgreSQL event log and deliver()s what it finds; the
// hub asks for that through its watcher callback. Each run's events are numbered from 0 (the
// `metadata` event) and kept while the run is watched or active, so a subscriber that joins late
// can replay from any id. Thread-safe.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <deque>
#include <functional>
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
  // `events`: false for a subscriber that waits only for the end (/wait): events are not
  // queued for it, and it does not count as someone who wants them (RunHub::wants_events).
  Subscription(boost::asio::any_io_executor ex, int64_t after, bool events = true)
      : timer_(ex, boost::asio::steady_timer::time_point::max()), after_(after), events_(events) {}
  // The next event, or nullopt when the run has ended (or the hub is closing), or after
  // `idle` without one (then `timed_out()`).
  boost::asio::awaitable<std::optional<RunEvent>> next(std::chrono::milliseconds idle);
  bool timed_out() const { return timed_out_; }
  bool ended() const;
  // What /wait answers, when the run ended on this replica and its worker passed it on ("" otherwise).
  std::string result() const;

 private:
  friend class RunHub;
  void push(const RunEvent& e);  // ignores events at or before `after_`
  void end(const std::string& result);
  boost::asio::steady_timer timer_;
  mutable std::mutex mu_;
  std::deque<RunEvent> queue_;
  int64_t after_;
  const bool events_;
  bool ended_ = false;
  bool timed_out_ = false;
  std::string result_;
};

class RunHub {
 public:
  // `replica`: this process's id in `runs.watchers` (docs/agent_api.md, "Across replicas");
  // empty: a random one.
  explicit RunHub(std::string replica = "");
  const std::string& replica() const { return replica_; }

  // Called outside the hub's lock with (run, tenant, true, catch_up) when a run that does not
  // run here gets its first subscriber, and with false when it has none left or has ended.
  // `catch_up`: read what the run's log already holds (a join), not only what comes next. Set
  // once, before the hub is used.
  using Watcher = std::function<void(const Uuid&, const TenantId&, bool on, bool catch_up)>;
  void set_watcher(Watcher w) { watcher_ = std::move(w); }

  // Subscribes to a run's events after event id `after` (-1: from the start, replaying what is
  // kept; nullopt: only events this hub has not delivered yet). `catch_up`: see Watcher (false
  // when the caller reads the run's status itself afterwards, or the run does not exist yet).
  // `events`: false to wait only for the end (see Subscription).
  std::shared_ptr<Subscription> subscribe(const Uuid& run, const TenantId& tenant, boost::asio::any_io_executor ex,
                                          std::optional<int64_t> after, bool catch_up = false, bool events = true);
  void unsubscribe(const Uuid& run, const std::shared_ptr<Subscription>& s);
  // True while a worker of this process runs the run.
  bool local(const Uuid& run) const;
  // True while a subscriber here wants the run's events (not only its end).
  bool wants_events(const Uuid& run) const;
  // The id of the last event delivered to the run's subscribers here (-1: none yet).
  int64_t last_event(const Uuid& run) const;

  // The worker's side. begin() starts a run's log (its next id is `next_id`), publish() numbers
  // and delivers an event, end() tells subscribers (with the run's /wait answer when known) and
  // drops the log. release() hands a run that
  // goes on elsewhere (this worker stopped or lost its lease) over to the relay.
  void begin(const Uuid& run, const TenantId& tenant, int64_t next_id);
  int64_t publish(const Uuid& run, std::string event, std::string data);
  void end(const Uuid& run, const std::string& result = "");
  void release(const Uuid& run);
  // The kept events of a run after id `after`, at most `max` (for the event log writer).
  std::vector<RunEvent> events_after(const Uuid& run, int64_t after, size_t max) const;

  // The relay's side: events of a run that runs elsewhere, in id order. Ignored while the run
  // runs here; events already delivered are skipped.
  void deliver(const Uuid& run, const std::vector<RunEvent>& events);

 private:
  struct Stream {
    TenantId tenant;
    std::vector<RunEvent> log;
    int64_t next_id = 0;     // local runs: the next id to publish
    int64_t delivered = -1;  // the highest id pushed to subscribers
    bool active = false;     // runs here
    bool watched = false;    // the watcher was told (true) and not yet untold
    std::vector<std::shared_ptr<Subscription>> subs;
  };
  static constexpr size_t kMaxLog = 100000;
  void push_locked(Stream& st, RunEvent e);
  void notify(const Uuid& run, const TenantId& tenant, bool watch, bool catch_up) const;

  std::string replica_;
  Watcher watcher_;
  mutable std::mutex mu_;
  std::unordered_map<Uuid, Stream, UuidHash> streams_;
};

}  // namespace ap::control
