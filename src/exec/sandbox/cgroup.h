// A cgroup per sandbox run, beneath the cgroup the server itself is in (which may already be a
// container's), never at a hierarchy's root. Works on cgroup v2 (one unified hierarchy) and on
// v1 and hybrid hosts (memory, pids, cpu and cpuacct each in the hierarchy that has them).
#pragma once

#include <cstdint>
#include <string>
#include <sys/types.h>
#include <vector>

#include "common/result.h"

namespace ap::sandbox {

struct CgroupLimits {
  int64_t memory_bytes = 0;  // 0: none
  int64_t pids = 0;
  double cpus = 0;
};

struct CgroupStats {
  double cpu_s = 0;
  int64_t peak_memory_bytes = 0;
  int64_t oom_kills = 0;
};

class Cgroup {
 public:
  // Where sandbox cgroups go on this host, found once: "v2 at ..." or "v1: memory at ..., ...".
  static Result<std::string> layout();
  // Removes what a crashed server left beneath `<parent>`: cgroups of runs (run-*, warm-*, gv-*)
  // that hold no process and are older than `min_age_s` (not one a live server is filling).
  // Returns how many were removed. Best effort: errors are skipped.
  static int sweep(const std::string& parent, int min_age_s = 60);
  // A new cgroup `<parent>/<name>` with the limits set. Unavailable when none can be made.
  static Result<Cgroup> create(const std::string& parent, const std::string& name, const CgroupLimits& limits);

  Cgroup(Cgroup&& o) noexcept : dirs_(std::move(o.dirs_)), v2_(o.v2_) { o.dirs_.clear(); }
  Cgroup& operator=(Cgroup&&) = delete;
  Cgroup(const Cgroup&) = delete;
  ~Cgroup();

  Status add(pid_t pid) const;
  // Each hierarchy's directory (a child can move itself in by writing "0" to <dir>/cgroup.procs).
  const std::vector<std::string>& dirs() const { return dirs_; }
  CgroupStats stats() const;
  // Starts peak memory over (v1: max_usage_in_bytes; v2: memory.peak where the kernel allows).
  void reset_peak() const;
  // Every process in it, killed (v2: cgroup.kill; v1: SIGKILL to each listed).
  void kill_all() const;
  // Removes the directories; a cgroup may be busy for a moment after its last process exits:
  // true when done (call again later otherwise).
  bool remove();

 private:
  Cgroup() = default;
  std::vector<std::string> dirs_;  // v2: one; v1: one per controller hierarchy
  bool v2_ = false;
};

}  // namespace ap::sandbox
