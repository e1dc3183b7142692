// Runs untrusted code: `Sandbox::run(spec)` starts a command in an isolated environment and
// reports how it ended. Backends: "native" (namespaces + seccomp + cgroups, done here with the
// system calls), "gvisor" (runsc) and "microvm" (absent on hosts without KVM: probe() says so).
// Errors of the platform (no cgroup, backend missing) are Result errors; whatever the user's
// code does (exit 1, crash, time out, run out of memory, flood its output) is a RunResult.
// See docs/sandbox.md for what is isolated and how, and the known limits.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/address.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"

namespace ap::sandbox {

struct Limits {
  std::chrono::milliseconds wall{10'000};  // then the whole sandbox is killed
  std::chrono::milliseconds cpu{10'000};   // CPU time of all its processes together
  int64_t memory_bytes = 256ll << 20;      // then the kernel's OOM killer, within the sandbox only
  int64_t pids = 64;                       // processes and threads at once
  int64_t disk_bytes = 64ll << 20;         // the workspace, and /tmp, each
  int64_t output_bytes = 1ll << 20;        // stdout, and stderr, each: then the sandbox is killed
  int64_t open_files = 256;
  double cpus = 1.0;                       // CPU bandwidth, in cores

  Status validate() const;
};

struct File {
  std::string path;  // relative to the workspace ("main.py", "data/in.json")
  std::string content;
  int mode = 0644;
};

// Whether the sandbox may reach `host` (as the code named it) at `address` (what it resolved
// to): OK, or PermissionDenied saying why (e.g. net::Egress::check).
using EgressCheck = std::function<Status(std::string_view host, const boost::asio::ip::address& address)>;

// The port of the egress proxy inside a sandbox with network (127.0.0.1 there).
inline constexpr int kEgressProxyPort = 3128;

struct Spec {
  std::vector<std::string> argv;  // argv[0]: a command on the sandbox's PATH or an absolute path
  std::string stdin_data;
  std::vector<File> files;
  // The whole environment (nothing is inherited): PATH, HOME, LANG and TMPDIR default when absent.
  std::vector<std::pair<std::string, std::string>> env;
  Limits limits;
  // Egress: an HTTP(S) proxy at 127.0.0.1:3128 inside (HTTP_PROXY, HTTPS_PROXY
  // and ALL_PROXY set unless given), which connects only where `egress_check` allows (required
  // then). There is still no interface but `lo`: only what goes through the proxy leaves.
  bool network = false;
  EgressCheck egress_check;
  std::vector<std::string> read_back;  // workspace files to return after the run
  std::string tenant, run;             // whose code this is (cgroup names, logs)
};

enum class Outcome {
  kExited,        // exit_code set (0: success)
  kSignaled,      // signal set (a crash, or SIGSYS from the seccomp filter)
  kTimedOut,      // the wall-clock limit
  kCpuLimit,      // the CPU-time limit
  kOomKilled,     // the memory limit
  kOutputCapped,  // stdout or stderr passed output_bytes
  kCancelled,     // the caller cancelled it: killed (usage says what it had used)
};
std::string_view outcome_name(Outcome o);  // "exited", "signaled", "timed_out", ...

struct Usage {
  double cpu_s = 0;
  int64_t peak_memory_bytes = 0;
  double wall_s = 0;
};

// One connection through the egress proxy.
struct EgressRecord {
  std::string host;  // as the code asked for it
  int port = 0;
  std::string address;  // where it went ("" when refused before connecting)
  bool allowed = false;
  std::string reason;   // refused or failed: why
  int64_t bytes_out = 0, bytes_in = 0;
};

struct RunResult {
  Outcome outcome = Outcome::kExited;
  int exit_code = -1;  // kExited
  int signal = 0;      // kSignaled (and the signal that ended the others, when known)
  std::string stdout_data, stderr_data;  // at most output_bytes each, then a marker line
  bool stdout_capped = false, stderr_capped = false;
  std::map<std::string, std::string> files;  // read_back files that exist (regular files only)
  Usage usage;
  bool warm = false;  // ran in a pre-started sandbox of the warm pool
  std::vector<EgressRecord> egress;  // with network: each destination (at most 256 kept)
  int64_t egress_dropped = 0;        // records beyond those
  bool ok() const { return outcome == Outcome::kExited && exit_code == 0; }
  std::string summary() const;  // "exited with 1", "killed: memory limit (256 MiB)", ...
};

// Output as it arrives: fd 1 or 2, and a chunk (called on the caller's executor).
using OnOutput = std::function<void(int fd, std::string_view chunk)>;

class Sandbox {
 public:
  virtual ~Sandbox() = default;
  virtual std::string name() const = 0;
  // Runs on the caller's executor; needs nothing else of it (no thread is blocked).
  virtual boost::asio::awaitable<Result<RunResult>> run(Spec spec, OnOutput on_output = {}) = 0;
};

struct Options {
  // Host ids the sandboxes' ids map to when the server runs as root (otherwise the server's own
  // ids are used): each run takes two (setup, code) from a range of 2 * id_range starting here,
  // round robin, so that runs do not share per-user kernel quotas. The default sits above the
  // ranges /etc/subuid hands out, so that no other user's containers share these ids.
  uint32_t host_id_base = 2100000000;
  uint32_t id_range = 65536;
  // The name of the cgroup made beneath the server's own (one child per run inside it).
  std::string cgroup_name = "agentplane-sandbox";
  std::string runsc = "runsc";  // gvisor: the runsc binary
  std::string runsc_platform = "ptrace";
  std::string state_dir;  // gvisor: its state and bundles (default: a folder under /run or /tmp)
  std::string runsc_debug_dir;  // gvisor: set, runsc writes its debug logs there
  // Sandboxes kept started per tenant and limits (0: none). gvisor: a run of that tenant with
  // those limits takes one (`runsc exec`, ~4x faster than a cold start here) and a new one is
  // started behind it; after a run that ended on its own, the sandbox is reset (every process
  // but its keeper killed, workspace, /tmp and /dev/shm emptied) and kept; otherwise destroyed.
  // native: the init waits with its root built; each is used once (docs/sandbox.md).
  int warm_pool = 0;
  // How many tenant|limits sets keep warm sandboxes at once (at most warm_pool * warm_sets
  // sandboxes); the least recently used sets make room for new ones.
  int warm_sets = 8;
};

// Whether a backend can run on this host, and if not, why.
struct Probe {
  bool available = false;
  std::string detail;  // what was found, or why it cannot run
};
Probe probe(std::string_view backend, const Options& options = {});

// "native", "gvisor" or "microvm": FailedPrecondition when the backend cannot run on this host.
Result<std::unique_ptr<Sandbox>> make_sandbox(std::string_view backend, const Options& options = {});

}  // namespace ap::sandbox
