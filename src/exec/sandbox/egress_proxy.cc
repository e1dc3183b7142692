#include "exec/sandbox/egress_proxy.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <charconv>
#include <list>
#include <mutex>
#include <sstream>
#include <thread>

#include "common/thread_name.h"
#include "common/thread_priority.h"

namespace ap::sandbox {
namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using stream = asio::generic::stream_protocol;  // the listener: TCP (native) or a unix socket (gvisor)
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr size_t kMaxRecords = 256;
constexpr int kMaxConnections = 64;  // at once, per sandbox
constexpr auto kHeadTimeout = std::chrono::seconds(10);
constexpr auto kConnectTimeout = std::chrono::seconds(10);
constexpr auto kResolveTimeout = std::chrono::seconds(10);

// Names are resolved on an io_context of the egress proxies' own: Asio resolves each context's
// names on one internal thread with a blocking getaddrinfo, and a sandbox asking for names whose
// DNS never answers must not hold up the platform's own lookups (model calls, Redis).
asio::io_context& resolver_context() {
  static asio::io_context* ctx = [] {
    auto* c = new asio::io_context(1);
    std::thread([c] {
      set_thread_name("ap-egress-dns");
      set_thread_nice(process_nice());  // not the raised priority of the worker's thread that starts it
      auto guard = asio::make_work_guard(*c);
      c->run();
    }).detach();
    return c;
  }();
  return *ctx;
}

struct Target {
  std::string host;
  int port = 0;
  std::string path;  // plain HTTP: origin-form
};

// "host:port", "[v6]:port" (CONNECT) or "http://host[:port]/path" (plain HTTP).
Result<Target> parse_target(bool connect, std::string_view t) {
  Target out;
  if (!connect) {
    if (!t.starts_with("http://")) return Error::invalid_argument("plain requests need an absolute http:// URL (use CONNECT for TLS)");
    t.remove_prefix(7);
    const auto slash = t.find('/');
    out.path = slash == std::string_view::npos ? "/" : std::string(t.substr(slash));
    t = t.substr(0, slash);
    if (auto at = t.rfind('@'); at != std::string_view::npos) t.remove_prefix(at + 1);  // no credentials forwarded
  }
  std::string_view host = t, port;
  if (t.starts_with('[')) {
    const auto close = t.find(']');
    if (close == std::string_view::npos) return Error::invalid_argument("bad IPv6 literal");
    host = t.substr(1, close - 1);
    if (close + 1 < t.size()) {
      if (t[close + 1] != ':') return Error::invalid_argument("bad authority");
      port = t.substr(close + 2);
    }
  } else if (auto colon = t.rfind(':'); colon != std::string_view::npos) {
    host = t.substr(0, colon);
    port = t.substr(colon + 1);
  }
  if (host.empty() || host.size() > 253) return Error::invalid_argument("no host");
  for (char c : host)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':' || c == '_'))
      return Error::invalid_argument("bad host name");
  out.host = std::string(host);
  if (port.empty()) {
    if (connect) return Error::invalid_argument("CONNECT needs host:port");
    out.port = 80;
  } else {
    auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), out.port);
    if (ec != std::errc() || p != port.data() + port.size() || out.port <= 0 || out.port > 65535)
      return Error::invalid_argument("bad port");
  }
  return out;
}

class Proxy final : public EgressProxy, public std::enable_shared_from_this<Proxy> {
 public:
  Proxy(asio::any_io_executor ex, int fd, EgressCheck check) : ex_(ex), acceptor_(ex), check_(std::move(check)) {
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    boost::system::error_code ec;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      ::close(fd);
      return;
    }
    acceptor_.assign(stream(a.ss_family, SOCK_STREAM), fd, ec);
    if (ec) ::close(fd);
  }

  void begin() { asio::co_spawn(ex_, accept_loop(shared_from_this()), asio::detached); }

  void stop(RunResult& into) override {
    boost::system::error_code ec;
    acceptor_.close(ec);
    std::lock_guard lock(mu_);
    stopped_ = true;
    for (auto* close : sockets_) (*close)();
    into.egress.assign(records_.begin(), records_.end());
    into.egress_dropped = dropped_;
  }

 private:
  static asio::awaitable<void> accept_loop(std::shared_ptr<Proxy> self) {
    for (;;) {
      auto [ec, sock] = co_await self->acceptor_.async_accept(kTuple);
      if (ec) {
        if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor || !self->acceptor_.is_open()) co_return;
        // e.g. EMFILE: the listener stays readable; wait a little rather than spin.
        asio::steady_timer pause(self->ex_, std::chrono::milliseconds(100));
        co_await pause.async_wait(kTuple);
        continue;
      }
      if (self->live_ >= kMaxConnections) {
        co_await reply(sock, "503 Service Unavailable", "too many connections at once (" + std::to_string(kMaxConnections) + ")");
        continue;
      }
      asio::co_spawn(self->ex_, serve(self, std::move(sock)), asio::detached);
    }
  }

  // A socket closed by stop() (tracked while the connection lives).
  struct Tracked {
    Proxy* p;
    std::function<void()> close;
    template <class Socket>
    Tracked(Proxy* proxy, Socket* s) : p(proxy), close([s] {
      boost::system::error_code ec;
      s->close(ec);
    }) {
      std::lock_guard lock(p->mu_);
      if (p->stopped_) close();
      p->sockets_.push_back(&close);
    }
    ~Tracked() {
      std::lock_guard lock(p->mu_);
      p->sockets_.remove(&close);
    }
  };

  EgressRecord* record(EgressRecord r) {
    std::lock_guard lock(mu_);
    if (records_.size() >= kMaxRecords) {
      ++dropped_;
      return nullptr;
    }
    records_.push_back(std::move(r));
    return &records_.back();
  }
  void update(EgressRecord* r, const std::function<void(EgressRecord&)>& f) {
    if (!r) return;
    std::lock_guard lock(mu_);
    f(*r);
  }

  static asio::awaitable<void> reply(stream::socket& s, std::string_view status, const std::string& text) {
    const std::string body = "agentplane egress: " + text + "\r\n";
    const std::string msg = "HTTP/1.1 " + std::string(status) + "\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: " +
                            std::to_string(body.size()) + "\r\n\r\n" + body;
    (void)co_await asio::async_write(s, asio::buffer(msg), kTuple);
  }

  // Bytes one way until EOF or an error, counted; then the other side's sending half shut.
  // At most `limit` bytes (the rest of a plain request's body).
  template <class From, class To>
  asio::awaitable<void> pump(From& from, To& to, EgressRecord* r, bool out, uint64_t limit) {
    std::vector<char> buf(32 * 1024);
    while (limit > 0) {
      auto [ec, n] = co_await from.async_read_some(asio::buffer(buf.data(), static_cast<size_t>(std::min<uint64_t>(buf.size(), limit))), kTuple);
      if (ec || n == 0) break;
      auto [wec, wn] = co_await asio::async_write(to, asio::buffer(buf.data(), n), kTuple);
      if (wec) break;
      update(r, [&](EgressRecord& e) { (out ? e.bytes_out : e.bytes_in) += static_cast<int64_t>(wn); });
      limit -= wn;
    }
    boost::system::error_code ec;
    to.shutdown(asio::socket_base::shutdown_send, ec);
  }

  static asio::awaitable<void> serve(std::shared_ptr<Proxy> self, stream::socket client) {
    ++self->live_;
    struct Live {
      std::atomic<int>& n;
      ~Live() { --n; }
    } live{self->live_};
    Tracked tc(self.get(), &client);
    auto ex = co_await asio::this_coro::executor;
    boost::beast::flat_buffer buf(16 * 1024);
    http::request_parser<http::empty_body> parser;
    parser.header_limit(16 * 1024);
    parser.eager(false);
    asio::steady_timer timer(ex, kHeadTimeout);
    auto head = co_await (http::async_read_header(client, buf, parser, kTuple) || timer.async_wait(kTuple));
    if (head.index() == 1 || std::get<0>(std::get<0>(head))) {
      if (head.index() == 1) co_await reply(client, "408 Request Timeout", "no request head within 10 s");
      co_return;
    }
    auto& req = parser.get();
    const bool connect = req.method() == http::verb::connect;
    auto target = parse_target(connect, std::string_view(req.target().data(), req.target().size()));
    if (!target) {
      co_await reply(client, "400 Bad Request", target.error().message);
      co_return;
    }
    EgressRecord rec;
    rec.host = target->host;
    rec.port = target->port;
    tcp::resolver resolver(resolver_context());
    timer.expires_after(kResolveTimeout);
    auto resolved = co_await (resolver.async_resolve(target->host, std::to_string(target->port), kTuple) || timer.async_wait(kTuple));
    if (resolved.index() == 1 || std::get<0>(std::get<0>(resolved))) {
      rec.reason = "cannot resolve " + target->host + ": " +
                   (resolved.index() == 1 ? std::string("timed out") : std::get<0>(std::get<0>(resolved)).message());
      self->record(rec);
      co_await reply(client, "502 Bad Gateway", rec.reason);
      co_return;
    }
    // The first address the check allows, and only that one is connected to.
    std::optional<tcp::endpoint> to;
    std::string refused;
    const auto results = std::get<1>(std::get<0>(std::move(resolved)));
    for (const auto& e : results) {
      auto ok = self->check_ ? self->check_(target->host, e.endpoint().address()) : Status(Error::permission_denied("no egress policy"));
      if (ok) {
        to = e.endpoint();
        break;
      }
      if (refused.empty()) refused = ok.error().message;
    }
    if (!to) {
      rec.reason = refused.empty() ? "no address" : refused;
      self->record(rec);
      co_await reply(client, "403 Forbidden", rec.reason);
      co_return;
    }
    rec.address = to->address().to_string();
    rec.allowed = true;
    EgressRecord* r = self->record(rec);
    tcp::socket upstream(ex);
    Tracked tu(self.get(), &upstream);
    timer.expires_after(kConnectTimeout);
    auto conn = co_await (upstream.async_connect(*to, kTuple) || timer.async_wait(kTuple));
    if (conn.index() == 1 || std::get<0>(std::get<0>(conn))) {
      const std::string why = conn.index() == 1 ? "timed out" : std::get<0>(std::get<0>(conn)).message();
      self->update(r, [&](EgressRecord& e) { e.reason = "connect: " + why; });
      co_await reply(client, "502 Bad Gateway", "cannot connect to " + target->host + ": " + why);
      co_return;
    }
    std::string first;
    uint64_t body_left = 0;  // plain HTTP: the one request's body, then nothing more from the client
    if (connect) {
      static constexpr std::string_view established = "HTTP/1.1 200 Connection established\r\n\r\n";
      auto [wec, wn] = co_await asio::async_write(client, asio::buffer(established.data(), established.size()), kTuple);
      if (wec) co_return;
    } else {
      // The request in origin-form, one per connection, no proxy headers; Host is the host that
      // was checked (a different Host would reach another site behind an allowed address).
      if (req.chunked()) {
        self->update(r, [&](EgressRecord& e) { e.reason = "refused: a chunked request body"; });
        co_await reply(client, "411 Length Required", "plain-HTTP requests need a Content-Length body (or use https)");
        co_return;
      }
      body_left = parser.content_length().value_or(0);
      req.target(target->path);
      req.erase("Proxy-Connection");
      req.erase("Proxy-Authorization");
      req.set(http::field::host, target->port == 80 ? target->host : target->host + ":" + std::to_string(target->port));
      req.set(http::field::connection, "close");
      std::ostringstream os;
      os << req.base();
      first = os.str();
    }
    // What the client sent past the head (a TLS hello, a request body) goes first; for plain
    // HTTP only the request's own body, nothing pipelined after it.
    const size_t extra = connect ? buf.size() : static_cast<size_t>(std::min<uint64_t>(buf.size(), body_left));
    first.append(static_cast<const char*>(buf.data().data()), extra);
    body_left -= connect ? 0 : extra;
    if (!first.empty()) {
      auto [wec, wn] = co_await asio::async_write(upstream, asio::buffer(first), kTuple);
      if (wec) co_return;
      self->update(r, [&](EgressRecord& e) { e.bytes_out += static_cast<int64_t>(wn); });
    }
    if (connect) co_await (self->pump(client, upstream, r, true, UINT64_MAX) && self->pump(upstream, client, r, false, UINT64_MAX));
    else co_await (self->pump(client, upstream, r, true, body_left) && self->pump(upstream, client, r, false, UINT64_MAX));
  }

  asio::any_io_executor ex_;
  asio::basic_socket_acceptor<stream> acceptor_;
  EgressCheck check_;
  std::atomic<int> live_{0};
  std::mutex mu_;
  bool stopped_ = false;
  std::list<std::function<void()>*> sockets_;
  std::list<EgressRecord> records_;  // stable addresses: connections update theirs
  int64_t dropped_ = 0;
};

}  // namespace

std::shared_ptr<EgressProxy> EgressProxy::start(asio::any_io_executor ex, int listener_fd, EgressCheck check) {
  auto p = std::make_shared<Proxy>(ex, listener_fd, std::move(check));
  p->begin();
  return p;
}

}  // namespace ap::sandbox
