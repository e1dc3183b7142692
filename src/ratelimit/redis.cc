// The Redis backend. Debian's hiredis (0.14) has no Asio adapter, so we use only its protocol
// halves: redisFormatCommandArgv to write commands and a redisReader to parse replies, on our own
// Asio socket. One pipelined connection per executor (server shard): commands from that shard's
// coroutines are written back to back without waiting, replies matched in order. Nothing blocks
// a server thread. A decision is one EVALSHA of the script below: every ask of the decision is
// checked and, only if all pass, taken, atomically (Redis runs a script alone).
#include <hiredis/hiredis.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <deque>
#include <map>
#include <mutex>

#include "common/crypto.h"
#include "ratelimit/limiter.h"

namespace ap::ratelimit {
namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

// ARGV[1]: 'a' (acquire) or 'j' (adjust); then per key: kind ('b' bucket, 'c' counter), limit,
// refill per millisecond, ttl seconds, cost. Returns {allowed, retry_ms (-1: never), denied index,
// then per key remaining and reset_ms}.
constexpr const char* kScript = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local mode = ARGV[1]
local n = #KEYS
local kind, limit, rate, ttl, cost, value = {}, {}, {}, {}, {}, {}
for i = 1, n do
  local b = 1 + (i - 1) * 5
  kind[i] = ARGV[b + 1]
  limit[i] = tonumber(ARGV[b + 2])
  rate[i] = tonumber(ARGV[b + 3])
  ttl[i] = tonumber(ARGV[b + 4])
  cost[i] = tonumber(ARGV[b + 5])
  if kind[i] == 'b' then
    local v = redis.call('HMGET', KEYS[i], 't', 'ts')
    local tokens = tonumber(v[1])
    local ts = tonumber(v[2])
    if tokens == nil then tokens = limit[i]; ts = now end
    value[i] = math.min(limit[i], tokens + math.max(0, now - ts) * rate[i])
  else
    value[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
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
      else
        w = ttl[i] * 1000
      end
      if w < 0 or retry < 0 then retry = -1 elseif w > retry then retry = w end
    end
  end
end
local out = {allowed, math.ceil(retry), denied}
for i = 1, n do
  local take = (mode == 'j' or allowed == 1)
  if kind[i] == 'b' then
    local v = value[i]
    if take then
      v = math.min(limit[i], v - cost[i])
      redis.call('HSET', KEYS[i], 't', tostring(v), 'ts', now)
      local full_ms = 60000
      if rate[i] > 0 then full_ms = math.ceil(limit[i] / rate[i]) + 1000 end
      redis.call('PEXPIRE', KEYS[i], full_ms)
    end
    out[#out + 1] = math.floor(math.max(v, 0))
    if rate[i] > 0 then out[#out + 1] = math.ceil((limit[i] - v) / rate[i]) else out[#out + 1] = 0 end
  else
    local v = value[i]
    if take then
      v = redis.call('INCRBY', KEYS[i], cost[i])
      redis.call('EXPIRE', KEYS[i], ttl[i] + 3600)
    end
    out[#out + 1] = math.max(limit[i] - v, 0)
    out[#out + 1] = ttl[i] * 1000
  end
end
return out
)lua";

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

// Connections live in their executor's context (as an Asio service), so they are closed while
// that context is still alive, whatever the order in which the server and the backend go.
class ConnectionService : public asio::detail::execution_context_service_base<ConnectionService> {
 public:
  explicit ConnectionService(asio::execution_context& ctx)
      : asio::detail::execution_context_service_base<ConnectionService>(ctx) {}
  void shutdown() override { conns.clear(); }
  std::map<const void*, std::unique_ptr<Connection>> conns;  // per backend
};

class RedisBackend final : public Backend {
 public:
  explicit RedisBackend(RedisOptions o) : o_(std::move(o)) {}

  asio::awaitable<Result<Decision>> acquire(asio::any_io_executor ex, std::vector<Ask> asks) override {
    auto r = co_await eval(ex, 'a', asks);
    if (!r) co_return r.error();
    const Reply& rep = *r;
    if (rep.type != REDIS_REPLY_ARRAY || rep.elements.size() != 3 + 2 * asks.size())
      co_return Error::unavailable("redis: unexpected reply from the limit script");
    Decision d;
    d.allowed = rep.elements[0].integer == 1;
    d.retry_after_s = rep.elements[1].integer < 0 ? -1 : static_cast<double>(rep.elements[1].integer) / 1000.0;
    d.denied_index = static_cast<int>(rep.elements[2].integer) - 1;
    for (size_t i = 0; i < asks.size(); ++i)
      d.verdicts.push_back({asks[i].limit, rep.elements[3 + 2 * i].integer,
                            static_cast<double>(rep.elements[4 + 2 * i].integer) / 1000.0});
    co_return d;
  }

  asio::awaitable<Status> adjust(asio::any_io_executor ex, std::vector<Ask> deltas) override {
    auto r = co_await eval(ex, 'j', deltas);
    if (!r) co_return r.error();
    co_return Status{};
  }

  std::string name() const override { return "redis"; }

 private:
  asio::awaitable<Result<Reply>> eval(asio::any_io_executor ex, char mode, const std::vector<Ask>& asks) {
    Connection& c = conn(ex);
    std::vector<std::string> args;
    args.reserve(4 + asks.size() * 6);
    args.push_back("EVALSHA");
    args.push_back("");  // the sha, once known
    args.push_back(std::to_string(asks.size()));
    for (const auto& a : asks) args.push_back(a.key);
    args.push_back(std::string(1, mode));
    char rate[64];
    for (const auto& a : asks) {
      args.push_back(a.kind == Ask::Kind::kBucket ? "b" : "c");
      args.push_back(std::to_string(a.limit));
      std::snprintf(rate, sizeof rate, "%.12g", a.per_second / 1000.0);
      args.push_back(rate);
      args.push_back(std::to_string(a.ttl_s));
      args.push_back(std::to_string(a.cost));
    }
    if (c.sha().empty()) {  // connect first (loads the script)
      std::vector<std::string> ping_cmd{"PING"};
      auto ping = co_await c.command(std::move(ping_cmd));
      if (!ping) co_return ping.error();
    }
    args[1] = c.sha();
    auto r = co_await c.command(args);
    if (!r && r.error().message.find("NOSCRIPT") != std::string::npos) {  // Redis restarted or flushed
      args[0] = "EVAL";
      args[1] = kScript;
      r = co_await c.command(std::move(args));
    }
    co_return r;
  }

  // Only ever called on `ex`'s own thread (one thread per server shard).
  Connection& conn(asio::any_io_executor ex) {
    auto& svc = asio::use_service<ConnectionService>(asio::query(ex, asio::execution::context));
    auto& c = svc.conns[this];
    if (!c) c = std::make_unique<Connection>(ex, o_);
    return *c;
  }

  RedisOptions o_;
};

}  // namespace

Result<RedisOptions> parse_redis_url(std::string_view url) {
  RedisOptions o;
  if (!url.starts_with("redis://")) return Error::invalid_argument("redis URL must start with redis://");
  url.remove_prefix(8);
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
