#include "exec/sandbox/sandbox.h"

#include <mutex>

#include "exec/sandbox/cgroup.h"

#include <unistd.h>

#include "exec/sandbox/gvisor.h"
#include "exec/sandbox/native.h"

namespace ap::sandbox {

Status Limits::validate() const {
  if (wall.count() <= 0 || wall > std::chrono::hours(24)) return Error::invalid_argument("limits.wall must be in (0, 24 h]");
  if (cpu.count() <= 0) return Error::invalid_argument("limits.cpu must be positive");
  if (memory_bytes < (4ll << 20)) return Error::invalid_argument("limits.memory_bytes must be at least 4 MiB");
  if (pids < 1 || pids > 100000) return Error::invalid_argument("limits.pids must be in [1, 100000]");
  if (disk_bytes < 4096) return Error::invalid_argument("limits.disk_bytes must be at least 4 KiB");
  if (output_bytes < 1) return Error::invalid_argument("limits.output_bytes must be positive");
  if (open_files < 8 || open_files > 1 << 20) return Error::invalid_argument("limits.open_files must be in [8, 1048576]");
  if (!(cpus >= 0.01 && cpus <= 1024)) return Error::invalid_argument("limits.cpus must be in [0.01, 1024]");
  return ok_status();
}

std::string_view outcome_name(Outcome o) {
  switch (o) {
    case Outcome::kExited: return "exited";
    case Outcome::kSignaled: return "signaled";
    case Outcome::kTimedOut: return "timed_out";
    case Outcome::kCpuLimit: return "cpu_limit";
    case Outcome::kOomKilled: return "oom_killed";
    case Outcome::kOutputCapped: return "output_capped";
    case Outcome::kCancelled: return "cancelled";
  }
  return "unknown";
}

std::string RunResult::summary() const {
  switch (outcome) {
    case Outcome::kExited: return "exited with " + std::to_string(exit_code);
    case Outcome::kSignaled: return "killed by signal " + std::to_string(signal);
    case Outcome::kTimedOut: return "killed: wall-clock limit";
    case Outcome::kCpuLimit: return "killed: CPU-time limit";
    case Outcome::kOomKilled: return "killed: memory limit";
    case Outcome::kOutputCapped: return "killed: output limit";
    case Outcome::kCancelled: return "cancelled";
  }
  return "unknown";
}

Probe probe(std::string_view backend, const Options& options) {
  if (backend == "native") return probe_native();
  if (backend == "microvm") {
    Probe p;
    p.detail = ::access("/dev/kvm", R_OK | W_OK) == 0
                   ? "/dev/kvm is present, but agentplane has no microVM backend yet"
                   : "not available on this host: no /dev/kvm (a microVM needs KVM; nested virtualisation is off here)";
    return p;
  }
  if (backend == "gvisor") return probe_gvisor(options);
  return Probe{false, "unknown backend '" + std::string(backend) + "' (known: native, gvisor, microvm)"};
}

Result<std::unique_ptr<Sandbox>> make_sandbox(std::string_view backend, const Options& options) {
  Probe p = probe(backend, options);
  if (!p.available) return Error::failed_precondition("sandbox backend '" + std::string(backend) + "': " + p.detail);
  // Once per process: the run cgroups a crashed server left behind (empty ones only).
  static std::once_flag swept;
  std::call_once(swept, [&] { Cgroup::sweep(options.cgroup_name); });
  if (backend == "native") return make_native_sandbox(options);
  if (backend == "gvisor") return make_gvisor_sandbox(options);
  return Error::failed_precondition("sandbox backend '" + std::string(backend) + "' is not available");
}

}  // namespace ap::sandbox
