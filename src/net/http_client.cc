#include "net/http_client.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <array>
#include <optional>
#include <unordered_map>

#include "common/text.h"
#include "net/http_io.h"

namespace ap::net {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
using clock = std::chrono::steady_clock;

namespace {
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

Error io_error(const std::string& what, const beast::error_code& ec) {
  if (ec == beast::error::timeout) return Error::deadline_exceeded(what + ": timed out");
  return Error::unavailable(what + ": " + ec.message());
}

std::shared_ptr<asio::ssl::context> client_tls() {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  ctx->set_options(asio::ssl::context::no_sslv2 | asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                   asio::ssl::context::no_tlsv1_1);
  ctx->set_default_verify_paths();
  ctx->set_verify_mode(asio::ssl::verify_peer);
  return ctx;
}

// Seconds (or milliseconds from OpenAI's retry-after-ms) to wait; nullopt when not given as a number.
std::optional<std::chrono::milliseconds> retry_after(const http::fields& h) {
  auto num = [](std::string_view v) -> std::optional<double> {
    if (v.empty()) return std::nullopt;
    try {
      size_t used = 0;
      double d = std::stod(std::string(v), &used);
      if (used != v.size() || d < 0) return std::nullopt;
      return d;
    } catch (...) {
      return std::nullopt;
    }
  };
  if (auto ms = num(h["retry-after-ms"])) return std::chrono::milliseconds(static_cast<int64_t>(*ms));
  if (auto s = num(h["retry-after"])) return std::chrono::milliseconds(static_cast<int64_t>(*s * 1000));
  return std::nullopt;
}

}  // namespace

// ---- Url ----

Result<Url> Url::parse(std::string_view u) {
  Url out;
  if (u.starts_with("https://")) {
    out.tls = true;
    u.remove_prefix(8);
  } else if (u.starts_with("http://")) {
    u.remove_prefix(7);
  } else {
    return Error::invalid_argument("URL must start with http:// or https:// (got '" + std::string(u.substr(0, 80)) + "')");
  }
  auto slash = u.find_first_of("/?");
  std::string_view authority = u.substr(0, slash);
  out.target = slash == std::string_view::npos ? "/" : std::string(u.substr(slash));
  if (out.target.front() == '?') out.target.insert(out.target.begin(), '/');
  if (authority.find('@') != std::string_view::npos)
    return Error::invalid_argument("URL must not carry user information");
  if (authority.starts_with("[")) {
    auto close = authority.find(']');
    if (close == std::string_view::npos) return Error::invalid_argument("URL has an unclosed IPv6 address");
    out.host = std::string(authority.substr(1, close - 1));
    authority.remove_prefix(close + 1);
    if (!authority.empty() && authority.front() != ':') return Error::invalid_argument("malformed URL authority");
    out.port = authority.empty() ? "" : std::string(authority.substr(1));
  } else {
    auto colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
    out.port = colon == std::string_view::npos ? "" : std::string(authority.substr(colon + 1));
  }
  ascii_lower_in_place(out.host);
  if (out.host.empty()) return Error::invalid_argument("URL has no host");
  if (out.port.empty()) out.port = out.tls ? "443" : "80";
  if (out.port.find_first_not_of("0123456789") != std::string::npos || out.port.size() > 5 || std::stoi(out.port) == 0 ||
      std::stoi(out.port) > 65535)
    return Error::invalid_argument("URL has a bad port '" + out.port + "'");
  for (char c : out.target)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return Error::invalid_argument("URL path has a control character or space");
  return out;
}

std::string Url::origin() const { return std::string(tls ? "https://" : "http://") + host + ":" + port; }

std::string Url::host_header() const {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return port == (tls ? "443" : "80") ? h : h + ":" + port;
}

// ---- connections ----

struct ClientResponse::Conn {
  std::string origin;
  std::shared_ptr<asio::ssl::context> tls_ctx;  // outlives the stream that uses it
  std::unique_ptr<beast::tcp_stream> tcp;       // plain http
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> ssl;
  beast::flat_buffer buffer;
  std::optional<http::response_parser<http::buffer_body>> parser;
  clock::time_point idle_since{};
  std::chrono::milliseconds read_timeout{};
  // Body pieces land here: a buffer in the coroutine frame would make every read() allocate it.
  std::array<char, 16384> piece{};

  beast::tcp_stream& lowest() { return ssl ? beast::get_lowest_layer(*ssl) : *tcp; }

  asio::awaitable<beast::error_code> write(http::request<http::string_body>& req) {
    http::request_serializer<http::string_body> sr{req};
    if (tcp) {  // plain: what the socket takes at once is written at once
      auto ec = write_now(tcp->socket(), sr);
      if (ec || sr.is_done()) co_return ec;
    }
    lowest().expires_after(read_timeout);
    auto [ec, n] = ssl ? co_await http::async_write(*ssl, sr, kTuple) : co_await http::async_write(*tcp, sr, kTuple);
    co_return ec;
  }
  asio::awaitable<beast::error_code> read_header() {
    lowest().expires_after(read_timeout);
    auto [ec, n] = ssl ? co_await http::async_read_header(*ssl, buffer, *parser, kTuple)
                       : co_await http::async_read_header(*tcp, buffer, *parser, kTuple);
    co_return ec;
  }
  asio::awaitable<beast::error_code> read_some() {
    lowest().expires_after(read_timeout);
    auto [ec, n] = ssl ? co_await http::async_read_some(*ssl, buffer, *parser, kTuple)
                       : co_await http::async_read_some(*tcp, buffer, *parser, kTuple);
    co_return ec;
  }
  void close() {
    beast::error_code ec;
    lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
    lowest().close();
  }
};

struct HttpClient::Pool {
  std::unordered_map<std::string, std::vector<std::unique_ptr<ClientResponse::Conn>>> idle;
  size_t max_per_origin = 64;
  std::chrono::milliseconds ttl{};

  std::unique_ptr<ClientResponse::Conn> take(const std::string& origin) {
    auto it = idle.find(origin);
    if (it == idle.end()) return nullptr;
    auto now = clock::now();
    while (!it->second.empty()) {
      auto c = std::move(it->second.back());
      it->second.pop_back();
      if (now - c->idle_since < ttl && c->lowest().socket().is_open()) return c;
      c->close();
    }
    return nullptr;
  }
  void give(std::unique_ptr<ClientResponse::Conn> c) {
    auto now = clock::now();
    if (now >= next_reap) {
      reap(now);
      next_reap = now + ttl / 2;
    }
    auto& v = idle[c->origin];
    if (v.size() >= max_per_origin) {
      c->close();
      return;
    }
    c->parser.reset();
    c->idle_since = now;
    v.push_back(std::move(c));
  }

 private:
  // Closes the idle connections of every origin that are past their time, and forgets origins
  // with none left: take() sees only the newest of one origin, and an origin that is not used
  // again (a route's old base URL, a tool's host) would keep its sockets, often half-closed by
  // the server, for the life of the process.
  void reap(clock::time_point now) {
    for (auto it = idle.begin(); it != idle.end();) {
      auto& v = it->second;
      size_t expired = 0;  // in the order they went idle: the expired ones come first
      while (expired < v.size() && now - v[expired]->idle_since >= ttl) v[expired++]->close();
      v.erase(v.begin(), v.begin() + static_cast<long>(expired));
      it = v.empty() ? idle.erase(it) : std::next(it);
    }
  }
  clock::time_point next_reap{};
};

// ---- ClientResponse ----

ClientResponse::~ClientResponse() {
  if (conn_) conn_->close();  // unfinished: closing cancels the request upstream
}

std::string ClientResponse::header(std::string_view lname) const {
  std::string_view rest = head_;
  while (!rest.empty()) {
    const size_t n = rest.find('\0');
    const size_t v = rest.find('\0', n + 1);
    if (rest.substr(0, n) == lname) return std::string(rest.substr(n + 1, v - n - 1));
    rest.remove_prefix(v + 1);
  }
  return {};
}

bool ClientResponse::done() const { return !conn_; }

bool ClientResponse::ready() const { return !conn_ || conn_->buffer.size() > 0 || conn_->parser->is_done(); }

asio::awaitable<Result<std::string>> ClientResponse::read() {
  if (!conn_) co_return std::string();
  auto finish = [this] {
    auto pool = std::static_pointer_cast<HttpClient::Pool>(pool_.lock());
    if (keep_alive_ && conn_->parser->get().keep_alive() && pool && conn_->buffer.size() == 0)
      pool->give(std::move(conn_));
    else
      conn_->close();
    conn_.reset();
  };
  while (true) {
    auto& p = *conn_->parser;
    if (p.is_done()) {
      finish();
      co_return std::string();
    }
    char* buf = conn_->piece.data();
    p.get().body().data = buf;
    p.get().body().size = conn_->piece.size();
    // What already arrived (often the whole body, with the head) is parsed at once; the network
    // is read only when nothing of the body is here.
    auto ec = parse_buffered(p, conn_->buffer, /*header_only=*/false);
    if (ec == http::error::need_buffer) ec = {};
    if (!ec && !p.is_done() && p.get().body().size == conn_->piece.size()) {
      ec = co_await conn_->read_some();
      if (ec == http::error::need_buffer) ec = {};
    }
    if (ec) {
      conn_->close();
      conn_.reset();
      co_return io_error("reading the response from upstream", ec);
    }
    size_t got = conn_->piece.size() - p.get().body().size;
    if (got) {
      std::string out(buf, got);
      if (p.is_done()) finish();
      co_return out;
    }
  }
}

asio::awaitable<Result<std::string>> ClientResponse::read_all(size_t limit) {
  std::string all;
  while (true) {
    auto piece = co_await read();
    if (!piece) co_return piece.error();
    if (piece->empty()) co_return all;
    all += *piece;
    if (all.size() > limit) {
      if (conn_) conn_->close();
      conn_.reset();
      co_return Error::resource_exhausted("upstream response larger than " + std::to_string(limit) + " bytes");
    }
  }
}

// ---- HttpClient ----

HttpClient::HttpClient(asio::any_io_executor ex, ClientOptions options)
    : ex_(std::move(ex)), options_(std::move(options)), pool_(std::make_shared<Pool>()) {
  pool_->max_per_origin = options_.max_idle_per_origin;
  pool_->ttl = options_.idle_ttl;
}

HttpClient::~HttpClient() {
  for (auto& [origin, conns] : pool_->idle)
    for (auto& c : conns) c->close();
}

size_t HttpClient::idle_connections() const {
  size_t n = 0;
  for (const auto& [o, v] : pool_->idle) n += v.size();
  return n;
}

asio::awaitable<Result<std::unique_ptr<ClientResponse::Conn>>> HttpClient::connect(const Url& url) {
  if (!options_.egress) co_return Error::internal("HTTP client has no egress policy");
  tcp::resolver resolver(ex_);
  auto [rec, results] = co_await resolver.async_resolve(url.host, url.port, kTuple);
  if (rec) co_return Error::unavailable("cannot resolve '" + url.host + "': " + rec.message());
  std::vector<tcp::endpoint> allowed;
  Status denied;
  for (const auto& r : results) {
    auto st = options_.egress->check(url.host, r.endpoint().address());
    if (st)
      allowed.push_back(r.endpoint());
    else if (denied)
      denied = st;
  }
  if (allowed.empty()) {
    if (!denied) co_return denied.error();
    co_return Error::unavailable("'" + url.host + "' resolves to no address");
  }
  auto c = std::make_unique<ClientResponse::Conn>();
  c->buffer.reserve(16384);  // a response's head and a small body in one read (Beast starts at 512 bytes)
  c->origin = url.origin();
  c->read_timeout = options_.read_timeout;
  if (url.tls) {
    c->tls_ctx = tls_ctx_ ? tls_ctx_ : (tls_ctx_ = client_tls());
    c->ssl = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(ex_, *c->tls_ctx);
  } else {
    c->tcp = std::make_unique<beast::tcp_stream>(ex_);
  }
  auto& low = c->lowest();
  low.expires_after(options_.connect_timeout);
  auto [cec, ep] = co_await low.async_connect(allowed, kTuple);
  if (cec) co_return io_error("cannot connect to " + url.host_header(), cec);
  beast::error_code ignored;
  low.socket().set_option(tcp::no_delay(true), ignored);
  if (!c->ssl) {  // requests go out at once (net/http_io.h): never a blocking write
    beast::error_code nec;
    low.socket().non_blocking(true, nec);
    if (nec) co_return io_error("cannot set up the connection to " + url.host_header(), nec);
  }
  if (c->ssl) {
    if (!SSL_set_tlsext_host_name(c->ssl->native_handle(), url.host.c_str()))
      co_return Error::unavailable("TLS: cannot set the server name");
    c->ssl->set_verify_callback(asio::ssl::host_name_verification(url.host));
    low.expires_after(options_.connect_timeout);
    auto [hec] = co_await c->ssl->async_handshake(asio::ssl::stream_base::client, kTuple);
    if (hec) co_return io_error("TLS handshake with " + url.host_header() + " failed", hec);
  }
  co_return c;
}

asio::awaitable<Result<std::unique_ptr<ClientResponse>>> HttpClient::send(ClientRequest request) {
  AP_CO_ASSIGN_OR_RETURN(Url url, Url::parse(request.url));
  http::request<http::string_body> req;
  auto verb = http::string_to_verb(request.method);
  if (verb == http::verb::unknown) co_return Error::invalid_argument("unknown HTTP method '" + request.method + "'");
  req.method(verb);
  req.target(url.target);
  req.version(11);
  req.set(http::field::host, url.host_header());
  req.set(http::field::user_agent, options_.user_agent);
  for (const auto& [k, v] : request.headers) req.set(k, v);
  if (!request.body.empty() || verb == http::verb::post || verb == http::verb::put || verb == http::verb::patch) {
    if (req[http::field::content_type].empty()) req.set(http::field::content_type, "application/json");
    req.body() = std::move(request.body);
  }
  req.keep_alive(true);
  req.prepare_payload();

  const std::string origin = url.origin();
  int attempt = 0;
  while (true) {
    ++attempt;
    auto conn = pool_->take(origin);
    const bool reused = conn != nullptr;
    if (!conn) {
      auto made = co_await connect(url);
      if (!made) {
        // Nothing was sent: a connect failure is safe to retry; a refusal by policy is not.
        if (made.error().code == Code::kUnavailable && attempt < options_.max_attempts) {
          asio::steady_timer t(ex_, std::chrono::milliseconds(100 * attempt));
          co_await t.async_wait(kTuple);
          continue;
        }
        co_return made.error();
      }
      conn = std::move(*made);
    }
    auto wec = co_await conn->write(req);
    if (!wec) {
      conn->parser.emplace();
      conn->parser->body_limit(boost::none);
      wec = co_await conn->read_header();
    }
    if (wec) {
      conn->close();
      // A pooled keep-alive connection the upstream had closed: try again on a fresh one (not an
      // attempt: the request never reached a live connection).
      if (reused && wec != beast::error::timeout) {
        --attempt;
        continue;
      }
      co_return io_error("request to " + url.host_header() + " failed", wec);
    }
    const int status = conn->parser->get().result_int();
    if ((status == 429 || status == 502 || status == 503 || status == 504) && attempt < options_.max_attempts) {
      auto wait = retry_after(conn->parser->get());
      if (wait && *wait <= options_.max_retry_after) {
        conn->close();  // the error body is not needed
        asio::steady_timer t(ex_, *wait);
        co_await t.async_wait(kTuple);
        continue;
      }
    }
    std::unique_ptr<ClientResponse> res(new ClientResponse());
    res->status_ = status;
    size_t size = 0;
    for (const auto& f : conn->parser->get()) size += f.name_string().size() + f.value().size() + 2;
    res->head_.reserve(size);
    for (const auto& f : conn->parser->get()) {
      for (char c : f.name_string()) res->head_ += static_cast<char>(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
      res->head_ += '\0';
      res->head_.append(f.value());
      res->head_ += '\0';
    }
    res->keep_alive_ = true;
    res->pool_ = pool_;
    res->conn_ = std::move(conn);
    co_return res;
  }
}

}  // namespace ap::net
