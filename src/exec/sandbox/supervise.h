// What every backend's parent side does while a sandbox runs: feed stdin, read stdout and stderr
// (capped: past the cap the sandbox is killed at once and the rest discarded, so the server's
// memory stays bounded), read the backend's report pipe, wait for the sandbox's exit, and kill
// it at the wall-clock deadline or when its cgroup has used its CPU time. Internal.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <functional>
#include <string>
#include <utility>

#include "common/result.h"
#include "exec/sandbox/cgroup.h"
#include "exec/sandbox/sandbox.h"

namespace ap::sandbox {

struct Supervision {
  int stdin_fd = -1, stdout_fd = -1, stderr_fd = -1;  // the parent's ends (taken: closed at the end)
  int report_fd = -1;                                 // optional: read to EOF into `report`
  size_t report_cap = 1 << 20;                        // more than this on it: killed
  int exit_fd = -1;                                   // a pidfd: readable when the process exits
  // The report's EOF ends the run as well as the exit does (native: the init writes its report
  // once everything else is reaped, then exits; its own exit need not be waited for here).
  bool report_ends_run = false;
  std::function<void()> kill;                         // kills the whole sandbox
  const Cgroup* cgroup = nullptr;                     // for the CPU-time limit
  double cpu_base_s = 0;                              // the cgroup's CPU time before this run
  std::chrono::steady_clock::time_point start;
};

struct Supervised {
  std::string stdout_data, stderr_data, report;
  bool stdout_capped = false, stderr_capped = false, timed_out = false, cpu_killed = false;
  bool report_complete = false;  // read to its EOF (not cut at the cap)
};

boost::asio::awaitable<Supervised> supervise(Supervision s, const Spec& spec, const OnOutput& on_output);

// Fills a result's output, marks and outcome for the parent's own kills (timeout, CPU, output);
// false when none of those happened (the backend's report decides).
bool apply_kills(const Supervised& s, const Spec& spec, RunResult& r);

// A pipe whose ends close with it unless taken.
struct Pipe {
  int fds[2] = {-1, -1};
  Pipe() = default;
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  ~Pipe();
  Status open();  // pipe2(O_CLOEXEC)
  int take(int i) { return std::exchange(fds[i], -1); }
};

// Shared checks of a spec: workspace paths, environment (PATH, HOME, LANG, TMPDIR defaults).
Status valid_rel_path(const std::string& path);
// In a child after clone/fork, before execve: an empty signal mask and default dispositions
// (raw system calls only).
void reset_signals();
Result<std::vector<std::string>> environment(const Spec& spec, std::string* path_var);
std::string random_hex(size_t n);

}  // namespace ap::sandbox
