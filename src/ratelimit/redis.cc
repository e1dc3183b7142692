// The Redis backend. Debian's hiredis (0.14) has no Asio adapter, so we use only its protocol
// halves: redisFormatCommandArgv to write commands and a redisReader to parse replies, on our own
// Asio socket. One pipelined connection per executor (server shard): commands from that shard's
// coroutines are written back to back without waiting, replies matched in order. Nothing blocks
// a server thread. Decisions are batched: those a shard's coroutines ask for in the same turn of
// its event loop go in one EVALSHA of the script below (up to kMaxBatch), which runs them in
// order; within each decision every ask is checked and, only if all pass, taken, atomically
// (Redis runs a script alone), so a batch is exact like single decisions. A batch mixes tenants
// unless RedisOptions::slot_batches is set (then one batch per tenant hash tag, for Redis
// Cluster proxies, whose scripts must keep to one slot).
#include <hiredis/hiredis.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "common/crypto.h"
#include "ratelimit/limiter.h"
#include "telemetry/metrics.h"

namespace ap::ratelimit {
namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

// ARGV[1]: the number of decisions; then per decision: mode ('a' acquire, 'j' adjust), its
// number of keys n, and per key: kind ('b' bucket, 'c' counter, 'w' sliding window), limit,
// refill per millisecond (window, adjust: the window number the take went into, -1: current), ttl seconds
// (window: its length), cost. KEYS: every decision's keys in order. Returns per decision
// {allowed, retry_ms (-1: never), denied index, then per key remaining, reset_ms and the window
// number (0 but for windows)}, concatenated.
// The batch costs one MGET of all its keys and one SET per key it changed, whatever the number
// of decisions on that key (decisions run in order on the values in memory). A bucket is
// "tokens:last_ms:written_ms", kept 24 h after it was (re)written with an expiry, refreshed
// every 12 h while in use; a counter is its count, kept until its period ends (plus an hour); a
// window is "current:previous:window_number", kept two windows.
constexpr const char* kScript = R"lua(
local tonumber, tostring, floor, ceil, min, max = tonumber, tostring, math.floor, math.ceil, math.min, math.max
-- Seconds until `cost` more fits in a sliding window (as WindowMath::wait_s; -1: never).
local function window_wait(limit, cost, cur, prev, f, ws)
  if cost > limit then return -1 end
  local room = limit - cur - cost
  if room >= 0 then
    if prev <= 0 then return 0 end
    return max(0, (1 - room / prev) - f) * ws
  end
  local g = 0
  if cur > 0 then g = max(0, 1 - (limit - cost) / cur) end
  return ((1 - f) + g) * ws
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + floor(tonumber(t[2]) / 1000)
local raw = redis.call('MGET', unpack(KEYS))
local st = {}
for i = 1, #KEYS do
  local key = KEYS[i]
  if st[key] == nil then
    local s = {fresh = true}
    local v = raw[i]
    if v then
      s.fresh = false
      local c1 = string.find(v, ':', 1, true)
      if c1 then
        local c2 = string.find(v, ':', c1 + 1, true)
        s.v = tonumber(string.sub(v, 1, c1 - 1))
        s.ts = tonumber(string.sub(v, c1 + 1, c2 - 1))
        s.made = tonumber(string.sub(v, c2 + 1))
      else
        s.v = tonumber(v)
      end
    end
    st[key] = s
  end
end
local out = {}
local o = 0
local k = 0
local a = 1
-- Per-ask scratch, reused by every decision (only 1..n are read).
local kind, limit, rate, ttl, cost, value = {}, {}, {}, {}, {}, {}
for _ = 1, tonumber(ARGV[1]) do
  local mode = ARGV[a + 1]
  local n = tonumber(ARGV[a + 2])
  a = a + 2
  for i = 1, n do
    kind[i] = ARGV[a + 1]
    limit[i] = tonumber(ARGV[a + 2])
    rate[i] = tonumber(ARGV[a + 3])
    ttl[i] = tonumber(ARGV[a + 4])
    cost[i] = tonumber(ARGV[a + 5])
    a = a + 5
    local s = st[KEYS[k + i]]
    if kind[i] == 'b' then
      local tokens, ts = limit[i], now
      if s.v ~= nil and s.ts ~= nil then tokens = s.v; ts = s.ts end
      value[i] = min(limit[i], tokens + max(0, now - ts) * rate[i])
    elseif kind[i] == 'w' then
      local W = ttl[i] * 1000
      local idx = floor(now / W)
      if not s.winit then
        s.cur, s.prev = 0, 0
        if s.v ~= nil and s.made ~= nil then
          if s.made == idx then s.cur = s.v; s.prev = s.ts elseif s.made == idx - 1 then s.prev = s.v end
        end
        s.idx = idx; s.W = W; s.winit = true
      end
      s.f = (now % W) / W
      value[i] = s.prev * (1 - s.f) + s.cur
    else
      value[i] = s.v or 0
    end
  end
  local allowed = 1
  local retry = 0
  local denied = 0
  if mode == 'a' then
    for i = 1, n do
      local short
      if kind[i] == 'b' then short = value[i] < cost[i] else short = value[i] + cost[i] > limit[i] end
      if short then
        if allowed == 1 then denied = i end
        allowed = 0
        local w
        if kind[i] == 'b' then
          if cost[i] > limit[i] or rate[i] <= 0 then w = -1 else w = (cost[i] - value[i]) / rate[i] end
        elseif kind[i] == 'w' then
          local s = st[KEYS[k + i]]
          w = window_wait(limit[i], cost[i], s.cur, s.prev, s.f, ttl[i]) * 1000
        else
          w = ttl[i] * 1000
        end
        if w < 0 or retry < 0 then retry = -1 elseif w > retry then retry = w end
      end
    end
  end
  o = o + 1; out[o] = allowed
  o = o + 1; out[o] = ceil(retry)
  o = o + 1; out[o] = denied
  local take = (mode == 'j' or allowed == 1)
  for i = 1, n do
    local v = value[i]
    local s = st[KEYS[k + i]]
    if kind[i] == 'b' then
      if take then
        if s.dirty then v = s.v end  -- the same key twice in one decision: take from what is left
        v = min(limit[i], v - cost[i])
        s.v = v; s.ts = now; s.kind = 'b'; s.dirty = true
      end
      o = o + 1; out[o] = floor(max(v, 0))
      o = o + 1
      if rate[i] > 0 then out[o] = ceil((limit[i] - v) / rate[i]) else out[o] = 0 end
      o = o + 1; out[o] = 0
    elseif kind[i] == 'w' then
      if mode == 'j' then  -- a correction lands in the window of its take, never below zero
        if rate[i] < 0 or rate[i] == s.idx then s.cur = max(0, s.cur + cost[i])
        elseif rate[i] == s.idx - 1 then s.prev = max(0, s.prev + cost[i]) end
        s.kind = 'w'; s.dirty = true
        v = s.prev * (1 - s.f) + s.cur
      elseif take then
        s.cur = s.cur + cost[i]; s.kind = 'w'; s.dirty = true
        v = v + cost[i]
      end
      o = o + 1; out[o] = floor(max(limit[i] - v, 0))
      o = o + 1; out[o] = ceil((1 - s.f) * s.W)
      o = o + 1; out[o] = s.idx
    else
      if take then
        if s.dirty then v = s.v end
        v = v + cost[i]
        s.v = v; s.kind = 'c'; s.ttl = ttl[i]; s.dirty = true
      end
      o = o + 1; out[o] = max(limit[i] - v, 0)
      o = o + 1; out[o] = ttl[i] * 1000
      o = o + 1; out[o] = 0
    end
  end
  k = k + n
end
for key, s in pairs(st) do
  if s.dirty then
    if s.kind == 'w' then
      redis.call('SET', key, tostring(s.cur) .. ':' .. tostring(s.prev) .. ':' .. s.idx, 'PX', 2 * s.W + 1000)
    elseif s.kind == 'b' then
      if s.made == nil or now - s.made > 43200000 then
        redis.call('SET', key, tostring(s.v) .. ':' .. s.ts .. ':' .. now, 'PX', 86400000)
      else
        redis.call('SET', key, tostring(s.v) .. ':' .. s.ts .. ':' .. s.made, 'KEEPTTL')
      end
    elseif s.fresh then
      redis.call('SET', key, tostring(s.v), 'EX', s.ttl + 3600)
    else
      redis.call('SET', key, tostring(s.v), 'KEEPTTL')
    end
  end
end
return out
)lua";

// Our keys in Redis: "rl3:" + the limiter's key (which starts with the tenant's hash tag). The
// prefix names the storage layout, so a server of another layout never reads these keys.
constexpr const char* kKeyPrefix = "rl3:";
constexpr size_t kMaxBatch = 256;
constexpr auto kCorrectionDelay = std::chrono::milliseconds(2);
constexpr size_t kMaxCorrectionKeys = 1000;  // per batch (Lua's unpack of a script's keys has a limit)

telemetry::Counter& settle_failed() {
  static auto& c = telemetry::metrics()
                       .counter("agentplane_ratelimit_decisions_total", "Limit decisions by outcome (allowed, denied, degraded).",
                                {"outcome"})
                       .with({"settle_failed"});
  return c;
}

struct Reply {
  int type = 0;  // REDIS_REPLY_*
  long long integer = 0;
  std::string str;
  std::vector<Reply> elements;
};

Reply convert(const redisReply* r) {
  Reply out;
  out.type = r->type;
  out.integer = r->integer;
  if (r->str) out.str.assign(r->str, r->len);
  for (size_t i = 0; i < r->elements; ++i) out.elements.push_back(convert(r->element[i]));
  return out;
}

// One pipelined connection on one executor. Not thread-safe: used only from its executor.
class Connection {
 public:
  Connection(asio::any_io_executor ex, const RedisOptions& o) : ex_(ex), o_(o), socket_(ex) {}
  ~Connection() {
    if (reader_) redisReaderFree(reader_);
  }

  asio::awaitable<Result<Reply>> command(std::vector<std::string> args) {
    while (connecting_) {  // another coroutine is connecting: wait for it
      asio::steady_timer t(ex_, std::chrono::milliseconds(1));
      co_await t.async_wait(kTuple);
    }
    if (!connected_) {
      // After a failed attempt, callers fail at once for a second instead of each trying again.
      if (std::chrono::steady_clock::now() - failed_at_ < std::chrono::seconds(1))
        co_return Error::unavailable("redis is unreachable (retrying every second)");
      auto st = co_await connect();
      if (!st) {
        failed_at_ = std::chrono::steady_clock::now();
        co_return st.error();
      }
    }
    co_return co_await send(std::move(args));
  }

  const std::string& sha() const { return sha_; }
  bool up() const { return connected_ && !connecting_; }

 private:
  struct Pending {
    explicit Pending(asio::any_io_executor ex) : timer(ex) {}
    asio::steady_timer timer;
    std::optional<Result<Reply>> result;
  };

  asio::awaitable<Result<Reply>> send(std::vector<std::string> args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    char* cmd = nullptr;
    long long len = redisFormatCommandArgv(&cmd, static_cast<int>(argv.size()), argv.data(), lens.data());
    if (len < 0) co_return Error::internal("redis: cannot format a command");
    out_.append(cmd, static_cast<size_t>(len));
    redisFreeCommand(cmd);
    auto p = std::make_shared<Pending>(ex_);
    p->timer.expires_after(o_.timeout);
    pending_.push_back(p);
    if (!writing_) asio::co_spawn(ex_, write_loop(), asio::detached);
    co_await p->timer.async_wait(kTuple);
    if (!p->result) {
      // Timed out: the reply may still come; it will find this entry and be dropped.
      co_return Error::deadline_exceeded("redis did not answer within " + std::to_string(o_.timeout.count()) + " ms");
    }
    co_return std::move(*p->result);
  }

  asio::awaitable<void> write_loop() {
    writing_ = true;
    while (!out_.empty() && connected_) {
      std::string buf = std::move(out_);
      out_.clear();
      auto [ec, n] = co_await asio::async_write(socket_, asio::buffer(buf), kTuple);
      if (ec) {
        fail("redis: write failed: " + ec.message());
        break;
      }
    }
    writing_ = false;
  }

  asio::awaitable<void> read_loop() {
    char buf[16384];
    while (connected_) {
      auto [ec, n] = co_await socket_.async_read_some(asio::buffer(buf), kTuple);
      if (ec) {
        fail("redis: connection lost: " + ec.message());
        co_return;
      }
      if (redisReaderFeed(reader_, buf, n) != REDIS_OK) {
        fail("redis: protocol error");
        co_return;
      }
      while (true) {
        void* raw = nullptr;
        if (redisReaderGetReply(reader_, &raw) != REDIS_OK) {
          fail("redis: protocol error");
          co_return;
        }
        if (!raw) break;
        auto* r = static_cast<redisReply*>(raw);
        Reply reply = convert(r);
        freeReplyObject(r);
        if (pending_.empty()) continue;
        auto p = pending_.front();
        pending_.pop_front();
        if (reply.type == REDIS_REPLY_ERROR) p->result = Result<Reply>(Error::unavailable("redis: " + reply.str));
        else p->result = Result<Reply>(std::move(reply));
        p->timer.cancel();
      }
    }
  }

  void fail(const std::string& why) {
    connected_ = false;
    boost::system::error_code ec;
    socket_.close(ec);
    for (auto& p : pending_) {
      p->result = Result<Reply>(Error::unavailable(why));
      p->timer.cancel();
    }
    pending_.clear();
    out_.clear();
  }

  asio::awaitable<Status> connect() {
    connecting_ = true;
    struct Done {
      bool& flag;
      ~Done() { flag = false; }
    } done{connecting_};
    if (reader_) redisReaderFree(reader_);
    reader_ = redisReaderCreate();
    boost::system::error_code ec;
    socket_.close(ec);
    socket_ = tcp::socket(ex_);
    tcp::resolver resolver(ex_);
    auto [rec, eps] = co_await resolver.async_resolve(o_.host, o_.port, kTuple);
    if (rec) co_return Error::unavailable("redis: cannot resolve " + o_.host + ": " + rec.message());
    asio::steady_timer deadline(ex_, std::max(o_.timeout, std::chrono::milliseconds(1000)));
    deadline.async_wait([this](boost::system::error_code e) {
      if (!e && !connected_) {
        boost::system::error_code ignored;
        socket_.close(ignored);
      }
    });
    auto [cec, ep] = co_await asio::async_connect(socket_, eps, kTuple);
    deadline.cancel();
    if (cec) co_return Error::unavailable("redis: cannot connect to " + o_.host + ":" + o_.port + ": " + cec.message());
    socket_.set_option(tcp::no_delay(true), ec);
    connected_ = true;
    asio::co_spawn(ex_, read_loop(), asio::detached);
    if (!o_.password.empty()) {
      std::vector<std::string> auth{"AUTH", o_.password};
      auto r = co_await send(std::move(auth));
      if (!r) {
        fail("redis: AUTH failed");
        co_return Error::unavailable("redis: AUTH failed");
      }
    }
    if (o_.db != 0) {
      std::vector<std::string> select{"SELECT", std::to_string(o_.db)};
      auto r = co_await send(std::move(select));
      if (!r) co_return r.error();
    }
    std::vector<std::string> load{"SCRIPT", "LOAD", kScript};
    auto loaded = co_await send(std::move(load));
    if (!loaded) {
      fail("redis: SCRIPT LOAD failed");
      co_return loaded.error();
    }
    sha_ = loaded->str;
    co_return Status{};
  }

  asio::any_io_executor ex_;
  RedisOptions o_;
  tcp::socket socket_;
  redisReader* reader_ = nullptr;
  std::deque<std::shared_ptr<Pending>> pending_;
  std::string out_;
  std::string sha_;
  bool connected_ = false, connecting_ = false, writing_ = false;
  std::chrono::steady_clock::time_point failed_at_{};
};

// One decision waiting in a batch; its slice of the batch's reply when done.
struct Queued {
  explicit Queued(asio::any_io_executor ex) : timer(ex) {}
  char mode = 'a';
  bool correction = false;  // merged settles nobody waits for
  std::vector<Ask> asks;
  asio::steady_timer timer;  // cancelled when `result` is set
  std::optional<Result<std::vector<long long>>> result;
};

// The decisions a shard has asked for and not yet sent, per batch group (all, or per hash tag).
struct Batches {
  std::map<std::string, std::vector<std::shared_ptr<Queued>>> open;
  bool flush_posted = false;
};

// Connections and batches live in their executor's context (as an Asio service), so they are
// closed while that context is still alive, whatever the order in which the server and the
// backend go.
class ConnectionService : public asio::detail::execution_context_service_base<ConnectionService> {
 public:
  explicit ConnectionService(asio::execution_context& ctx)
      : asio::detail::execution_context_service_base<ConnectionService>(ctx) {}
  void shutdown() override {
    conns.clear();
    batches.clear();
  }
  std::map<const void*, std::unique_ptr<Connection>> conns;  // per backend
  std::map<const void*, Batches> batches;                    // per backend
};

class RedisBackend final : public Backend {
 public:
  explicit RedisBackend(RedisOptions o) : o_(std::move(o)) {}

  asio::awaitable<Result<Decision>> acquire(asio::any_io_executor ex, std::vector<Ask> asks) override {
    auto r = co_await decide(ex, 'a', std::move(asks));
    if (!r) co_return r.error();
    co_return std::move(*r);
  }

  // Corrections do not wait for Redis: they are merged per key with the others of this replica
  // and ride at the front of the next batch any of its shards sends on a connection that is up
  // (with slot_batches: the next batch of the same hash tag), before that batch's decisions, or
  // go alone after kCorrectionDelay. A failure is counted
  // (agentplane_ratelimit_decisions_total{outcome="settle_failed"}), as a lost correction only
  // keeps what was reserved.
  asio::awaitable<Status> adjust(asio::any_io_executor ex, std::vector<Ask> deltas) override {
    bool arm = false;
    {
      std::lock_guard lock(corr_mu_);
      for (auto& d : deltas) {
        std::string id = d.key;
        if (d.kind == Ask::Kind::kWindow) id += '\x1f' + std::to_string(d.window);
        auto [it, fresh] = corrections_.try_emplace(std::move(id), d);
        if (!fresh) {
          const int64_t sum = it->second.cost + d.cost;
          it->second = std::move(d);
          it->second.cost = sum;
        }
      }
      // A timer that never ran (its context stopped) does not block the next one for long.
      const auto now = std::chrono::steady_clock::now();
      arm = !corrections_.empty() && (!corr_armed_ || now - corr_armed_at_ > 50 * kCorrectionDelay);
      if (arm) {
        corr_armed_ = true;
        corr_armed_at_ = now;
      }
    }
    if (arm) asio::co_spawn(ex, send_corrections_later(ex), asio::detached);
    co_return Status{};
  }

  // The corrections still waiting go now, one batch after another, each awaited.
  asio::awaitable<void> release(asio::any_io_executor ex) override {
    while (true) {
      auto batches = take_corrections(ex, std::string());
      if (batches.empty()) co_return;
      for (auto& q : batches) {
        std::vector<std::shared_ptr<Queued>> one{std::move(q)};
        co_await send_batch(ex, std::move(one));
      }
    }
  }

  std::string name() const override { return "redis"; }

 private:
  // Queues the decision in this shard's open batch (sent at the end of the event loop's turn)
  // and waits for its slice of the reply.
  asio::awaitable<Result<Decision>> decide(asio::any_io_executor ex, char mode, std::vector<Ask> asks) {
    auto q = std::make_shared<Queued>(ex);
    q->mode = mode;
    q->asks = std::move(asks);
    q->timer.expires_after(std::chrono::hours(24));  // the connection's own timeout answers first
    Batches& b = service(ex).batches[this];
    const std::string group = o_.slot_batches && !q->asks.empty() ? hash_tag(q->asks.front().key) : std::string();
    auto& open = b.open[group];
    open.push_back(q);
    if (open.size() >= kMaxBatch) {
      auto full = std::move(open);
      b.open.erase(group);
      asio::co_spawn(ex, send_batch(ex, std::move(full)), asio::detached);
    } else if (!b.flush_posted) {
      b.flush_posted = true;
      asio::post(ex, [this, ex] { flush(ex); });
    }
    co_await q->timer.async_wait(kTuple);
    if (!q->result) co_return Error::unavailable("redis: the decision was dropped");
    if (!*q->result) co_return q->result->error();
    const auto& v = **q->result;
    Decision d;
    d.allowed = v[0] == 1;
    d.retry_after_s = v[1] < 0 ? -1 : static_cast<double>(v[1]) / 1000.0;
    d.denied_index = static_cast<int>(v[2]) - 1;
    for (size_t i = 0; i < q->asks.size(); ++i)
      d.verdicts.push_back({q->asks[i].limit, v[3 + 3 * i], static_cast<double>(v[4 + 3 * i]) / 1000.0,
                            q->asks[i].kind == Ask::Kind::kWindow ? v[5 + 3 * i] : -1});
    co_return d;
  }

  static std::string hash_tag(const std::string& key) {
    auto open = key.find('{');
    auto close = open == std::string::npos ? open : key.find('}', open + 1);
    return close == std::string::npos ? key : key.substr(open, close - open + 1);
  }

  // The merged corrections (of one hash tag when batches keep to one slot, else all) as
  // decisions to put at the front of a batch.
  std::vector<std::shared_ptr<Queued>> take_corrections(asio::any_io_executor ex, const std::string& group) {
    std::vector<std::shared_ptr<Queued>> out;
    std::lock_guard lock(corr_mu_);
    std::map<std::string, std::shared_ptr<Queued>> by_group;
    size_t taken = 0;
    for (auto it = corrections_.begin(); it != corrections_.end() && taken < kMaxCorrectionKeys;) {
      const std::string g = o_.slot_batches ? hash_tag(it->second.key) : std::string();
      if (o_.slot_batches && g != group && !group.empty()) {
        ++it;
        continue;
      }
      auto& q = by_group[g];
      if (!q) {
        q = std::make_shared<Queued>(ex);
        q->mode = 'j';
        q->correction = true;
      }
      if (it->second.cost != 0) q->asks.push_back(std::move(it->second));
      ++taken;
      it = corrections_.erase(it);
    }
    for (auto& [g, q] : by_group)
      if (!q->asks.empty()) out.push_back(std::move(q));
    return out;
  }

  asio::awaitable<void> send_corrections_later(asio::any_io_executor ex) {
    asio::steady_timer t(ex, kCorrectionDelay);
    co_await t.async_wait(kTuple);
    // Whatever no batch took meanwhile: one batch per slot group (take_corrections("") takes
    // from every group), at most kMaxCorrectionKeys keys; more left: another round.
    for (auto& q : take_corrections(ex, std::string()))
      asio::co_spawn(ex, send_batch(ex, {std::move(q)}), asio::detached);
    bool more;
    {
      std::lock_guard lock(corr_mu_);
      more = !corrections_.empty();
      corr_armed_ = more;
      corr_armed_at_ = std::chrono::steady_clock::now();
    }
    if (more) asio::co_spawn(ex, send_corrections_later(ex), asio::detached);
  }

  void flush(asio::any_io_executor ex) {
    Batches& b = service(ex).batches[this];
    b.flush_posted = false;
    auto open = std::move(b.open);
    b.open.clear();
    for (auto& [group, batch] : open)
      if (!batch.empty()) asio::co_spawn(ex, send_batch(ex, std::move(batch)), asio::detached);
  }

  asio::awaitable<void> send_batch(asio::any_io_executor ex, std::vector<std::shared_ptr<Queued>> batch) {
    // Corrections ride along only on a connection that is up (one in its reconnect back-off
    // fails at once and would lose them).
    if (!batch.empty() && !batch.front()->correction && !(o_.slot_batches && batch.front()->asks.empty()) &&
        conn(ex).up()) {
      auto corr = take_corrections(ex, o_.slot_batches ? hash_tag(batch.front()->asks.front().key) : std::string());
      batch.insert(batch.begin(), std::make_move_iterator(corr.begin()), std::make_move_iterator(corr.end()));
    }
    auto finish = [&batch](const Result<std::vector<long long>>& all, const std::vector<size_t>& starts) {
      for (size_t i = 0; i < batch.size(); ++i) {
        if (!all && batch[i]->correction) settle_failed().inc();
        if (!all) {
          batch[i]->result = Result<std::vector<long long>>(all.error());
        } else {
          const size_t from = starts[i], to = i + 1 < batch.size() ? starts[i + 1] : all->size();
          batch[i]->result = std::vector<long long>(all->begin() + static_cast<std::ptrdiff_t>(from),
                                                    all->begin() + static_cast<std::ptrdiff_t>(to));
        }
        batch[i]->timer.cancel();
      }
    };
    std::vector<std::string> args;
    size_t nkeys = 0;
    for (const auto& q : batch) nkeys += q->asks.size();
    args.reserve(4 + nkeys * 6 + batch.size() * 2);
    args.push_back("EVALSHA");
    args.push_back("");  // the sha, once known
    args.push_back(std::to_string(nkeys));
    for (const auto& q : batch)
      for (const auto& a : q->asks) args.push_back(kKeyPrefix + a.key);
    args.push_back(std::to_string(batch.size()));
    char rate[64];
    std::vector<size_t> starts;
    size_t at = 0;
    for (const auto& q : batch) {
      starts.push_back(at);
      at += 3 + 3 * q->asks.size();
      args.push_back(std::string(1, q->mode));
      args.push_back(std::to_string(q->asks.size()));
      for (const auto& a : q->asks) {
        args.push_back(a.kind == Ask::Kind::kBucket ? "b" : a.kind == Ask::Kind::kWindow ? "w" : "c");
        args.push_back(std::to_string(a.limit));
        if (a.kind == Ask::Kind::kWindow && q->mode == 'j') {
          args.push_back(std::to_string(a.window));
        } else {
          std::snprintf(rate, sizeof rate, "%.12g", a.per_second / 1000.0);
          args.push_back(rate);
        }
        args.push_back(std::to_string(a.ttl_s));
        args.push_back(std::to_string(a.cost));
      }
    }
    Connection& c = conn(ex);
    if (c.sha().empty()) {  // connect first (loads the script)
      std::vector<std::string> ping_cmd{"PING"};
      auto ping = co_await c.command(std::move(ping_cmd));
      if (!ping) {
        finish(ping.error(), starts);
        co_return;
      }
    }
    args[1] = c.sha();
    auto r = co_await c.command(args);
    if (!r && r.error().message.find("NOSCRIPT") != std::string::npos) {  // Redis restarted or flushed
      args[0] = "EVAL";
      args[1] = kScript;
      r = co_await c.command(std::move(args));
    }
    if (!r) {
      finish(r.error(), starts);
      co_return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements.size() != at) {
      finish(Error::unavailable("redis: unexpected reply from the limit script"), starts);
      co_return;
    }
    std::vector<long long> all;
    all.reserve(at);
    for (const auto& e : r->elements) all.push_back(e.integer);
    finish(all, starts);
  }

  ConnectionService& service(asio::any_io_executor ex) {
    return asio::use_service<ConnectionService>(asio::query(ex, asio::execution::context));
  }
  // Only ever called on `ex`'s own thread (one thread per server shard).
  Connection& conn(asio::any_io_executor ex) {
    auto& c = service(ex).conns[this];
    if (!c) c = std::make_unique<Connection>(ex, o_);
    return *c;
  }

  RedisOptions o_;
  std::mutex corr_mu_;
  std::unordered_map<std::string, Ask> corrections_;  // by key (and window)
  bool corr_armed_ = false;                           // a send_corrections_later is on its way
  std::chrono::steady_clock::time_point corr_armed_at_{};
};

}  // namespace

Result<RedisOptions> parse_redis_url(std::string_view url) {
  RedisOptions o;
  if (!url.starts_with("redis://")) return Error::invalid_argument("redis URL must start with redis://");
  url.remove_prefix(8);
  if (auto q = url.find('?'); q != std::string_view::npos) {  // options: name=value&...
    std::string_view query = url.substr(q + 1);
    url = url.substr(0, q);
    while (!query.empty()) {
      const size_t amp = query.find('&');
      const std::string_view item = query.substr(0, amp);
      query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
      const size_t eq = item.find('=');
      const std::string_view name = item.substr(0, eq);
      const std::string value(eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1));
      if (name == "slot_batches") {
        if (value != "true" && value != "false")
          return Error::invalid_argument("redis URL: slot_batches must be true or false");
        o.slot_batches = value == "true";
      } else if (name == "leases") {
        if (value != "true" && value != "false") return Error::invalid_argument("redis URL: leases must be true or false");
        o.leases = value == "true";
      } else if (name == "timeout_ms") {
        if (value.empty() || value.size() > 6 || value.find_first_not_of("0123456789") != std::string::npos || std::stoi(value) == 0)
          return Error::invalid_argument("redis URL: timeout_ms must be a whole number of milliseconds, 1 to 999999");
        o.timeout = std::chrono::milliseconds(std::stoi(value));
      } else {
        return Error::invalid_argument("redis URL: unknown option '" + std::string(name) + "' (known: leases, slot_batches, timeout_ms)");
      }
    }
  }
  if (auto at = url.rfind('@'); at != std::string_view::npos) {
    std::string_view cred = url.substr(0, at);
    if (auto colon = cred.find(':'); colon != std::string_view::npos) cred = cred.substr(colon + 1);
    o.password = std::string(cred);
    url.remove_prefix(at + 1);
  }
  if (auto slash = url.find('/'); slash != std::string_view::npos) {
    std::string db(url.substr(slash + 1));
    url = url.substr(0, slash);
    if (!db.empty()) {
      if (db.find_first_not_of("0123456789") != std::string::npos || db.size() > 4)
        return Error::invalid_argument("redis URL: bad database number");
      o.db = std::stoi(db);
    }
  }
  if (auto colon = url.rfind(':'); colon != std::string_view::npos) {
    o.host = std::string(url.substr(0, colon));
    o.port = std::string(url.substr(colon + 1));
  } else if (!url.empty()) {
    o.host = std::string(url);
  }
  if (o.host.empty() || o.port.empty() || o.port.find_first_not_of("0123456789") != std::string::npos)
    return Error::invalid_argument("redis URL: bad host or port");
  return o;
}

std::unique_ptr<Backend> make_redis_backend(RedisOptions options) {
  return std::make_unique<RedisBackend>(std::move(options));
}

}  // namespace ap::ratelimit
