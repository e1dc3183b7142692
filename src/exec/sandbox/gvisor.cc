// runsc runs as root here (its rootless mode cannot apply limits), on the platform given
// (ptrace on these machines; systrap on a current gVisor in production). Per run: an OCI bundle
// in a private folder (a read-only root holding only mount points, /usr bound read-only, a
// minimal /etc, the workspace as a host folder, /tmp as gVisor's own tmpfs), and a cgroup of
// ours that runsc and everything it starts (gofer, sandbox) are put in before runsc execs, so
// that memory, PIDs and CPU are bounded and a kill of the cgroup ends the lot.
#include "exec/sandbox/gvisor.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <utility>
#include <nlohmann/json.hpp>

#include "common/thread_priority.h"
#include "exec/sandbox/cgroup.h"
#include "exec/sandbox/egress_proxy.h"
#include "exec/sandbox/native.h"
#include "exec/sandbox/seccomp.h"
#include "exec/sandbox/supervise.h"
#include "exec/sandbox/warm_sets.h"

namespace ap::sandbox {
namespace asio = boost::asio;
namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr int64_t kOverheadBytes = 256ll << 20;  // the sentry and gofer, in the same cgroup
constexpr int64_t kOverheadPids = 448;  // the ptrace platform: a host stub per app thread, plus the Go runtimes
constexpr int64_t kMaxReadBack = 8ll << 20;

std::string find_runsc(const std::string& name) {
  if (name.find('/') != std::string::npos) return ::access(name.c_str(), X_OK) == 0 ? name : "";
  for (const char* dir : {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}) {
    const std::string p = std::string(dir) + "/" + name;
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

std::string state_root(const Options& o) {
  if (!o.state_dir.empty()) return o.state_dir;
  return ::geteuid() == 0 ? "/run/agentplane-gvisor" : "/tmp/agentplane-gvisor-" + std::to_string(::geteuid());
}

bool write_text(const fs::path& p, const std::string& text, int mode) {
  int fd = ::open(p.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) return false;
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  ::close(fd);
  return off == text.size();
}

// A regular file beneath `dir`, never through a symlink: what the code left in its workspace.
std::optional<std::string> read_beneath(int dir_fd, const std::string& rel) {
  // O_PATH first: nothing is opened for reading (a device node's open can act) unless it is a
  // regular file, and then that very inode is reopened.
  struct open_how how{};
  how.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  int path_fd = static_cast<int>(::syscall(SYS_openat2, dir_fd, rel.c_str(), &how, sizeof how));
  if (path_fd < 0) return std::nullopt;
  struct stat st{};
  if (::fstat(path_fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > kMaxReadBack) {
    ::close(path_fd);
    return std::nullopt;
  }
  int fd = ::open(("/proc/self/fd/" + std::to_string(path_fd)).c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  ::close(path_fd);
  if (fd < 0) return std::nullopt;
  std::optional<std::string> out;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size <= kMaxReadBack) {
    std::string data(static_cast<size_t>(st.st_size), '\0');
    ssize_t n = ::pread(fd, data.data(), data.size(), 0);
    if (n >= 0) {
      data.resize(static_cast<size_t>(n));
      out = std::move(data);
    }
  }
  ::close(fd);
  return out;
}

// Starts `argv` with the given stdio, first moved into `cgroup_dirs` (by the child itself,
// before exec: nothing it starts escapes the cgroup). Only system calls after the clone.
struct Spawned {
  pid_t pid = -1;
  int pidfd = -1;
};
Result<Spawned> spawn(const std::vector<std::string>& args, int in, int out, int err, const std::vector<std::string>& cgroup_procs) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  static char path_env[] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
  char* envp[] = {path_env, nullptr};
  const int nice = process_nice();
  pid_t pid = static_cast<pid_t>(::syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0));
  if (pid < 0) return Error::unavailable(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    ::setpriority(PRIO_PROCESS, 0, nice);  // not the raised priority of the thread that started us
    reset_signals();
    for (const auto& procs : cgroup_procs) {
      int fd = ::open(procs.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0 || ::write(fd, "0", 1) != 1) ::_exit(126);
      ::close(fd);
    }
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    ::syscall(SYS_close_range, 3u, ~0u, 0u);
    ::setsid();
    ::execve(argv[0], argv.data(), envp);
    ::_exit(127);
  }
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return Error::unavailable(std::string("pidfd_open: ") + std::strerror(errno));
  }
  return Spawned{pid, pidfd};
}

// Runs a runsc housekeeping command to its end (output discarded), without blocking the thread.
asio::awaitable<int> run_quietly(const std::vector<std::string>& args) {
  int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  auto s = spawn(args, null_fd, null_fd, null_fd, {});
  ::close(null_fd);
  if (!s) co_return -1;
  asio::posix::stream_descriptor d(co_await asio::this_coro::executor, s->pidfd);
  co_await d.async_wait(asio::posix::stream_descriptor::wait_read, kTuple);
  int st = 0;
  ::waitpid(s->pid, &st, 0);
  co_return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}


// The same denials as the native backend's filter, as an OCI profile that the sentry applies to
// the code (gVisor implements seccomp itself). Also: no device nodes made in its file systems.
Json oci_seccomp() {
  Json eperm = Json::array(), enosys = Json::array(), kill = Json::array();
  for (const auto& r : deny_rules()) {
    // clone3: Debian's runsc ignores errnoRet (every ERRNO is EPERM), and glibc falls back to clone
    // only on ENOSYS; the sentry's own clone3 answers that already.
    if (std::string_view(r.name) == "clone3") continue;
    (r.action == DenyRule::kEperm ? eperm : r.action == DenyRule::kEnosys ? enosys : kill).push_back(r.name);
  }
  Json rules = Json::array({Json{{"names", eperm}, {"action", "SCMP_ACT_ERRNO"}, {"errnoRet", EPERM}},
                            Json{{"names", enosys}, {"action", "SCMP_ACT_ERRNO"}, {"errnoRet", ENOSYS}},
                            Json{{"names", kill}, {"action", "SCMP_ACT_KILL"}}});
  for (unsigned long f : clone_namespace_flags())
    rules.push_back(Json{{"names", {"clone"}}, {"action", "SCMP_ACT_ERRNO"}, {"errnoRet", EPERM},
                         {"args", {{{"index", 0}, {"value", f}, {"valueTwo", f}, {"op", "SCMP_CMP_MASKED_EQ"}}}}});
  for (unsigned long type : {S_IFCHR, S_IFBLK}) {
    rules.push_back(Json{{"names", {"mknod"}}, {"action", "SCMP_ACT_ERRNO"}, {"errnoRet", EPERM},
                         {"args", {{{"index", 1}, {"value", S_IFMT}, {"valueTwo", type}, {"op", "SCMP_CMP_MASKED_EQ"}}}}});
    rules.push_back(Json{{"names", {"mknodat"}}, {"action", "SCMP_ACT_ERRNO"}, {"errnoRet", EPERM},
                         {"args", {{{"index", 2}, {"value", S_IFMT}, {"valueTwo", type}, {"op", "SCMP_CMP_MASKED_EQ"}}}}});
  }
  for (const char* sc : {"socket", "socketpair"}) {
    rules.push_back(Json{{"names", {sc}}, {"action", "SCMP_ACT_ERRNO"}, {"errnoRet", EAFNOSUPPORT},
                         {"args", {{{"index", 0}, {"value", kFirstDeniedFamily}, {"op", "SCMP_CMP_GE"}}}}});
    for (int af : denied_low_families())
      rules.push_back(Json{{"names", {sc}}, {"action", "SCMP_ACT_ERRNO"}, {"errnoRet", EAFNOSUPPORT},
                           {"args", {{{"index", 0}, {"value", af}, {"op", "SCMP_CMP_EQ"}}}}});
  }
  return Json{{"defaultAction", "SCMP_ACT_ALLOW"}, {"architectures", {"SCMP_ARCH_X86_64"}}, {"syscalls", rules}};
}

// The bundle folder, removed at the end (its workspace tmpfs unmounted first).
// The spec's files in the workspace, owned by the sandbox's user (uid 1000 inside and out:
// gVisor checks permissions itself; the bundle's folder is root's alone, 0700).
Status write_files(const fs::path& work, const Spec& spec) {
  std::error_code ec;
  int64_t total = 0;
  for (const auto& f : spec.files) {
    AP_RETURN_IF_ERROR(valid_rel_path(f.path));
    total += static_cast<int64_t>(f.content.size());
    if (total > spec.limits.disk_bytes) return Error::invalid_argument("the files are larger than the disk limit");
    if (f.mode < 0 || f.mode > 0777) return Error::invalid_argument("file mode must be within 0777");
    const fs::path p = work / f.path;
    fs::create_directories(p.parent_path(), ec);
    if (!write_text(p, f.content, f.mode)) return Error::unavailable("cannot write " + f.path + " into the workspace");
    ::chmod(p.c_str(), static_cast<mode_t>(f.mode));
  }
  for (auto it = fs::recursive_directory_iterator(work, ec); it != fs::recursive_directory_iterator(); it.increment(ec))
    (void)!::lchown(it->path().c_str(), 1000, 1000);
  (void)!::chown(work.c_str(), 1000, 1000);
  return ok_status();
}

// argv with its command looked up on the sandbox's PATH as the sandbox would (runsc needs the
// path). NotFound when it is not there.
Result<std::vector<std::string>> resolve_command(const Spec& spec, const std::string& path_var) {
  std::vector<std::string> args = spec.argv;
  if (args[0].find('/') != std::string::npos) return args;
  const std::string name = args[0];
  std::istringstream dirs(path_var);
  std::string d;
  while (std::getline(dirs, d, ':'))
    if (!d.empty() && d.front() == '/' && ::access((d + "/" + name).c_str(), X_OK) == 0 &&
        (d.rfind("/usr/", 0) == 0 || d == "/bin" || d == "/sbin"))
    {
      args[0] = d + "/" + name;
      return args;
    }
  return Error::not_found("cannot execute " + name + ": not found on the sandbox's PATH");
}

// A listening unix socket at `path` (0666 in a 0700 folder: only the sandbox's gofer reaches it).
Result<int> unix_listener(const fs::path& path) {
  int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.string().size() >= sizeof a.sun_path) return Error::unavailable("the egress socket's path is too long: " + path.string());
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  if (s < 0 || ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::chmod(path.c_str(), 0666) != 0 || ::listen(s, 64) != 0) {
    const int e = errno;
    if (s >= 0) ::close(s);
    return Error::unavailable("cannot listen for the sandbox's egress: " + std::string(std::strerror(e)));
  }
  return s;
}

// A bundle in use: an exclusive lock on `<bundle>/.lock`, held (fd open) for its whole life, so
// that another server's sweep leaves it alone.
struct BundleLock {
  int fd = -1;
  BundleLock() = default;
  explicit BundleLock(const fs::path& dir) {
    fd = ::open((dir / ".lock").c_str(), O_CREAT | O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0) ::flock(fd, LOCK_EX);
  }
  BundleLock(BundleLock&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
  BundleLock& operator=(BundleLock&& o) noexcept {
    std::swap(fd, o.fd);
    return *this;
  }
  ~BundleLock() {
    if (fd >= 0) ::close(fd);
  }
};

// Whether a bundle's lock is held (by a live server).
bool bundle_in_use(const fs::path& dir) {
  int fd = ::open((dir / ".lock").c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return false;
  const bool held = ::flock(fd, LOCK_EX | LOCK_NB) != 0;
  ::close(fd);
  return held;
}

// Runs `args` to its end and returns its stdout (a housekeeping command at start-up).
std::string capture(const std::vector<std::string>& args) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return "";
  int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  auto s = spawn(args, null_fd, p[1], null_fd, {});
  ::close(null_fd);
  ::close(p[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while (s && (n = ::read(p[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(p[0]);
  if (s) {
    ::waitpid(s->pid, nullptr, 0);
    ::close(s->pidfd);
  }
  return out;
}

}  // namespace

// What a killed server left in the state root (shared by the servers of a host): the bundles,
// their workspace tmpfs still mounted, of containers runsc no longer runs and older than
// `min_age`. Each is deleted from runsc's state, unmounted and removed; a running one is left.
int sweep_bundles(const std::string& root, const std::string& runsc, std::chrono::seconds min_age) {
  std::error_code ec;
  if (runsc.empty() || !fs::is_directory(root + "/bundles", ec)) return 0;
  std::set<std::string> running;
  const Json listed = Json::parse(capture({runsc, "--root", root + "/state", "list", "-format=json"}), nullptr, false);
  if (listed.is_array())
    for (const auto& c : listed)
      if (c.is_object() && c.value("status", "") == "running") running.insert(c.value("id", ""));
  int removed = 0;
  const auto now = fs::file_time_type::clock::now();
  for (const auto& e : fs::directory_iterator(root + "/bundles", ec)) {
    const std::string id = e.path().filename().string();
    if (!(id.starts_with("ap-") || id.starts_with("apw-")) || running.count(id) || bundle_in_use(e.path())) continue;
    const auto mtime = fs::last_write_time(e.path(), ec);
    if (ec || now - mtime < min_age) continue;
    (void)capture({runsc, "--root", root + "/state", "delete", "--force", id});
    ::umount2((e.path() / "work").c_str(), MNT_DETACH);
    fs::remove_all(e.path(), ec);
    if (!ec) ++removed;
  }
  return removed;
}

namespace {

struct RemoveOnExit {
  fs::path dir;
  ~RemoveOnExit() {
    ::umount2((dir / "work").c_str(), MNT_DETACH);
    std::error_code e;
    fs::remove_all(dir, e);
  }
};

// A started sandbox of the warm pool: its container runs a keeper (PID 1, reaping orphans)
// until a run execs into it.
struct Warm {
  std::string id;
  fs::path dir;
  std::unique_ptr<Cgroup> cg;
  std::string runsc, state;  // to delete its container
  BundleLock lock;           // the bundle is in use
  bool cleaned = false;      // destroyed already (asynchronously)
  Warm() = default;
  Warm(const Warm&) = delete;
  Warm& operator=(const Warm&) = delete;
  // Never leaked, even when dropped unfinished (a shutdown destroys pending coroutines): blocks
  // for runsc's delete (~50 ms) when it was not cleaned asynchronously before.
  ~Warm();
};

// The classification both paths share: runsc's (or runsc exec's) status, the cgroup's numbers.
void classify(int wstatus, const CgroupStats& stats, const Spec& spec, RunResult& r) {
  const int code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
  // The kernel's OOM killer in our cgroup, or the sentry's own (it kills the code with SIGKILL
  // when the cgroup is full: peak usage at the limit).
  const bool oom = stats.oom_kills > 0 || (code == 128 + SIGKILL && stats.peak_memory_bytes >= spec.limits.memory_bytes);
  if (oom) {
    r.outcome = Outcome::kOomKilled;
    r.signal = SIGKILL;
  } else if (code > 128 && code < 128 + 65) {  // runsc reports a signal as 128 + its number
    r.outcome = code - 128 == SIGXCPU ? Outcome::kCpuLimit : Outcome::kSignaled;
    r.signal = code - 128;
  } else {
    r.outcome = Outcome::kExited;
    r.exit_code = code;
  }
}

void read_back_files(const fs::path& work, const Spec& spec, RunResult& r) {
  int work_fd = ::open(work.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (work_fd < 0) return;
  for (const auto& f : spec.read_back)
    if (auto data = read_beneath(work_fd, f)) r.files[f] = std::move(*data);
  ::close(work_fd);
}

class GvisorSandbox final : public Sandbox {
 public:
  GvisorSandbox(Options o, std::string runsc) : o_(std::move(o)), runsc_(std::move(runsc)), root_(state_root(o_)) {
    ::signal(SIGPIPE, SIG_IGN);
    sweep_bundles(root_, runsc_, std::chrono::seconds(60));
  }
  ~GvisorSandbox() override;
  std::string name() const override { return "gvisor"; }
  asio::awaitable<Result<RunResult>> run(Spec spec, OnOutput on_output) override;

 private:
  Result<Json> bundle(const Spec& spec, const fs::path& dir);
  std::vector<std::string> runsc(std::initializer_list<std::string> args) const;
  static std::string pool_key(const Spec& spec);
  asio::awaitable<Result<std::unique_ptr<Warm>>> start_warm(Spec shape);
  asio::awaitable<void> refill(std::string key, Spec shape);
  asio::awaitable<Result<RunResult>> run_warm(std::unique_ptr<Warm> w, std::string key, Spec spec, OnOutput on_output);
  asio::awaitable<bool> reset(Warm& w);
  asio::awaitable<void> recycle(std::unique_ptr<Warm> w, std::string key, bool reusable);
  asio::awaitable<void> destroy(std::unique_ptr<Warm> w);

  Options o_;
  std::string runsc_, root_;
  std::mutex mu_;
  WarmSets<std::vector<std::unique_ptr<Warm>>> sets_;  // tenant|limits -> ready, starting
};

std::vector<std::string> GvisorSandbox::runsc(std::initializer_list<std::string> args) const {
  std::vector<std::string> v = {runsc_, "--root", root_ + "/state", "--platform", o_.runsc_platform, "--network", "none",
                                "--oci-seccomp"};
  if (!o_.runsc_debug_dir.empty()) {  // runsc's own logs, for operators chasing a runsc problem
    v.push_back("--debug");
    v.push_back("--debug-log=" + o_.runsc_debug_dir + "/");
  }
  v.insert(v.end(), args.begin(), args.end());
  return v;
}

// Warm sandboxes are shared by runs of one tenant with the same limits (a sandbox's cgroup and
// workspace size are fixed when it starts).
std::string GvisorSandbox::pool_key(const Spec& spec) {
  const Limits& l = spec.limits;
  return spec.tenant + "|" + std::to_string(l.memory_bytes) + "|" + std::to_string(l.pids) + "|" +
         std::to_string(l.disk_bytes) + "|" + std::to_string(l.open_files) + "|" + std::to_string(l.cpus) + "|" +
         std::to_string(l.cpu.count());
}

asio::awaitable<Result<std::unique_ptr<Warm>>> GvisorSandbox::start_warm(Spec shape) {
  auto w = std::make_unique<Warm>();
  w->id = "apw-" + random_hex(16);
  w->runsc = runsc_;
  w->state = root_ + "/state";
  w->dir = fs::path(root_) / "bundles" / w->id;
  std::error_code ec;
  fs::create_directories(w->dir.parent_path(), ec);
  if (!fs::create_directory(w->dir, ec)) co_return Error::unavailable("cannot make the bundle folder: " + ec.message());
  w->lock = BundleLock(w->dir);
  ::chmod(w->dir.c_str(), 0700);
  shape.argv = {"python3", "-c",
                "import os, time\nwhile True:\n  try:\n    os.waitpid(-1, 0)\n  except ChildProcessError:\n    time.sleep(0.05)"};
  shape.files.clear();
  auto config = bundle(shape, w->dir);
  if (!config) {
    co_return config.error();
  }
  {
    std::ofstream out(w->dir / "config.json");
    out << config->dump();
  }
  CgroupLimits cl{shape.limits.memory_bytes + kOverheadBytes, shape.limits.pids + kOverheadPids, shape.limits.cpus};
  auto cg = Cgroup::create(o_.cgroup_name, "gv-" + w->id, cl);
  if (!cg) {
    co_return cg.error();
  }
  w->cg = std::make_unique<Cgroup>(std::move(*cg));
  std::vector<std::string> procs;
  for (const auto& d : w->cg->dirs()) procs.push_back(d + "/cgroup.procs");
  const auto args = runsc({"run", "--detach", "--bundle", w->dir.string(), w->id});
  int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  auto child = spawn(args, null_fd, null_fd, null_fd, procs);
  ::close(null_fd);
  if (!child) {
    co_return child.error();
  }
  asio::posix::stream_descriptor d(co_await asio::this_coro::executor, child->pidfd);
  co_await d.async_wait(asio::posix::stream_descriptor::wait_read, kTuple);
  int st = 0;
  ::waitpid(child->pid, &st, 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    co_return Error::unavailable("runsc could not start a warm sandbox");
  }
  co_return w;
}

asio::awaitable<void> GvisorSandbox::refill(std::string key, Spec shape) {
  auto w = co_await start_warm(std::move(shape));
  std::unique_ptr<Warm> extra;
  {
    std::lock_guard lock(mu_);
    --sets_.starting[key];
    if (w && sets_.kept(key) && static_cast<int>(sets_.ready[key].size()) < o_.warm_pool) sets_.ready[key].push_back(std::move(*w));
    else if (w) extra = std::move(*w);
  }
  if (extra) co_await destroy(std::move(extra));
}

asio::awaitable<bool> GvisorSandbox::reset(Warm& w) {
  // Every process but the keeper (PID 1) killed, twice for one forked in between; /tmp and
  // /dev/shm emptied from inside; the workspace emptied from here.
  const auto args = runsc({"exec", "--user", "1000:1000", w.id, "/bin/sh", "-c",
                           "kill -9 -1 2>/dev/null; sleep 0.05; kill -9 -1 2>/dev/null; "
                           "rm -rf /tmp/* /tmp/.[!.]* /tmp/..?* /dev/shm/* /dev/shm/.[!.]* 2>/dev/null; exit 0"});
  if (co_await run_quietly(args) != 0) co_return false;
  std::error_code ec;
  for (auto& e : fs::directory_iterator(w.dir / "work", ec)) fs::remove_all(e.path(), ec);
  w.cg->reset_peak();
  co_return !ec;
}

asio::awaitable<void> GvisorSandbox::destroy(std::unique_ptr<Warm> w) {
  if (w->cg) w->cg->kill_all();
  const std::vector<std::string> del = {runsc_, "--root", root_ + "/state", "delete", "--force", w->id};
  (void)co_await run_quietly(del);
  for (int i = 0; i < 100 && w->cg && !w->cg->remove(); ++i) {
    asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(5));
    co_await t.async_wait(kTuple);
  }
  w->cleaned = true;
  RemoveOnExit gone{w->dir};
}

Warm::~Warm() {
  if (cleaned || id.empty()) return;
  if (cg) cg->kill_all();
  int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  const std::vector<std::string> del = {runsc, "--root", state, "delete", "--force", id};
  if (auto s = spawn(del, null_fd, null_fd, null_fd, {})) {
    ::waitpid(s->pid, nullptr, 0);
    ::close(s->pidfd);
  }
  ::close(null_fd);
  RemoveOnExit gone{dir};
  if (cg)
    for (int i = 0; i < 100 && !cg->remove(); ++i) ::usleep(5000);
}

GvisorSandbox::~GvisorSandbox() {
  std::lock_guard lock(mu_);
  sets_.ready.clear();  // each Warm deletes its container
}

asio::awaitable<Result<RunResult>> GvisorSandbox::run_warm(std::unique_ptr<Warm> w, std::string key, Spec spec,
                                                           OnOutput on_output) {
  const auto start = std::chrono::steady_clock::now();
  std::string path_var;
  auto env = environment(spec, &path_var);
  Status ready = env ? write_files(w->dir / "work", spec) : Status(env.error());
  if (!ready) {  // a bad spec: the sandbox is not kept (its workspace may hold part of the files)
    co_await destroy(std::move(w));
    co_return ready.error();
  }
  auto argv = resolve_command(spec, path_var);
  if (!argv) {
    RunResult r;
    r.exit_code = 127;
    r.warm = true;
    r.stderr_data = "agentplane sandbox: " + argv.error().message + "\n";
    asio::co_spawn(co_await asio::this_coro::executor, recycle(std::move(w), key, true), asio::detached);
    co_return r;
  }
  std::vector<std::string> args = runsc({"exec", "--user", "1000:1000", "--cwd", "/work"});
  for (const auto& e : *env) {
    args.push_back("--env");
    args.push_back(e);
  }
  args.push_back(w->id);
  args.insert(args.end(), argv->begin(), argv->end());
  Pipe in, out, err;
  Status piped = ok_status();
  for (Pipe* p : {&in, &out, &err})
    if (piped) piped = p->open();
  auto child = piped ? spawn(args, in.fds[0], out.fds[1], err.fds[1], {}) : Result<Spawned>(piped.error());
  if (!child) {
    co_await destroy(std::move(w));
    co_return child.error();
  }
  ::close(in.take(0));
  ::close(out.take(1));
  ::close(err.take(1));
  const double cpu_base = w->cg->stats().cpu_s;
  Supervision sv;
  sv.stdin_fd = in.take(1);
  sv.stdout_fd = out.take(0);
  sv.stderr_fd = err.take(0);
  sv.exit_fd = child->pidfd;
  const Cgroup* cgp = w->cg.get();
  const pid_t client = child->pid;
  sv.kill = [cgp, client] {  // the whole sandbox (it is not reused after a kill) and runsc exec
    cgp->kill_all();
    ::kill(client, SIGKILL);
  };
  sv.cgroup = cgp;
  sv.cpu_base_s = cpu_base;
  sv.start = start;
  Supervised got = co_await supervise(std::move(sv), spec, on_output);
  int wstatus = 0;
  ::kill(client, SIGKILL);  // (no-op once it has exited)
  ::waitpid(client, &wstatus, 0);
  const bool cancelled = (co_await asio::this_coro::cancellation_state).cancelled() != asio::cancellation_type::none;
  const CgroupStats stats = w->cg->stats();
  RunResult result;
  result.warm = true;
  result.usage.cpu_s = stats.cpu_s - cpu_base;
  result.usage.peak_memory_bytes = stats.peak_memory_bytes;
  result.usage.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const bool killed = apply_kills(got, spec, result);
  if (cancelled) {
    result.outcome = Outcome::kCancelled;
    result.signal = SIGKILL;
  } else if (!killed) {
    classify(wstatus, stats, spec, result);
  }
  read_back_files(w->dir / "work", spec, result);
  // After the answer, behind it: kept if it ended on its own and resets cleanly, else destroyed.
  const bool reusable = !killed && !cancelled && result.outcome != Outcome::kOomKilled;
  asio::co_spawn(co_await asio::this_coro::executor, recycle(std::move(w), key, reusable), asio::detached);
  co_return result;
}

asio::awaitable<void> GvisorSandbox::recycle(std::unique_ptr<Warm> w, std::string key, bool reusable) {
  if (reusable && co_await reset(*w)) {
    std::lock_guard lock(mu_);
    if (sets_.kept(key) && static_cast<int>(sets_.ready[key].size()) < o_.warm_pool) sets_.ready[key].push_back(std::move(w));
  }
  if (w) co_await destroy(std::move(w));
}

Result<Json> GvisorSandbox::bundle(const Spec& spec, const fs::path& dir) {
  std::error_code ec;
  const fs::path rootfs = dir / "rootfs", work = dir / "work";
  for (const char* d : {"usr", "proc", "dev", "tmp", "work", "etc", "run/agentplane"}) fs::create_directories(rootfs / d, ec);
  if (ec) return Error::unavailable("cannot make the bundle: " + ec.message());
  Json mounts = Json::array({Json{{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}},
                             Json{{"destination", "/usr"}, {"type", "bind"}, {"source", "/usr"}, {"options", {"rbind", "ro", "nosuid", "nodev"}}},
                             Json{{"destination", "/tmp"}, {"type", "tmpfs"}, {"source", "tmpfs"}, {"options", {"nosuid", "nodev"}}},
                             Json{{"destination", "/work"}, {"type", "bind"}, {"source", work.string()}, {"options", {"rbind", "rw", "nosuid", "nodev"}}}});
  for (const char* d : {"/bin", "/lib", "/lib64", "/sbin"}) {
    struct stat st{};
    if (::lstat(d, &st) != 0) continue;
    if (S_ISLNK(st.st_mode)) {
      fs::create_symlink(fs::read_symlink(d, ec), rootfs / (d + 1), ec);
    } else if (S_ISDIR(st.st_mode)) {
      fs::create_directories(rootfs / (d + 1), ec);
      mounts.push_back(Json{{"destination", d}, {"type", "bind"}, {"source", d}, {"options", {"rbind", "ro", "nosuid", "nodev"}}});
    }
  }
  if (!write_text(rootfs / "etc/passwd", "root:x:0:0:root:/:/usr/sbin/nologin\nsandbox:x:1000:1000:sandbox:/work:/bin/sh\n", 0644) ||
      !write_text(rootfs / "etc/group", "root:x:0:\nsandbox:x:1000:\n", 0644) ||
      !write_text(rootfs / "etc/hosts", "127.0.0.1 localhost sandbox\n::1 localhost\n", 0644) ||
      !write_text(rootfs / "etc/resolv.conf", "", 0644))
    return Error::unavailable("cannot write the bundle's /etc");
  fs::create_directories(work, ec);
  // The workspace is a tmpfs of the disk limit's size (and a bounded number of files), so the
  // code cannot fill the host's /run; where mounting is not allowed, a plain folder (per-file
  // size bound only).
  const std::string opts = "size=" + std::to_string(spec.limits.disk_bytes) + ",nr_inodes=65536,mode=0755,uid=1000,gid=1000";
  (void)::mount("tmpfs", work.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, opts.c_str());
  AP_RETURN_IF_ERROR(write_files(work, spec));
  std::string path_var;
  AP_ASSIGN_OR_RETURN(auto env, environment(spec, &path_var));
  AP_ASSIGN_OR_RETURN(auto args, resolve_command(spec, path_var));
  if (spec.network) {
    // Egress: the init's relay (in the bundle's egress folder, with the proxy's socket) listens
    // on the sandbox's loopback and becomes the command.
    fs::create_directories(dir / "egress", ec);
    const std::string_view relay = sandbox_init_program();
    if (ec || !write_text(dir / "egress" / "relay", std::string(relay), 0555)) return Error::unavailable("cannot write the egress relay");
    mounts.push_back(Json{{"destination", "/run/agentplane"}, {"type", "bind"}, {"source", (dir / "egress").string()},
                          {"options", {"rbind", "ro", "nosuid", "nodev"}}});
    args.insert(args.begin(), {"/run/agentplane/relay", "--forward", std::to_string(kEgressProxyPort), "/run/agentplane/proxy.sock", "--"});
  }
  const Limits& l = spec.limits;
  const uint64_t fsize = static_cast<uint64_t>(l.disk_bytes), nofile = static_cast<uint64_t>(l.open_files),
                 cpu = static_cast<uint64_t>((l.cpu.count() + 999) / 1000);
  Json config = {
      {"ociVersion", "1.0.0"},
      {"process",
       {{"terminal", false},
        {"user", {{"uid", 1000}, {"gid", 1000}}},
        {"args", args},
        {"env", env},
        {"cwd", "/work"},
        {"noNewPrivileges", true},
        {"capabilities", {{"bounding", Json::array()}, {"effective", Json::array()}, {"permitted", Json::array()},
                          {"inheritable", Json::array()}, {"ambient", Json::array()}}},
        {"rlimits", Json::array({Json{{"type", "RLIMIT_CORE"}, {"hard", 0}, {"soft", 0}},
                                 Json{{"type", "RLIMIT_FSIZE"}, {"hard", fsize}, {"soft", fsize}},
                                 Json{{"type", "RLIMIT_NOFILE"}, {"hard", nofile}, {"soft", nofile}},
                                 Json{{"type", "RLIMIT_CPU"}, {"hard", cpu + 1}, {"soft", cpu}}})}}},
      {"root", {{"path", rootfs.string()}, {"readonly", true}}},
      {"hostname", "sandbox"},
      {"mounts", mounts},
      {"linux",
       {{"namespaces", Json::array({Json{{"type", "pid"}}, Json{{"type", "network"}}, Json{{"type", "ipc"}},
                                    Json{{"type", "uts"}}, Json{{"type", "mount"}}})},
        // runsc moves its gofer and sandbox into a cgroup of its own; a relative path puts that
        // one beneath runsc's cgroup, which is ours (runsc is put in it before it starts): our
        // limits bound the sentry, the gofer and the code together. (Without a path, runsc
        // would make one at the hierarchy's root.)
        {"cgroupsPath", "sandbox"},
        {"seccomp", oci_seccomp()}}}};
  return config;
}

asio::awaitable<Result<RunResult>> GvisorSandbox::run(Spec spec, OnOutput on_output) {
  co_await asio::this_coro::throw_if_cancelled(false);
  if (spec.argv.empty() || spec.argv[0].empty()) co_return Error::invalid_argument("the command is empty");
  AP_CO_RETURN_IF_ERROR(spec.limits.validate());
  if (spec.network && !spec.egress_check) co_return Error::invalid_argument("network egress needs an egress check (the policy)");
  for (const auto& f : spec.read_back) AP_CO_RETURN_IF_ERROR(valid_rel_path(f));
  if (o_.warm_pool > 0 && !spec.tenant.empty() && !spec.network) {
    // A warm sandbox of this tenant and these limits, if one is ready; one more started behind.
    const std::string key = pool_key(spec);
    std::unique_ptr<Warm> w;
    bool start_one = false;
    std::vector<std::unique_ptr<Warm>> dropped;  // destroyed outside the lock
    {
      std::lock_guard lock(mu_);
      sets_.touch(key);
      auto& ready = sets_.ready[key];
      if (!ready.empty()) {
        w = std::move(ready.back());
        ready.pop_back();
      }
      // Bounded overall: tenants and limit sets come and go, the least recently used sets
      // make room (their sandboxes would otherwise hold the bound for good).
      if (static_cast<int>(ready.size()) + sets_.starting[key] < o_.warm_pool &&
          sets_.make_room(key, 1, std::max(o_.warm_pool * o_.warm_sets, 1), dropped) == 1) {
        ++sets_.starting[key];
        start_one = true;
      }
    }
    const auto ex = co_await asio::this_coro::executor;
    for (auto& d : dropped) asio::co_spawn(ex, destroy(std::move(d)), asio::detached);
    if (start_one) asio::co_spawn(ex, refill(key, spec), asio::detached);
    if (w) co_return co_await run_warm(std::move(w), key, std::move(spec), std::move(on_output));
  }
  const auto start = std::chrono::steady_clock::now();
  const std::string id = "ap-" + random_hex(16);
  std::error_code ec;
  fs::create_directories(root_ + "/bundles", ec);
  ::chmod(root_.c_str(), 0700);
  const fs::path dir = fs::path(root_) / "bundles" / id;
  if (!fs::create_directory(dir, ec)) co_return Error::unavailable("cannot make the bundle folder: " + ec.message());
  ::chmod(dir.c_str(), 0700);
  RemoveOnExit cleanup{dir};
  BundleLock in_use(dir);  // (released before the folder goes: declared after)
  auto config = bundle(spec, dir);
  if (!config && config.error().code == Code::kNotFound) {  // as a shell says it: exit 127
    RunResult r;
    r.exit_code = 127;
    r.stderr_data = "agentplane sandbox: " + config.error().message + "\n";
    co_return r;
  }
  if (!config) co_return config.error();
  {
    std::ofstream out(dir / "config.json");
    out << config->dump();
  }
  CgroupLimits cl{spec.limits.memory_bytes + kOverheadBytes, spec.limits.pids + kOverheadPids, spec.limits.cpus};
  AP_CO_ASSIGN_OR_RETURN(auto cg, Cgroup::create(o_.cgroup_name, "gv-" + id, cl));
  std::vector<std::string> procs;
  for (const auto& d : cg.dirs()) procs.push_back(d + "/cgroup.procs");
  std::shared_ptr<EgressProxy> proxy;
  if (spec.network) {  // the proxy's socket, in the folder the relay sees as /run/agentplane
    AP_CO_ASSIGN_OR_RETURN(int listener, unix_listener(dir / "egress" / "proxy.sock"));
    proxy = EgressProxy::start(co_await asio::this_coro::executor, listener, spec.egress_check);
  }
  Pipe in, out, err;
  for (Pipe* p : {&in, &out, &err}) AP_CO_RETURN_IF_ERROR(p->open());
  auto args = runsc({"run", "--bundle", dir.string(), id});
  if (spec.network) args.insert(args.begin() + 1, "--host-uds=open");  // the relay may connect to the proxy's socket
  auto child = spawn(args, in.fds[0], out.fds[1], err.fds[1], procs);
  if (!child) co_return child.error();
  ::close(in.take(0));
  ::close(out.take(1));
  ::close(err.take(1));

  Supervision sv;
  sv.stdin_fd = in.take(1);
  sv.stdout_fd = out.take(0);
  sv.stderr_fd = err.take(0);
  sv.exit_fd = child->pidfd;
  const Cgroup* cgp = &cg;
  sv.kill = [cgp] { cgp->kill_all(); };  // runsc, its gofer and its sandbox: all in the cgroup
  sv.cgroup = &cg;
  sv.start = start;
  Supervised got = co_await supervise(std::move(sv), spec, on_output);
  cg.kill_all();
  int wstatus = 0;
  ::waitpid(child->pid, &wstatus, 0);
  const bool cancelled = (co_await asio::this_coro::cancellation_state).cancelled() != asio::cancellation_type::none;
  const CgroupStats stats = cg.stats();
  RunResult result;
  if (proxy) proxy->stop(result);
  result.usage.cpu_s = stats.cpu_s;
  result.usage.peak_memory_bytes = stats.peak_memory_bytes;
  result.usage.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const bool killed = apply_kills(got, spec, result);
  // runsc's own state of a container it did not see end (killed): removed.
  if (killed || cancelled || !WIFEXITED(wstatus)) {
    const std::vector<std::string> del = {runsc_, "--root", root_ + "/state", "delete", "--force", id};
    (void)co_await run_quietly(del);
  }
  for (int i = 0; i < 100 && !cg.remove(); ++i) {
    asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(5));
    co_await t.async_wait(kTuple);
  }
  if (cancelled) {  // what it used still counts (the caller bills it)
    result.outcome = Outcome::kCancelled;
    result.signal = SIGKILL;
    co_return result;
  }
  if (!killed) classify(wstatus, stats, spec, result);
  read_back_files(dir / "work", spec, result);
  co_return result;
}

}  // namespace

std::unique_ptr<Sandbox> make_gvisor_sandbox(const Options& options) {
  return std::make_unique<GvisorSandbox>(options, find_runsc(options.runsc));
}

Probe probe_gvisor(const Options& options) {
  Probe p;
  const std::string runsc = find_runsc(options.runsc);
  if (runsc.empty()) {
    p.detail = "runsc is not installed (Debian package runsc)";
    return p;
  }
  if (::geteuid() != 0) {
    p.detail = "runsc is at " + runsc + ", but the gvisor backend needs root (runsc's rootless mode cannot apply limits)";
    return p;
  }
  auto layout = Cgroup::layout();
  if (!layout) {
    p.detail = layout.error().message;
    return p;
  }
  p.available = true;
  p.detail = runsc + " on the " + options.runsc_platform + " platform, --network=none; cgroups " + *layout;
  return p;
}

}  // namespace ap::sandbox
