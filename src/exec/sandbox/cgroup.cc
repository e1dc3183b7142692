#include "exec/sandbox/cgroup.h"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

namespace ap::sandbox {
namespace {

struct Hierarchy {
  std::vector<std::string> controllers;  // v1: "memory", "cpu", ...; v2: empty
  std::string dir;                       // the server's own cgroup in it
};

struct Layout {
  bool v2 = false;
  std::vector<Hierarchy> v1;  // memory, pids, cpu, cpuacct (those found)
  std::string v2_dir;
  std::string error;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) out.push_back(cur);
  return out;
}

// A cgroup file, whole ("" when it cannot be read). Plain system calls: stats are read on every
// run (and by the watchdog), and a stream costs more than the read.
std::string read_file(const std::string& path) {
  std::string out;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

bool write_file(const std::string& path, const std::string& value, int* err = nullptr) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    if (err) *err = errno;
    return false;
  }
  ssize_t n = ::write(fd, value.data(), value.size());
  if (err) *err = n < 0 ? errno : EIO;  // a short write is a failure too
  ::close(fd);
  return n == static_cast<ssize_t>(value.size());
}

// The server's own path in each hierarchy (/proc/self/cgroup) joined to where that hierarchy
// is mounted (/proc/self/mountinfo), minus the mount's own root (a container's cgroup view).
Layout find_layout() {
  Layout l;
  std::map<std::string, std::string> own;  // "memory" / "" (v2) -> path
  {
    std::ifstream in("/proc/self/cgroup");
    std::string line;
    while (std::getline(in, line)) {
      auto a = line.find(':'), b = line.find(':', a + 1);
      if (a == std::string::npos || b == std::string::npos) continue;
      const std::string ctrls = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
      if (ctrls.empty()) own[""] = path;
      for (const auto& c : split(ctrls, ',')) own[c] = path;
    }
  }
  struct Mount {
    std::string root, point, type;
    std::vector<std::string> opts;
  };
  std::vector<Mount> mounts;
  {
    std::ifstream in("/proc/self/mountinfo");
    std::string line;
    while (std::getline(in, line)) {
      auto dash = line.find(" - ");
      if (dash == std::string::npos) continue;
      auto pre = split(line.substr(0, dash), ' ');
      auto post = split(line.substr(dash + 3), ' ');
      if (pre.size() < 5 || post.size() < 3) continue;
      if (post[0] != "cgroup" && post[0] != "cgroup2") continue;
      mounts.push_back({pre[3], pre[4], post[0], split(post[2], ',')});
    }
  }
  auto join = [](const Mount& m, const std::string& path) -> std::string {
    std::string rel = path;
    if (m.root != "/" && rel.starts_with(m.root)) rel = rel.substr(m.root.size());
    if (rel.empty() || rel == "/") return m.point;
    return m.point + rel;
  };
  // Pure v2: the unified hierarchy is at /sys/fs/cgroup and has controllers.
  if (::access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0) {
    for (const auto& m : mounts)
      if (m.type == "cgroup2" && m.point == "/sys/fs/cgroup" && own.count("")) {
        l.v2 = true;
        l.v2_dir = join(m, own[""]);
        return l;
      }
  }
  for (const char* want : {"memory", "pids", "cpu", "cpuacct"}) {
    bool have = false;
    for (const auto& h : l.v1)
      for (const auto& c : h.controllers) have = have || c == want;
    if (have) continue;
    for (const auto& m : mounts) {
      if (m.type != "cgroup") continue;
      std::vector<std::string> ctrls;
      for (const auto& o : m.opts)
        if (o == "memory" || o == "pids" || o == "cpu" || o == "cpuacct") ctrls.push_back(o);
      if (std::find(ctrls.begin(), ctrls.end(), want) == ctrls.end() || !own.count(want)) continue;
      l.v1.push_back({ctrls, join(m, own[want])});
      break;
    }
  }
  if (l.v1.empty()) l.error = "no cgroup hierarchy with the memory, pids or cpu controller is mounted";
  return l;
}

const Layout& layout_once() {
  static const Layout l = find_layout();
  return l;
}

bool has(const Hierarchy& h, const char* c) { return std::find(h.controllers.begin(), h.controllers.end(), c) != h.controllers.end(); }

// The value of `key` in a "key value" per line text (0 when absent).
int64_t value_of(const std::string& text, std::string_view key) {
  for (size_t at = 0; at < text.size();) {
    const size_t end = std::min(text.find('\n', at), text.size());
    const std::string_view line(text.data() + at, end - at);
    if (line.size() > key.size() && line.starts_with(key) && line[key.size()] == ' ')
      return std::atoll(std::string(line.substr(key.size() + 1)).c_str());
    at = end + 1;
  }
  return 0;
}

// The number in a one-number file, or the value of `key` in a "key value" per line file; -1
// when the file cannot be read.
int64_t read_int(const std::string& path, std::string_view key = "") {
  const std::string text = read_file(path);
  if (text.empty()) return -1;
  return key.empty() ? std::atoll(text.c_str()) : value_of(text, key);
}

// v2 lets a cgroup hand controllers to its children only while it holds no processes itself
// (but for the root). The server's cgroup holds the server: the first time, the server's
// processes move into a leaf of their own ("<own>/agentplane-server"), and the server's cgroup
// then delegates memory, pids and cpu to its children (the sandboxes' parent among them).
Status delegate_v2(const std::string& own) {
  static std::mutex mu;
  static bool done = false;
  std::lock_guard lock(mu);
  if (done) return ok_status();
  int err = 0;
  if (!write_file(own + "/cgroup.subtree_control", "+memory +pids +cpu", &err)) {
    if (err != EBUSY)
      return Error::unavailable("cgroup " + own + ": cannot enable the memory, pids and cpu controllers: " + std::strerror(err));
    const std::string leaf = own + "/agentplane-server";
    if (::mkdir(leaf.c_str(), 0755) != 0 && errno != EEXIST)
      return Error::unavailable("cannot create cgroup " + leaf + ": " + std::strerror(errno));
    std::istringstream in(read_file(own + "/cgroup.procs"));
    pid_t pid;
    while (in >> pid) write_file(leaf + "/cgroup.procs", std::to_string(pid));
    if (!write_file(own + "/cgroup.subtree_control", "+memory +pids +cpu", &err))
      return Error::unavailable("cgroup " + own + ": cannot enable the memory, pids and cpu controllers: " + std::strerror(err));
  }
  done = true;
  return ok_status();
}

}  // namespace

Result<std::string> Cgroup::layout() {
  const Layout& l = layout_once();
  if (l.v2) return "v2 at " + l.v2_dir;
  if (l.v1.empty()) return Error::unavailable("cgroups: " + l.error);
  std::string out = "v1:";
  for (const auto& h : l.v1) {
    std::string names;
    for (const auto& c : h.controllers) names += (names.empty() ? "" : ",") + c;
    out += " " + names + " at " + h.dir;
  }
  return out;
}

Result<Cgroup> Cgroup::create(const std::string& parent, const std::string& name, const CgroupLimits& limits) {
  const Layout& l = layout_once();
  Cgroup cg;
  auto make = [](const std::string& base, const std::string& parent_name, const std::string& leaf) -> Result<std::string> {
    const std::string p = base + "/" + parent_name;
    if (::mkdir(p.c_str(), 0755) != 0 && errno != EEXIST)
      return Error::unavailable("cannot create cgroup " + p + ": " + std::strerror(errno));
    const std::string d = p + "/" + leaf;
    if (::mkdir(d.c_str(), 0755) != 0)
      return Error::unavailable("cannot create cgroup " + d + ": " + std::strerror(errno));
    return d;
  };
  if (l.v2) {
    cg.v2_ = true;
    AP_RETURN_IF_ERROR(delegate_v2(l.v2_dir));
    const std::string p = l.v2_dir + "/" + parent;
    AP_ASSIGN_OR_RETURN(auto d, make(l.v2_dir, parent, name));
    cg.dirs_.push_back(d);
    // Our parent holds no processes (it is made for sandboxes only): it may delegate.
    int err = 0;
    if (!write_file(p + "/cgroup.subtree_control", "+memory +pids +cpu", &err))
      return Error::unavailable("cgroup " + p + ": cannot enable the memory, pids and cpu controllers: " + std::strerror(err));
    // The controllers were enabled after the leaf was made: they apply to it from now on.
    if (limits.memory_bytes > 0) {
      if (!write_file(d + "/memory.max", std::to_string(limits.memory_bytes), &err))
        return Error::unavailable("cgroup memory.max: " + std::string(std::strerror(err)));
      write_file(d + "/memory.swap.max", "0");
      write_file(d + "/memory.oom.group", "1");
    }
    if (limits.pids > 0 && !write_file(d + "/pids.max", std::to_string(limits.pids), &err))
      return Error::unavailable("cgroup pids.max: " + std::string(std::strerror(err)));
    if (limits.cpus > 0 && !write_file(d + "/cpu.max", std::to_string(static_cast<int64_t>(limits.cpus * 100000)) + " 100000", &err))
      return Error::unavailable("cgroup cpu.max: " + std::string(std::strerror(err)));
    return cg;
  }
  if (l.v1.empty()) return Error::unavailable("cgroups: " + l.error);
  for (const auto& h : l.v1) {
    AP_ASSIGN_OR_RETURN(auto d, make(h.dir, parent, name));
    cg.dirs_.push_back(d);
    int err = 0;
    if (has(h, "memory") && limits.memory_bytes > 0) {
      if (!write_file(d + "/memory.limit_in_bytes", std::to_string(limits.memory_bytes), &err))
        return Error::unavailable("cgroup memory.limit_in_bytes: " + std::string(std::strerror(err)));
      write_file(d + "/memory.memsw.limit_in_bytes", std::to_string(limits.memory_bytes));  // no swap (if accounted)
    }
    if (has(h, "pids") && limits.pids > 0 && !write_file(d + "/pids.max", std::to_string(limits.pids), &err))
      return Error::unavailable("cgroup pids.max: " + std::string(std::strerror(err)));
    if (has(h, "cpu") && limits.cpus > 0 &&
        (!write_file(d + "/cpu.cfs_period_us", "100000", &err) ||
         !write_file(d + "/cpu.cfs_quota_us", std::to_string(static_cast<int64_t>(limits.cpus * 100000)), &err)))
      return Error::unavailable("cgroup cpu.cfs_quota_us: " + std::string(std::strerror(err)));
  }
  return cg;
}

Cgroup::~Cgroup() {
  for (int i = 0; i < 50 && !remove(); ++i) ::usleep(2000);
}

Status Cgroup::add(pid_t pid) const {
  for (const auto& d : dirs_) {
    int err = 0;
    if (!write_file(d + "/cgroup.procs", std::to_string(pid), &err))
      return Error::unavailable("cannot move the sandbox into cgroup " + d + ": " + std::strerror(err));
  }
  return ok_status();
}

CgroupStats Cgroup::stats() const {
  CgroupStats s;
  for (const auto& d : dirs_) {
    if (v2_) {
      s.cpu_s = static_cast<double>(std::max<int64_t>(0, read_int(d + "/cpu.stat", "usage_usec"))) / 1e6;
      s.peak_memory_bytes = std::max<int64_t>(0, read_int(d + "/memory.peak"));
      s.oom_kills = std::max<int64_t>(0, read_int(d + "/memory.events", "oom_kill"));
      continue;
    }
    // v1: each hierarchy has the files of its own controllers (the others cannot be read).
    if (const int64_t ns = read_int(d + "/cpuacct.usage"); ns >= 0) s.cpu_s = static_cast<double>(ns) / 1e9;
    if (const int64_t peak = read_int(d + "/memory.max_usage_in_bytes"); peak >= 0) {
      s.peak_memory_bytes = peak;
      const std::string oom = read_file(d + "/memory.oom_control");
      s.oom_kills = value_of(oom, "oom_kill");
      if (s.oom_kills == 0 && value_of(oom, "under_oom") > 0 && read_int(d + "/memory.failcnt") > 0) s.oom_kills = 1;
    }
  }
  return s;
}

namespace {

// The cgroups beneath `dir` (a backend such as runsc may make its own there), deepest first.
std::vector<std::string> descendants(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec); !ec && it != std::filesystem::recursive_directory_iterator();
       it.increment(ec))
    if (it->is_directory(ec)) out.push_back(it->path().string());
  std::sort(out.begin(), out.end(), [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  return out;
}

}  // namespace

int Cgroup::sweep(const std::string& parent, int min_age_s) {
  const Layout& l = layout_once();
  std::vector<std::string> roots;
  if (l.v2) roots.push_back(l.v2_dir + "/" + parent);
  for (const auto& h : l.v1) roots.push_back(h.dir + "/" + parent);
  std::set<std::string> removed;  // by name (one per hierarchy on v1)
  const auto now = std::filesystem::file_time_type::clock::now();
  for (const auto& root : roots) {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(root, ec)) {
      const std::string name = e.path().filename().string();
      if (!e.is_directory(ec) || !(name.starts_with("run-") || name.starts_with("warm-") || name.starts_with("gv-"))) continue;
      const auto mtime = std::filesystem::last_write_time(e.path(), ec);
      if (ec || now - mtime < std::chrono::seconds(min_age_s)) continue;
      auto all = descendants(e.path().string());
      all.push_back(e.path().string());
      bool empty = true;
      for (const auto& g : all) empty = empty && read_file(g + "/cgroup.procs").find_first_not_of(" \n") == std::string::npos;
      if (!empty) continue;  // a live sandbox (this server's or another's)
      bool gone = true;
      for (const auto& g : all) gone = (::rmdir(g.c_str()) == 0 || errno == ENOENT) && gone;
      if (gone) removed.insert(name);
    }
  }
  return static_cast<int>(removed.size());
}

void Cgroup::reset_peak() const {
  for (const auto& d : dirs_) {
    write_file(d + (v2_ ? "/memory.peak" : "/memory.max_usage_in_bytes"), "0");
    if (!v2_) write_file(d + "/memory.failcnt", "0");
  }
}

void Cgroup::kill_all() const {
  for (const auto& d : dirs_) {
    if (v2_ && write_file(d + "/cgroup.kill", "1")) return;  // the whole subtree
    auto all = descendants(d);
    all.push_back(d);
    for (const auto& g : all) {
      std::istringstream in(read_file(g + "/cgroup.procs"));
      pid_t pid;
      while (in >> pid) ::kill(pid, SIGKILL);
    }
  }
}

bool Cgroup::remove() {
  for (auto it = dirs_.begin(); it != dirs_.end();) {
    for (const auto& child : descendants(*it)) ::rmdir(child.c_str());
    if (::rmdir(it->c_str()) == 0 || errno == ENOENT) {
      it = dirs_.erase(it);
    } else {
      kill_all();
      ++it;
    }
  }
  return dirs_.empty();
}

}  // namespace ap::sandbox
