#include "app/cli/sandbox.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "exec/sandbox/sandbox.h"
#include "net/egress.h"

namespace ap::app::cli {
namespace {

// A positive number and its unit ("500ms", "64M"); false if malformed.
bool number_unit(const std::string& s, double* v, std::string* unit) {
  size_t n = 0;
  try {
    *v = std::stod(s, &n);
  } catch (...) {
    return false;
  }
  *unit = s.substr(n);
  return *v > 0;
}

// "500ms", "5s", "2m" -> milliseconds; -1 if malformed.
int64_t parse_duration_ms(const std::string& s) {
  double v;
  std::string unit;
  if (!number_unit(s, &v, &unit)) return -1;
  if (unit == "ms") return static_cast<int64_t>(v);
  if (unit == "s" || unit.empty()) return static_cast<int64_t>(v * 1000);
  if (unit == "m") return static_cast<int64_t>(v * 60000);
  return -1;
}

// "64M", "1G", "512K", "4096" (and KiB/MB spellings) -> bytes; -1 if malformed.
int64_t parse_size(const std::string& s) {
  double v;
  std::string unit;
  if (!number_unit(s, &v, &unit)) return -1;
  if (!unit.empty() && (unit.back() == 'B' || unit.back() == 'b')) unit.pop_back();
  if (unit.size() == 2 && (unit[1] == 'i' || unit[1] == 'I')) unit.pop_back();
  const double mul = unit.empty() ? 1 : unit == "K" || unit == "k" ? 1024.0 : unit == "M" || unit == "m" ? 1048576.0
                                   : unit == "G" || unit == "g" ? 1073741824.0 : -1;
  if (mul < 0) return -1;
  return static_cast<int64_t>(v * mul);
}

}  // namespace

int sandbox_probe() {
  for (const char* b : {"native", "gvisor", "microvm"}) {
    auto p = sandbox::probe(b);
    std::cout << b << ": " << (p.available ? "available" : "unavailable") << " - " << p.detail << "\n";
  }
  return 0;
}

int sandbox_run(const SandboxRunOptions& o) {
  if (o.command.empty()) {
    std::cerr << "agentplane sandbox run: give the command after --, e.g. agentplane sandbox run -- python3 -c 'print(1)'\n";
    return 2;
  }
  sandbox::Spec spec;
  spec.argv = o.command;
  spec.network = o.network;
  if (o.network) {
    auto egress = net::Egress::parse(o.egress_allow, o.egress_public);
    if (!egress) {
      std::cerr << "agentplane sandbox run: " << egress.error().message << "\n";
      return 2;
    }
    spec.egress_check = [e = std::make_shared<net::Egress>(std::move(*egress))](std::string_view host, const boost::asio::ip::address& a) {
      return e->check(host, a);
    };
  }
  const int64_t wall = parse_duration_ms(o.timeout), memory = parse_size(o.memory), disk = parse_size(o.disk);
  if (wall < 0 || memory < 0 || disk < 0) {
    std::cerr << "agentplane sandbox run: --timeout takes 500ms/5s/2m, --memory and --disk 64M/1G\n";
    return 2;
  }
  spec.limits.wall = spec.limits.cpu = std::chrono::milliseconds(wall);
  spec.limits.memory_bytes = memory;
  spec.limits.disk_bytes = disk;
  spec.limits.pids = o.pids;
  for (const auto& f : o.files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) {
      std::cerr << "agentplane sandbox run: cannot read " << f << "\n";
      return 2;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    spec.files.push_back({std::filesystem::path(f).filename().string(), ss.str(), 0644});
  }
  if (!::isatty(0)) {
    std::stringstream ss;
    ss << std::cin.rdbuf();
    spec.stdin_data = ss.str();
  }
  auto sb = sandbox::make_sandbox(o.backend);
  if (!sb) {
    std::cerr << "agentplane sandbox run: " << sb.error().message << "\n";
    return 125;
  }
  boost::asio::io_context ioc;
  size_t streamed[3] = {0, 0, 0};
  auto on_output = [&streamed](int fd, std::string_view chunk) {
    std::ostream& out = fd == 1 ? std::cout : std::cerr;
    out.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    out.flush();
    streamed[fd] += chunk.size();
  };
  auto f = boost::asio::co_spawn(ioc, (*sb)->run(std::move(spec), on_output), boost::asio::use_future);
  ioc.run();
  auto r = f.get();
  if (!r) {
    std::cerr << "agentplane sandbox run: " << r.error().message << "\n";
    return 125;
  }
  // What the result holds beyond what streamed (the platform's own messages).
  if (r->stdout_data.size() > streamed[1]) std::cout << r->stdout_data.substr(streamed[1]) << std::flush;
  if (r->stderr_data.size() > streamed[2]) std::cerr << r->stderr_data.substr(streamed[2]);
  if (!o.quiet)
    std::cerr << "[sandbox " << (*sb)->name() << ": " << r->summary() << "; cpu " << r->usage.cpu_s << " s, wall "
              << r->usage.wall_s << " s, peak memory " << (r->usage.peak_memory_bytes >> 10) << " KiB]\n";
  if (!o.quiet)
    for (const auto& e : r->egress)
      std::cerr << "[egress " << e.host << ":" << e.port << " " << (e.allowed ? "-> " + e.address : "refused") << " "
                << (e.reason.empty() ? "" : e.reason + " ") << e.bytes_out << " B out, " << e.bytes_in << " B in]\n";
  if (r->outcome == sandbox::Outcome::kExited) return r->exit_code;
  return 128 + (r->signal > 0 ? r->signal : 9);
}

}  // namespace ap::app::cli
