#include "store/listener.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "telemetry/log.h"

namespace ap::store {

std::vector<std::pair<std::string, std::string>> long_lived_options() {
  return {{"keepalives", "1"},       {"keepalives_idle", "2"},     {"keepalives_interval", "1"},
          {"keepalives_count", "2"}, {"tcp_user_timeout", "4000"}, {"connect_timeout", "3"}};
}

Listener::Listener(asio::any_io_executor ex, std::string conninfo, std::vector<std::string> channels)
    : ex_(ex), conninfo_(std::move(conninfo)), channels_(std::move(channels)), backoff_(ex) {}

Listener::~Listener() = default;

void Listener::stop() {
  stopping_ = true;
  asio::post(ex_, [this] {
    backoff_.cancel();
    if (conn_) conn_->cancel();
  });
}

asio::awaitable<void> Listener::run(OnNotify on_notify, std::function<void()> on_ready) {
  std::vector<std::string> sql;
  for (const auto& c : channels_) sql.push_back("LISTEN " + c);
  while (!stopping_) {
    auto conn = co_await Conn::connect(ex_, conninfo_, long_lived_options());
    if (conn) {
      std::vector<Statement> listen;
      for (const auto& s : sql) listen.push_back({s, {}});
      if (auto r = co_await (*conn)->pipeline(listen); r && !stopping_) {
        conn_ = std::move(*conn);
        listening_ = true;
        if (on_ready) on_ready();
        auto st = co_await conn_->listen_loop(on_notify);
        listening_ = false;
        conn_.reset();
        if (stopping_) break;
        telemetry::log_warn("listener_lost", {{"channel", channels_.front()}, {"error", st.error().message}});
      }
    } else {
      telemetry::log_warn("listener_connect_failed", {{"channel", channels_.front()}, {"error", conn.error().message}});
    }
    if (stopping_) break;
    backoff_.expires_after(std::chrono::seconds(1));
    co_await backoff_.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

}  // namespace ap::store
