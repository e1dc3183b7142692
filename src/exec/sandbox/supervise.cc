#include "exec/sandbox/supervise.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <random>
#include <sstream>

namespace ap::sandbox {
namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;

namespace {
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
using Desc = asio::posix::stream_descriptor;
}  // namespace

asio::awaitable<Supervised> supervise(Supervision s, const Spec& spec, const OnOutput& on_output) {
  auto ex = co_await asio::this_coro::executor;
  Supervised out;
  Desc out_d(ex, s.stdout_fd), err_d(ex, s.stderr_fd), in_d(ex, s.stdin_fd), exit_d(ex, s.exit_fd);
  std::optional<Desc> report_d;
  if (s.report_fd >= 0) report_d.emplace(ex, s.report_fd);
  const int64_t cap = spec.limits.output_bytes;
  // Streams still open; when the sandbox has exited, stragglers (a pipe held by something the
  // command left behind, as in a warm sandbox) get a short grace and are then cut.
  int open_streams = 2;
  asio::steady_timer streams_done(ex, std::chrono::steady_clock::time_point::max());
  auto drain = [&](Desc& d, std::string& into, bool& capped, int fd_no) -> asio::awaitable<void> {
    std::vector<char> buf(65536);
    for (;;) {
      auto [ec, n] = co_await d.async_read_some(asio::buffer(buf), kTuple);
      if (ec || n == 0) break;
      if (capped) continue;
      const int64_t room = cap - static_cast<int64_t>(into.size());
      const size_t take = static_cast<size_t>(std::min<int64_t>(room, static_cast<int64_t>(n)));
      into.append(buf.data(), take);
      if (on_output && take > 0) on_output(fd_no, std::string_view(buf.data(), take));
      if (static_cast<int64_t>(n) > room) {  // over the cap: stop the writer now
        capped = true;
        s.kill();
      }
    }
    d.close();
    if (--open_streams == 0) streams_done.cancel();
  };
  bool report_done = false;
  auto read_report = [&]() -> asio::awaitable<void> {
    if (!report_d) co_return;
    std::vector<char> buf(65536);
    for (;;) {
      auto [ec, n] = co_await report_d->async_read_some(asio::buffer(buf), kTuple);
      if (ec == asio::error::eof || (!ec && n == 0)) {
        out.report_complete = true;
        break;
      }
      if (ec) break;
      if (out.report.size() + n > s.report_cap) {  // a backend never says this much: stop it
        s.kill();
        break;
      }
      out.report.append(buf.data(), n);
    }
    if (s.report_ends_run && out.report_complete) {
      report_done = true;
      boost::system::error_code ignored;
      exit_d.cancel(ignored);
    }
  };
  auto feed = [&]() -> asio::awaitable<void> {
    if (!spec.stdin_data.empty()) co_await asio::async_write(in_d, asio::buffer(spec.stdin_data), kTuple);
    in_d.close();
  };
  auto exited = [&]() -> asio::awaitable<void> {
    if (!report_done) co_await exit_d.async_wait(Desc::wait_read, kTuple);
    if (open_streams > 0) {
      streams_done.expires_after(std::chrono::milliseconds(200));
      co_await streams_done.async_wait(kTuple);
    }
    if (open_streams > 0) {
      boost::system::error_code ignored;
      out_d.cancel(ignored);
      err_d.cancel(ignored);
    }
    if (in_d.is_open()) {
      boost::system::error_code ignored;
      in_d.cancel(ignored);
    }
  };
  auto watchdog = [&]() -> asio::awaitable<void> {
    asio::steady_timer t(ex);
    const auto deadline = s.start + spec.limits.wall;
    const double cpu_limit = static_cast<double>(spec.limits.cpu.count()) / 1000.0;
    for (;;) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline && !out.timed_out) out.timed_out = true;
      if (s.cgroup && !out.timed_out && !out.cpu_killed && s.cgroup->stats().cpu_s - s.cpu_base_s > cpu_limit) out.cpu_killed = true;
      if (out.timed_out || out.cpu_killed) s.kill();  // again on every tick until it is gone
      const std::chrono::steady_clock::duration step = std::chrono::milliseconds(100);
      t.expires_after(deadline > now ? std::min(step, deadline - now) : step);
      auto [ec] = co_await t.async_wait(kTuple);
      if (ec) co_return;
    }
  };
  co_await ((drain(out_d, out.stdout_data, out.stdout_capped, 1) && drain(err_d, out.stderr_data, out.stderr_capped, 2) &&
             read_report() && feed() && exited()) ||
            watchdog());
  co_return out;
}

// Nothing of the server's signal state reaches the code: an empty mask, every disposition the
// default (execve keeps ignored signals and the mask). Raw system calls (see reset_signals' use).
void reset_signals() {
  const uint64_t empty = 0;
  ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &empty, nullptr, sizeof empty);
  struct {
    void* handler;
    unsigned long flags;
    void* restorer;
    uint64_t mask;
  } dfl{nullptr, 0, nullptr, 0};  // the kernel's struct sigaction; SIG_DFL is 0
  for (int sig = 1; sig <= 64; ++sig)
    if (sig != SIGKILL && sig != SIGSTOP) ::syscall(SYS_rt_sigaction, sig, &dfl, nullptr, sizeof(uint64_t));
}

bool apply_kills(const Supervised& s, const Spec& spec, RunResult& r) {
  r.stdout_data = s.stdout_data;
  r.stderr_data = s.stderr_data;
  r.stdout_capped = s.stdout_capped;
  r.stderr_capped = s.stderr_capped;
  const std::string marker = "\n[agentplane: output truncated at " + std::to_string(spec.limits.output_bytes) + " bytes]\n";
  if (r.stdout_capped) r.stdout_data += marker;
  if (r.stderr_capped) r.stderr_data += marker;
  if (s.timed_out) r.outcome = Outcome::kTimedOut;
  else if (s.cpu_killed) r.outcome = Outcome::kCpuLimit;
  else if (s.stdout_capped || s.stderr_capped) r.outcome = Outcome::kOutputCapped;
  else return false;
  r.signal = SIGKILL;
  return true;
}

Pipe::~Pipe() {
  for (int f : fds)
    if (f >= 0) ::close(f);
}

Status Pipe::open() {
  if (::pipe2(fds, O_CLOEXEC) != 0) return Error::unavailable(std::string("pipe: ") + std::strerror(errno));
  return ok_status();
}

Status valid_rel_path(const std::string& path) {
  if (path.empty() || path.size() > 1024 || path.front() == '/')
    return Error::invalid_argument("file path '" + path + "' must be relative to the workspace");
  if (path.find('\0') != std::string::npos) return Error::invalid_argument("file path has a NUL byte");
  std::istringstream in(path);
  std::string seg;
  while (std::getline(in, seg, '/'))
    if (seg.empty() || seg == "." || seg == ".." || seg.size() > 255)
      return Error::invalid_argument("file path '" + path + "' has an empty, '.' or '..' segment");
  return ok_status();
}

Result<std::vector<std::string>> environment(const Spec& spec, std::string* path_var) {
  std::vector<std::string> env;
  *path_var = "/usr/local/bin:/usr/bin:/bin";
  bool has_path = false, has_home = false, has_lang = false, has_tmp = false;
  for (const auto& [k, v] : spec.env) {
    if (k.empty() || k.find('=') != std::string::npos || k.find('\0') != std::string::npos || v.find('\0') != std::string::npos)
      return Error::invalid_argument("environment variable names must be non-empty, without '=' or NUL");
    if (k == "PATH") {
      *path_var = v;
      has_path = true;
    }
    has_home = has_home || k == "HOME";
    has_lang = has_lang || k == "LANG";
    has_tmp = has_tmp || k == "TMPDIR";
    env.push_back(k + "=" + v);
  }
  if (!has_path) env.push_back("PATH=" + *path_var);
  if (!has_home) env.push_back("HOME=/work");
  if (!has_lang) env.push_back("LANG=C.UTF-8");
  if (!has_tmp) env.push_back("TMPDIR=/tmp");
  if (spec.network) {  // the egress proxy, for every client that honours these
    const std::string proxy = "http://127.0.0.1:" + std::to_string(kEgressProxyPort);
    for (const char* k : {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"}) {
      bool given = false;
      for (const auto& [key, v] : spec.env) given = given || key == k;
      if (!given) env.push_back(std::string(k) + "=" + proxy);
    }
  }
  for (const auto& a : spec.argv)
    if (a.find('\0') != std::string::npos) return Error::invalid_argument("arguments must not contain NUL");
  return env;
}

std::string random_hex(size_t n) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) s += hex[rng() & 15];
  return s;
}

}  // namespace ap::sandbox
