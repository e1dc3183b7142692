#include "gateway/server.h"

#include "audit/audit_log.h"
#include "common/text.h"
#include "common/thread_name.h"

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <atomic>
#include <future>
#include <thread>
#include <unordered_map>
#include <list>
#include <nlohmann/json.hpp>

#include "auth/authenticator.h"
#include "common/crypto.h"
#include "gateway/errors.h"
#include "gateway/maintenance.h"
#include "llm/models.h"
#include "llm/upstream.h"
#include "net/http_io.h"
#include "ratelimit/limits.h"
#include "telemetry/log.h"
#include "telemetry/metrics.h"

namespace ap::gateway {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr auto kUse = asio::as_tuple(asio::use_awaitable);

// Request ids need to be unique, not secret: a per-thread splitmix64 stream seeded from the
// system's random source costs nanoseconds instead of a DRBG call per request.
uint64_t next_id_word() {
  thread_local uint64_t state = [] {
    uint64_t seed;
    random_bytes(reinterpret_cast<uint8_t*>(&seed), sizeof seed);
    return seed;
  }();
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::string make_request_id(std::string_view given) {
  if (!given.empty() && given.size() <= 128) {
    bool ok = true;
    for (unsigned char c : given)
      ok = ok && (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == ':');
    if (ok) return std::string(given);
  }
  uint64_t w[2] = {next_id_word(), next_id_word()};
  return hex_encode(reinterpret_cast<const uint8_t*>(w), sizeof w);
}

struct SeriesKey {
  const Route* route;
  int status;
  bool operator==(const SeriesKey&) const = default;
};
struct SeriesKeyHash {
  size_t operator()(const SeriesKey& k) const noexcept {
    return std::hash<const void*>()(k.route) * 31 + static_cast<size_t>(k.status);
  }
};

std::string_view credential_of(const Request& req) {
  // x-api-key wins over Authorization when both are sent.
  if (auto k = req.header("x-api-key"); !k.empty()) return k;
  auto a = req.header("authorization");
  if (a.size() > 7 && (a.substr(0, 7) == "Bearer " || a.substr(0, 7) == "bearer ")) {
    auto t = a.substr(7);
    while (!t.empty() && t.front() == ' ') t.remove_prefix(1);
    return t;
  }
  return {};
}

}  // namespace

Result<HostPort> parse_listen_address(std::string_view text) {
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon + 1 >= text.size())
    return Error::invalid_argument("listen address must be host:port, got '" +
                                   std::string(text.substr(0, 100)) + "'");
  std::string host(text.substr(0, colon));
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host == "localhost") host = "127.0.0.1";
  int port = 0;
  for (char c : text.substr(colon + 1)) {
    if (c < '0' || c > '9' || port > 65535) return Error::invalid_argument("bad port in '" + std::string(text) + "'");
    port = port * 10 + (c - '0');
  }
  if (port > 65535) return Error::invalid_argument("bad port in '" + std::string(text) + "'");
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  if (ec) return Error::invalid_argument("bad host in listen address '" + std::string(text) + "'");
  return HostPort{host, static_cast<uint16_t>(port)};
}

// One connection's state, owned by its shard.
struct Conn {
  tcp::socket* sock;
  std::chrono::steady_clock::time_point deadline;
  bool idle = false;  // waiting for the next request: closed at once on shutdown
  void expire_after(std::chrono::seconds d) { deadline = std::chrono::steady_clock::now() + d; }
};

template <class Stream>
constexpr bool kPlain = std::is_same_v<Stream, tcp::socket>;  // (TLS streams are written asynchronously)

// Writes `buffers`: at once what a plain socket takes, the rest asynchronously under the body
// timeout.
template <class Stream, class Buffers>
asio::awaitable<beast::error_code> write_buffers(Stream& stream, Conn& conn, std::chrono::seconds timeout,
                                                 const Buffers& buffers) {
  beast::buffers_suffix<Buffers> rest(buffers);
  beast::error_code ec;
  if constexpr (kPlain<Stream>) {
    rest.consume(asio::write(stream, rest, ec));
    if (ec == asio::error::would_block) ec = {};
    if (ec || beast::buffer_bytes(rest) == 0) co_return ec;
  }
  conn.expire_after(timeout);
  auto [wec, n] = co_await asio::async_write(stream, rest, kUse);
  conn.deadline = std::chrono::steady_clock::time_point::max();
  co_return wec;
}

struct Shard {
  // The pool outlives the io_context: destroying the io_context destroys suspended coroutines,
  // whose leases then return their connections to the (closed) pool.
  std::unique_ptr<store::Pool> pool;
  asio::io_context ioc{1};
  std::unique_ptr<llm::UpstreamClient> http;  // outbound (model gateway); before ioc in destruction
  std::thread thread;
  size_t sessions = 0;
  bool stopping = false;
  // Every open connection with its read/write deadline. Deadlines are plain time stamps that a
  // sweeper checks twice a second: far cheaper than arming a timer for every read and write.
  std::list<Conn> conns;
  std::unique_ptr<asio::steady_timer> sweeper;
  Upkeep upkeep;
  // Key id -> the minute its last authentication success was audited (one event per minute).
  std::unordered_map<std::string, int64_t> auth_audited;  // users, by actor
  std::unordered_map<KeyId, int64_t, UuidHash> key_audited;  // API keys (no actor string per request)
  // Series per (route, method, status): looked up without locks on this shard's thread.
  std::unordered_map<SeriesKey, std::pair<telemetry::Counter*, telemetry::Histogram*>,
                     SeriesKeyHash>
      series;
};

struct Server::Impl {
  ServerOptions options;
  std::shared_ptr<const Router> router;
  auth::Authenticator& authn;
  ServerInfo info;
  Services services;
  std::vector<std::unique_ptr<Shard>> shards;
  std::unique_ptr<tcp::acceptor> acceptor, metrics_acceptor;
  std::unique_ptr<asio::ssl::context> tls;
  std::atomic<size_t> next_shard{0};
  std::atomic<bool> stopped{false};
  uint16_t port = 0, metrics_port = 0;

  Impl(ServerOptions o, std::shared_ptr<const Router> r, auth::Authenticator& a, ServerInfo i, Services sv)
      : options(std::move(o)), router(std::move(r)), authn(a), info(std::move(i)), services(sv) {}

  Result<std::unique_ptr<tcp::acceptor>> bind(asio::io_context& ioc, const std::string& addr);
  // Authentication in the audit log: every failure (in the platform's chain, as the tenant is
  // not known), and a key's successes once a minute (in its tenant's chain).
  void audit_authentication(Shard& shard, const RequestContext& ctx, bool ok, const std::string& reason);
  asio::awaitable<void> accept_loop(tcp::acceptor& acc, bool metrics_only);
  template <class Stream>
  asio::awaitable<void> session(Shard& shard, Stream& stream, Conn& conn, bool metrics_only);
  asio::awaitable<void> sweep(Shard& shard);
  template <class Stream>
  asio::awaitable<bool> stream_response(Stream& stream, Conn& conn, Response& resp, const std::string& request_id,
                                        bool keep_alive);
  asio::awaitable<Response> dispatch(Shard& shard, Request& req, const std::string& request_id,
                                     const Route*& route, TenantId& tenant, bool metrics_only);
  void record(Shard& shard, const Request& req, const Route* route, int status,
              const std::string& request_id, const TenantId& tenant, double seconds);
};

Result<std::unique_ptr<tcp::acceptor>> Server::Impl::bind(asio::io_context& ioc,
                                                           const std::string& addr) {
  AP_ASSIGN_OR_RETURN(auto hp, parse_listen_address(addr));
  tcp::endpoint ep(asio::ip::make_address(hp.host), hp.port);
  auto acc = std::make_unique<tcp::acceptor>(ioc);
  boost::system::error_code ec;
  acc->open(ep.protocol(), ec);
  if (!ec) acc->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acc->bind(ep, ec);
  if (!ec) acc->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Error::unavailable("cannot listen on " + addr + ": " + ec.message());
  return acc;
}

asio::awaitable<void> Server::Impl::accept_loop(tcp::acceptor& acc, bool metrics_only) {
  for (;;) {
    auto [ec, sock] = co_await acc.async_accept(kUse);
    if (ec == asio::error::operation_aborted || !acc.is_open()) co_return;
    if (ec) continue;  // e.g. EMFILE: keep serving the connections we have
    sock.set_option(tcp::no_delay(true), ec);
    Shard& shard = *shards[next_shard++ % shards.size()];
    auto protocol = sock.local_endpoint(ec).protocol();
    int fd = sock.release(ec);
    if (ec) continue;
    asio::post(shard.ioc, [this, &shard, fd, protocol, metrics_only] {
      tcp::socket s(shard.ioc);
      boost::system::error_code aec;
      s.assign(protocol, fd, aec);
      if (!aec) s.non_blocking(true, aec);  // writes go out at once where the socket takes them (net/http_io.h)
      if (aec) {
        ::close(fd);
        return;
      }
      if (shard.stopping) return;
      ++shard.sessions;
      asio::co_spawn(
          shard.ioc,
          [this, &shard, s = std::move(s), metrics_only]() mutable -> asio::awaitable<void> {
            shard.conns.push_front(Conn{&s, {}, false});
            // Whatever happens below, the connection leaves the sweeper's list and the count.
            struct Cleanup {
              Shard& shard;
              std::list<Conn>::iterator it;
              tcp::socket& sock;
              ~Cleanup() {
                boost::system::error_code ec;
                sock.shutdown(tcp::socket::shutdown_both, ec);
                sock.close(ec);
                shard.conns.erase(it);
                --shard.sessions;
              }
            } cleanup{shard, shard.conns.begin(), s};
            try {
              if (tls && !metrics_only) {
                asio::ssl::stream<tcp::socket&> stream(s, *tls);
                cleanup.it->expire_after(options.header_timeout);
                auto [hec] = co_await stream.async_handshake(asio::ssl::stream_base::server, kUse);
                if (!hec) co_await session(shard, stream, *cleanup.it, false);
              } else {
                co_await session(shard, s, *cleanup.it, metrics_only);
              }
            } catch (const std::exception& e) {
              telemetry::log_error("connection_failed", {{"error", e.what()}});
            }
          },
          asio::detached);
    });
  }
}

asio::awaitable<void> Server::Impl::sweep(Shard& shard) {
  for (;;) {
    shard.sweeper->expires_after(std::chrono::milliseconds(500));
    auto [ec] = co_await shard.sweeper->async_wait(kUse);
    if (ec) co_return;
    auto now = std::chrono::steady_clock::now();
    for (auto& c : shard.conns) {
      if (c.deadline < now) {
        boost::system::error_code cec;
        c.sock->cancel(cec);
      }
    }
    run_upkeep(*shard.pool, services, &shard == shards[0].get(), shard.upkeep);
  }
}

template <class Stream>
asio::awaitable<void> Server::Impl::session(Shard& shard, Stream& stream, Conn& conn,
                                            bool metrics_only) {
  beast::flat_buffer buffer;
  buffer.reserve(4096);  // a usual request in one read (Beast starts at 512 bytes)
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<uint32_t>(options.header_limit));
    parser.body_limit(options.body_limit);
    conn.idle = buffer.size() == 0;
    if (conn.idle) {
      // Between requests: read the first bytes under the idle deadline; the headers then have
      // the (shorter) header deadline, so they cannot trickle in for the idle time. (A read, not
      // a wait for readability: a request already there costs one recv and no epoll_ctl.)
      if (shard.stopping) break;
      conn.expire_after(options.idle_timeout);
      auto [wec, wn] = co_await stream.async_read_some(buffer.prepare(std::max<size_t>(buffer.capacity(), 512)), kUse);
      buffer.commit(wn);
      conn.idle = false;
      if (wec) break;
    }
    conn.expire_after(options.header_timeout);
    // The header as far as it is here already (usually whole, from the read above): parsed at
    // once; only a header still arriving is waited for.
    beast::error_code hec = net::parse_buffered(parser, buffer, /*header_only=*/true);
    if (!hec && !parser.is_header_done()) {
      auto [ec, hn] = co_await http::async_read_header(stream, buffer, parser, kUse);
      hec = ec;
    }
    conn.idle = false;
    if (hec) {
      // A request that cannot be read ends its connection with one last answer.
      std::optional<Response> last;
      if (hec == http::error::body_limit) {
        // The declared content-length is over the cap: refused from the headers alone.
        last = error_response(Error::payload_too_large("request body exceeds " + std::to_string(options.body_limit) + " bytes"));
      } else if (hec == http::error::header_limit) {
        last = Response::json(431, R"({"detail":"request headers exceed the limit"})");
      } else if (hec != http::error::end_of_stream && hec != beast::error::timeout &&
                 hec != asio::error::operation_aborted && hec != asio::error::connection_reset &&
                 hec != asio::error::eof && hec != asio::error::bad_descriptor) {
        last = Response::json(400, R"({"detail":"malformed HTTP request"})");
      }
      if (last) {
        http::response<http::string_body> res{static_cast<http::status>(last->status), 11};
        res.set(http::field::date, http_date_now());
        res.set(http::field::content_type, "application/json");
        res.set(http::field::connection, "close");
        res.body() = std::move(last->body);
        res.prepare_payload();
        co_await http::async_write(stream, res, kUse);
      }
      break;
    }
    auto start = std::chrono::steady_clock::now();
    auto& hdr = parser.get();
    std::string request_id = make_request_id(hdr["x-request-id"]);
    Response resp;
    const Route* route = nullptr;
    TenantId tenant;  // nil: none (the admin, anonymous)
    bool keep_alive = hdr.keep_alive();
    Request req;
    req.method = std::string(hdr.method_string());
    req.target = std::string(hdr.target());
    // Refuse an oversized declared body from the headers alone, without reading it.
    if (parser.content_length() && *parser.content_length() > options.body_limit) {
      resp = error_response(Error::payload_too_large(
          "request body exceeds " + std::to_string(options.body_limit) + " bytes"));
      keep_alive = false;
    } else {
      bool body_ok = true;
      if (!parser.is_done()) {
        beast::error_code bec = net::parse_buffered(parser, buffer, /*header_only=*/false);
        if (!bec && !parser.is_done()) {
          if (beast::iequals(hdr[http::field::expect], "100-continue")) {
            http::response<http::empty_body> cont{http::status::continue_, 11};
            co_await http::async_write(stream, cont, kUse);
          }
          conn.expire_after(options.body_timeout);
          auto [ec, bn] = co_await http::async_read(stream, buffer, parser, kUse);
          bec = ec;
        }
        if (bec == http::error::body_limit) {
          resp = error_response(Error::payload_too_large(
              "request body exceeds " + std::to_string(options.body_limit) + " bytes"));
          keep_alive = false;
          body_ok = false;
        } else if (bec) {
          break;
        }
      }
      if (body_ok) {
        auto msg = parser.release();
        req.body = std::move(msg.body());
        req.headers.reserve(16);
        for (const auto& f : msg) {
          req.headers.push_back({ascii_lower(f.name_string()), std::string(f.value())});
        }
        resp = co_await dispatch(shard, req, request_id, route, tenant, metrics_only);
      }
    }
    if (shard.stopping) keep_alive = false;
    if (resp.stream) {
      bool sent = co_await stream_response(stream, conn, resp, request_id, keep_alive);
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      record(shard, req, route, resp.status, request_id, tenant, secs);
      if (!sent || !keep_alive) break;
      continue;
    }
    http::response<http::string_body> res{static_cast<http::status>(resp.status), 11};
    res.set(http::field::date, http_date_now());
    res.set(http::field::content_type, resp.content_type);
    res.set("x-request-id", request_id);
    for (const auto& h : resp.headers) res.set(h.name, h.value);
    res.body() = std::move(resp.body);
    res.keep_alive(keep_alive);
    res.prepare_payload();
    conn.expire_after(options.body_timeout);
    http::response_serializer<http::string_body> sr{res};
    beast::error_code wec;
    if constexpr (kPlain<Stream>) wec = net::write_now(stream, sr);
    if (!wec && !sr.is_done()) {
      auto [ec, wn] = co_await http::async_write(stream, sr, kUse);
      wec = ec;
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    record(shard, req, route, resp.status, request_id, tenant, secs);
    if (wec) break;
    if (!keep_alive) {
      // Closing with unread request bytes would make the kernel send a reset that can destroy
      // the response in flight (a 413 most of all): stop sending, drain briefly, then close.
      boost::system::error_code ec;
      conn.sock->shutdown(tcp::socket::shutdown_send, ec);
      conn.expire_after(std::chrono::seconds(1));
      size_t drained = 0;
      char sink[16384];
      while (drained < (1u << 20)) {
        auto [rec, rn] = co_await conn.sock->async_read_some(asio::buffer(sink), kUse);
        if (rec) break;
        drained += rn;
      }
      break;
    }
  }
}

// A message's head as Beast serialises it, in one string (to go out in one write with the body's
// first piece).
template <class Body>
std::string serialized_head(http::response<Body>& m) {
  http::response_serializer<Body> sr{m};
  sr.split(true);
  std::string out;
  beast::error_code ec;
  while (!ec && !sr.is_header_done()) {
    sr.next(ec, [&](beast::error_code&, const auto& buffers) {
      const size_t n = beast::buffer_bytes(buffers);
      const size_t at = out.size();
      out.resize(at + n);
      asio::buffer_copy(asio::buffer(out.data() + at, n), buffers);
      sr.consume(n);
    });
  }
  return out;
}

// A streamed body: chunked transfer, each write one chunk (with the head when it still waits,
// with the last chunk on finish); no deadline while waiting for the next chunk, the body
// timeout for each write.
template <class Stream>
class ChunkWriter : public BodyWriter {
 public:
  ChunkWriter(Stream& s, Conn& c, std::chrono::seconds timeout, std::string head)
      : stream_(s), conn_(c), timeout_(timeout), head_(std::move(head)) {}
  asio::awaitable<bool> write(std::string chunk) override {
    if (failed_ || finished_) co_return false;
    if (chunk.empty()) co_return true;
    co_return co_await send(beast::buffers_cat(asio::buffer(head_), http::make_chunk(asio::buffer(chunk))));
  }
  asio::awaitable<bool> finish(std::string chunk) override {
    if (failed_ || finished_) co_return false;
    finished_ = true;
    if (chunk.empty()) co_return co_await send(beast::buffers_cat(asio::buffer(head_), http::make_chunk_last()));
    co_return co_await send(
        beast::buffers_cat(asio::buffer(head_), http::make_chunk(asio::buffer(chunk)), http::make_chunk_last()));
  }
  asio::awaitable<bool> flush() override {
    if (failed_ || head_.empty()) co_return !failed_;
    co_return co_await send(asio::buffer(head_));
  }
  bool failed() const { return failed_; }
  bool finished() const { return finished_; }

 private:
  template <class Buffers>
  asio::awaitable<bool> send(const Buffers& buffers) {
    failed_ = static_cast<bool>(co_await write_buffers(stream_, conn_, timeout_, buffers));
    head_.clear();
    co_return !failed_;
  }
  Stream& stream_;
  Conn& conn_;
  std::chrono::seconds timeout_;
  std::string head_;  // not yet written
  bool failed_ = false, finished_ = false;
};

template <class Stream>
asio::awaitable<bool> Server::Impl::stream_response(Stream& stream, Conn& conn, Response& resp,
                                                    const std::string& request_id, bool keep_alive) {
  http::response<http::empty_body> res{static_cast<http::status>(resp.status), 11};
  res.set(http::field::date, http_date_now());
  res.set(http::field::content_type, resp.content_type);
  res.set(http::field::cache_control, "no-store");
  res.set("x-request-id", request_id);
  for (const auto& h : resp.headers) res.set(h.name, h.value);
  res.keep_alive(keep_alive);
  res.chunked(true);
  ChunkWriter<Stream> writer(stream, conn, options.body_timeout, serialized_head(res));
  if (!resp.head_with_body) co_await writer.flush();
  // The body's writer runs even when the head could not be written: its first write says the
  // client is gone, and it does what it does on a disconnect (cancels a run that was to be
  // cancelled then, lets go of its subscription, records a model call as disconnected).
  co_await resp.stream(writer);
  if (!writer.finished()) co_await writer.finish("");
  co_return !writer.failed();
}

asio::awaitable<Response> Server::Impl::dispatch(Shard& shard, Request& req,
                                                 const std::string& request_id,
                                                 const Route*& route, TenantId& tenant,
                                                 bool metrics_only) {
  auto m = router->match(req.method, req.path());
  if (metrics_only && (!m.route || m.route->pattern != "/metrics"))
    co_return error_response(Error::not_found("this listener serves /metrics only"));
  if (!m.route) {
    if (m.method_mismatch) {
      auto r = error_response(Error{Code::kInvalidArgument,
                                    "method " + req.method + " not allowed; allowed: " + m.allow});
      r.status = 405;
      r.headers.push_back({"allow", m.allow});
      co_return r;
    }
    co_return error_response(Error::not_found("no route for " + req.method + " " +
                                              std::string(req.path().substr(0, 200))));
  }
  route = m.route;
  if (route->pattern == "/metrics" && !options.metrics_listen.empty() && !metrics_only)
    co_return error_response(Error::not_found("metrics are served on the metrics listener"));
  RequestContext ctx{req, std::move(m.params), {}, request_id, *shard.pool, authn, info, services, shard.http.get(),
                     &shard.upkeep.costs};
  if (route->auth != AuthMode::kNone) {
    auto p = co_await authn.authenticate(*shard.pool, credential_of(req));
    if (!p) {
      audit_authentication(shard, ctx, false, p.error().message);
      co_return error_response(p.error());
    }
    ctx.principal = *p;
    audit_authentication(shard, ctx, true, "");
    if (!p->is_admin()) tenant = p->tenant;
    if (route->auth == AuthMode::kAdmin && !p->is_admin())
      co_return error_response(Error::permission_denied("this endpoint needs the admin token"));
    if (route->auth == AuthMode::kTenant && p->is_admin())
      co_return error_response(Error::permission_denied("this endpoint needs a tenant API key"));
    if (route->auth == AuthMode::kTenant && route->scope && !p->has(static_cast<auth::Scope>(route->scope)))
      co_return error_response(Error::permission_denied(
          "this key lacks the '" +
          std::string(auth::scope_name(static_cast<auth::Scope>(route->scope))) + "' scope"));
  }
  std::vector<Header> limit_headers;
  if (route->auth == AuthMode::kTenant && services.models && services.models->limits && !route->health &&
      !route->admits_itself) {
    auto a = co_await services.models->limits->admit_request(*shard.pool, ctx.tenant());
    if (a) {
      for (auto& [k, v] : a->headers) limit_headers.push_back({std::move(k), std::move(v)});
      if (!a->allowed) {
        auto r = error_response(Error::resource_exhausted(a->message));
        r.headers.insert(r.headers.end(), limit_headers.begin(), limit_headers.end());
        co_return r;
      }
    }
  }
  Result<Response> r = Error::internal("handler did not run");
  try {
    r = co_await route->handler(ctx);
  } catch (const nlohmann::json::type_error& e) {
    // A request field of the wrong type that a handler read without checking: the client's error.
    r = Error::invalid_argument(std::string("a field of the request has the wrong type (") + e.what() + ")");
  } catch (const std::exception& e) {
    r = Error::internal(e.what());
  }
  if (!r) {
    if (r.error().code == Code::kInternal || r.error().code == Code::kUnavailable)
      telemetry::log_error("request_failed", {{"request_id", request_id},
                                              {"route", route->pattern},
                                              {"error", r.error().to_string()}});
    auto e = error_response(r.error());
    e.headers.insert(e.headers.end(), limit_headers.begin(), limit_headers.end());
    co_return e;
  }
  for (auto& h : limit_headers) {
    bool present = false;
    for (const auto& have : r->headers) present = present || have.name == h.name;
    if (!present) r->headers.push_back(std::move(h));
  }
  co_return std::move(*r);
}

void Server::Impl::audit_authentication(Shard& shard, const RequestContext& ctx, bool ok,
                                       const std::string& reason) {
  if (!services.audit) return;
  if (ok) {
    if (ctx.principal.is_admin()) return;
    int64_t minute = std::chrono::duration_cast<std::chrono::minutes>(
                         std::chrono::system_clock::now().time_since_epoch()).count();
    if (shard.auth_audited.size() > 100000) shard.auth_audited.clear();
    if (shard.key_audited.size() > 100000) shard.key_audited.clear();
    auto& last = ctx.principal.kind == auth::Principal::Kind::kTenantUser ? shard.auth_audited[ctx.principal.actor()]
                                                                          : shard.key_audited[ctx.principal.key];
    if (last == minute) return;
    last = minute;
    services.audit->record({ctx.principal.tenant, ctx.principal.actor(), ctx.request_id, shard.pool.get()},
                           {"auth.success", audit::Level::kReplay,
                            nlohmann::json{{"actor", ctx.principal.actor()}, {"window", "minute"}}});
    return;
  }
  std::string_view auth = ctx.request.header("authorization");
  std::string method = auth.empty() ? "none" : auth.rfind("Bearer ap_", 0) == 0 ? "api_key"
                                              : auth.rfind("Bearer apadm_", 0) == 0 ? "admin_token"
                                                                                     : "bearer";
  services.audit->record({TenantId(), "anonymous", ctx.request_id, shard.pool.get()},
                         {"auth.failure", audit::Level::kReplay,
                          nlohmann::json{{"reason", reason}, {"credential", method},
                                         {"route", ctx.request.method + " " + std::string(ctx.request.path())}}});
}

void Server::Impl::record(Shard& shard, const Request& req, const Route* route, int status,
                          const std::string& request_id, const TenantId& tenant,
                          double seconds) {
  std::string_view pattern = route ? std::string_view(route->pattern) : "unmatched";
  SeriesKey key{route, status};
  auto it = shard.series.find(key);
  if (it == shard.series.end()) {
    auto& reg = telemetry::metrics();
    std::string method = route ? req.method : "other";
    std::string cls = std::to_string(status / 100) + "xx";
    auto* c = &reg.counter("agentplane_http_requests_total", "HTTP requests by route, method "
                           "and status.", {"route", "method", "status"})
                   .with({std::string(pattern), method, std::to_string(status)});
    auto* h = &reg.histogram("agentplane_http_request_duration_seconds",
                             "HTTP request latency by route, method and status class.",
                             {"route", "method", "status_class"})
                   .with({std::string(pattern), method, cls});
    it = shard.series.emplace(key, std::make_pair(c, h)).first;
  }
  it->second.first->inc();
  it->second.second->observe(seconds);
  if (route && route->health && !telemetry::log_options().access_log_health) return;
  if (!telemetry::log_enabled(telemetry::Level::kInfo)) return;
  // Never log a key or token: only ids, the route template and the outcome.
  telemetry::log_info("request", {{"request_id", request_id},
                                  {"tenant", tenant.is_nil() ? std::string() : tenant.to_string()},
                                  {"method", req.method},
                                  {"route", pattern},
                                  {"status", status},
                                  {"latency_ms", seconds * 1000.0}});
}

Server::Server(ServerOptions options, std::shared_ptr<const Router> router,
               auth::Authenticator& authn, ServerInfo info, Services services)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(router), authn, std::move(info), services)) {}

Server::~Server() { stop(); }

Status Server::start() {
  auto& o = impl_->options;
  int n = o.threads > 0 ? o.threads : std::max(1u, std::thread::hardware_concurrency());
  if (!o.tls_cert.empty() || !o.tls_key.empty()) {
    if (o.tls_cert.empty() || o.tls_key.empty())
      return Error::invalid_argument("TLS needs both --tls-cert and --tls-key");
    auto ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
    ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                     asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                     asio::ssl::context::no_tlsv1_1);
    boost::system::error_code ec;
    ctx->use_certificate_chain_file(o.tls_cert, ec);
    if (ec) return Error::invalid_argument("cannot read TLS certificate " + o.tls_cert + ": " + ec.message());
    ctx->use_private_key_file(o.tls_key, asio::ssl::context::pem, ec);
    if (ec) return Error::invalid_argument("cannot read TLS key " + o.tls_key + ": " + ec.message());
    impl_->tls = std::move(ctx);
  }
  for (int i = 0; i < n; ++i) {
    auto shard = std::make_unique<Shard>();
    shard->pool = std::make_unique<store::Pool>(shard->ioc.get_executor(), o.pool);
    if (impl_->services.models) {
      llm::UpstreamOptions co;
      co.egress = &impl_->services.models->egress;
      shard->http = std::make_unique<llm::UpstreamClient>(shard->ioc.get_executor(), co);
    }
    impl_->shards.push_back(std::move(shard));
  }
  auto& first = impl_->shards[0]->ioc;
  AP_ASSIGN_OR_RETURN(impl_->acceptor, impl_->bind(first, o.listen));
  impl_->port = impl_->acceptor->local_endpoint().port();
  if (!o.metrics_listen.empty()) {
    AP_ASSIGN_OR_RETURN(impl_->metrics_acceptor, impl_->bind(first, o.metrics_listen));
    impl_->metrics_port = impl_->metrics_acceptor->local_endpoint().port();
    asio::co_spawn(first, impl_->accept_loop(*impl_->metrics_acceptor, true), asio::detached);
  }
  asio::co_spawn(first, impl_->accept_loop(*impl_->acceptor, false), asio::detached);
  impl_->authn.start(first.get_executor(), *impl_->shards[0]->pool);
  for (size_t n = 0; n < impl_->shards.size(); ++n) {
    Shard* sp = impl_->shards[n].get();
    sp->sweeper = std::make_unique<asio::steady_timer>(sp->ioc);
    sp->upkeep.purge_interval = o.purge_interval;
    sp->upkeep.usage_retention = std::chrono::days(o.usage_retention_days);
    asio::co_spawn(sp->ioc, impl_->sweep(*sp), asio::detached);
    sp->thread = std::thread([sp, n] {
      set_thread_name("ap-io-" + std::to_string(n));
      auto guard = asio::make_work_guard(sp->ioc);
      // The guard keeps run() alive until stop() posts its release.
      sp->ioc.run();
    });
  }
  return ok_status();
}

uint16_t Server::port() const { return impl_->port; }
uint16_t Server::metrics_port() const { return impl_->metrics_port; }

void Server::stop() {
  if (!impl_ || impl_->shards.empty() || impl_->stopped.exchange(true)) return;
  auto& first = impl_->shards[0]->ioc;
  asio::post(first, [this] {
    boost::system::error_code ec;
    if (impl_->acceptor) impl_->acceptor->close(ec);
    if (impl_->metrics_acceptor) impl_->metrics_acceptor->close(ec);
  });
  for (auto& s : impl_->shards) {
    Shard* sp = s.get();
    asio::post(sp->ioc, [sp] {
      sp->stopping = true;
      if (sp->sweeper) sp->sweeper->cancel();
      for (auto& c : sp->conns) {
        boost::system::error_code ec;
        if (c.idle) c.sock->cancel(ec);
      }
    });
  }
  // In-flight requests finish within the grace period; their connections then close.
  auto deadline = std::chrono::steady_clock::now() + impl_->options.shutdown_grace;
  for (auto& s : impl_->shards) {
    Shard* sp = s.get();
    for (;;) {
      std::promise<size_t> p;
      auto f = p.get_future();
      asio::post(sp->ioc, [sp, &p] { p.set_value(sp->sessions); });
      if (f.wait_for(std::chrono::seconds(1)) != std::future_status::ready) break;
      if (f.get() == 0 || std::chrono::steady_clock::now() > deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  impl_->authn.stop();
  // Audit events still gathering go out now.
  std::vector<store::Pool*> pools;
  for (auto& s : impl_->shards) pools.push_back(s->pool.get());
  if (impl_->services.audit) impl_->services.audit->drain(pools, std::chrono::seconds(2));
  // Give the last-used flush a moment, then stop every shard.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  for (auto& s : impl_->shards) s->ioc.stop();
  for (auto& s : impl_->shards)
    if (s->thread.joinable()) s->thread.join();
  impl_->authn.detach();
  if (impl_->services.audit) impl_->services.audit->forget(pools);
  for (auto& s : impl_->shards) s->pool->close();
  impl_->acceptor.reset();
  impl_->metrics_acceptor.reset();
  impl_->shards.clear();
}

}  // namespace ap::gateway
