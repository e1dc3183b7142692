// The native backend: a clone into new user, PID, mount, network, IPC, UTS and cgroup
// namespaces, a root built from an empty tmpfs, seccomp, no capabilities, cgroup limits.
// The cloned child runs only system calls on memory prepared before the clone (the server is
// multi-threaded: after clone, no allocation and no lock is safe). It becomes the sandbox's
// init (PID 1): it builds the root, drops every privilege, starts the user's command as PID 2,
// reaps every process, kills what is left when the command ends, and reports the command's
// status and the files to read back on a pipe. See docs/sandbox.md.
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <deque>
#include <fstream>
#include <sstream>

#include "exec/sandbox/cgroup.h"
#include "exec/sandbox/native.h"
#include "exec/sandbox/seccomp.h"
#include "exec/sandbox/supervise.h"

namespace ap::sandbox {
namespace asio = boost::asio;

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr const char* kRoot = "/tmp";  // the new root's mount point, in the sandbox's own mount namespace
constexpr int64_t kMaxReadBack = 8ll << 20;

// One step of building the root, done by the child.
struct Op {
  enum Kind { kMkdir, kMount, kSymlink, kWrite, kTouch } kind;
  const char* a = nullptr;  // mkdir/touch/write: path; mount: source; symlink: target
  const char* b = nullptr;  // mount: target; symlink: link path; write: content
  const char* c = nullptr;  // mount: file system type
  const char* d = nullptr;  // mount: data
  unsigned long flags = 0;  // mount flags
  int mode = 0755;
  size_t len = 0;           // write: content length
  bool chown = false;       // mkdir/write: owned by the sandbox's user
};

// Everything the child needs, prepared before the clone.
struct Plan {
  std::deque<std::string> arena;  // stable storage for the strings below
  std::vector<Op> ops;
  std::vector<const char*> exec_paths;
  std::vector<char*> argv, envp;
  std::vector<const char*> read_back;  // absolute paths inside the sandbox
  int64_t read_back_cap = kMaxReadBack;
  int sync_fd = -1, status_fd = -1, in_fd = -1, out_fd = -1, err_fd = -1;
  uid_t user_uid = 0;
  gid_t user_gid = 0;
  bool set_groups = false;
  int cap_last = 40;
  sock_fprog seccomp{};
  uintptr_t arg_start = 0, arg_end = 0, env_start = 0, env_end = 0;
  rlim_t fsize = 0, nofile = 0, cpu_s = 0;

  const char* keep(std::string s) {
    arena.push_back(std::move(s));
    return arena.back().c_str();
  }
  char* keep_mut(std::string s) {
    arena.push_back(std::move(s));
    return arena.back().data();
  }
};

// ---- the child (PID 1 of the sandbox): system calls only ----

void put(char* buf, size_t& n, const void* p, size_t len) {
  std::memcpy(buf + n, p, len);
  n += len;
}

[[noreturn]] void die(int status_fd, const char* what, const char* arg) {
  const int32_t err = errno;
  char buf[512];
  size_t n = 0;
  buf[n++] = 'E';
  put(buf, n, &err, 4);
  put(buf, n, what, strnlen(what, 100));
  if (arg) {
    put(buf, n, " ", 1);
    put(buf, n, arg, strnlen(arg, 300));
  }
  (void)!::write(status_fd, buf, n);
  ::_exit(1);
}

void write_all(int fd, const void* p, size_t len) {
  const char* c = static_cast<const char*>(p);
  while (len > 0) {
    ssize_t n = ::write(fd, c, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    c += n;
    len -= static_cast<size_t>(n);
  }
}

void run_ops(const Plan& p, int status_fd) {
  for (const Op& op : p.ops) {
    switch (op.kind) {
      case Op::kMkdir:
        if (::mkdir(op.a, static_cast<mode_t>(op.mode)) != 0 && errno != EEXIST) die(status_fd, "mkdir", op.a);
        if (op.chown && ::chown(op.a, p.user_uid, p.user_gid) != 0) die(status_fd, "chown", op.a);
        break;
      case Op::kMount:
        if (::mount(op.a, op.b, op.c, op.flags, op.d) != 0) die(status_fd, "mount", op.b);
        break;
      case Op::kSymlink:
        if (::symlink(op.a, op.b) != 0) die(status_fd, "symlink", op.b);
        break;
      case Op::kTouch: {
        int fd = ::open(op.a, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
        if (fd < 0) die(status_fd, "create", op.a);
        ::close(fd);
        break;
      }
      case Op::kWrite: {
        int fd = ::open(op.a, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, static_cast<mode_t>(op.mode));
        if (fd < 0) die(status_fd, "create", op.a);
        size_t off = 0;
        while (off < op.len) {
          ssize_t n = ::write(fd, op.b + off, op.len - off);
          if (n < 0 && errno == EINTR) continue;
          if (n <= 0) die(status_fd, "write", op.a);
          off += static_cast<size_t>(n);
        }
        if (op.chown && ::fchown(fd, p.user_uid, p.user_gid) != 0) die(status_fd, "chown", op.a);
        if (::fchmod(fd, static_cast<mode_t>(op.mode)) != 0) die(status_fd, "chmod", op.a);
        ::close(fd);
        break;
      }
    }
  }
}

}  // namespace

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

namespace {

// The user's command (PID 2): its pipes as 0, 1, 2, limits, seccomp, then execve.
[[noreturn]] void exec_user(const Plan& p, int exec_err_fd) {
  ::dup2(5, 0);
  ::dup2(6, 1);
  ::dup2(7, 2);
  ::dup2(exec_err_fd, 3);
  ::fcntl(3, F_SETFD, FD_CLOEXEC);
  ::syscall(SYS_close_range, 4u, ~0u, 0u);
  ::setsid();
  // Every rlimit set, none inherited from the (root) server.
  const struct {
    int resource;
    rlim_t soft, hard;
  } limits[] = {{RLIMIT_CORE, 0, 0},
                {RLIMIT_FSIZE, p.fsize, p.fsize},
                {RLIMIT_NOFILE, p.nofile, p.nofile},
                {RLIMIT_CPU, p.cpu_s, p.cpu_s + 1},
                {RLIMIT_STACK, 8 << 20, 8 << 20},
                {RLIMIT_MEMLOCK, 64 << 10, 64 << 10},
                {RLIMIT_NICE, 0, 0},
                {RLIMIT_RTPRIO, 0, 0},
                {RLIMIT_RTTIME, 0, 0},
                {RLIMIT_MSGQUEUE, 819200, 819200},
                {RLIMIT_SIGPENDING, 4096, 4096},
                {RLIMIT_LOCKS, 1024, 1024},
                {RLIMIT_AS, RLIM_INFINITY, RLIM_INFINITY},
                {RLIMIT_DATA, RLIM_INFINITY, RLIM_INFINITY},
                {RLIMIT_RSS, RLIM_INFINITY, RLIM_INFINITY},
                {RLIMIT_NPROC, RLIM_INFINITY, RLIM_INFINITY}};  // PIDs: the cgroup
  for (const auto& l : limits) {
    struct rlimit r{l.soft, l.hard};
    ::syscall(SYS_prlimit64, 0, l.resource, &r, nullptr);
  }
  reset_signals();
  if (::chdir("/work") != 0) (void)!::chdir("/");
  if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &p.seccomp) != 0) {
    const int32_t e = errno;
    write_all(3, &e, 4);
    ::_exit(126);
  }
  for (const char* path : p.exec_paths) {
    ::execve(path, p.argv.data(), p.envp.data());
    if (errno != ENOENT && errno != ENOTDIR) break;
  }
  const int32_t e = errno;
  write_all(3, &e, 4);
  ::_exit(127);
}

int child_main(void* arg) {
  const Plan& p = *static_cast<const Plan*>(arg);
  // The server's thread that started us gone (the server died): so are we, and the sandbox.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  // Our descriptors at fixed numbers (3 sync, 4 status, 5-7 the command's stdin/out/err), every
  // other one the server had closed.
  const int want[5] = {p.sync_fd, p.status_fd, p.in_fd, p.out_fd, p.err_fd};
  int high[5];
  for (int i = 0; i < 5; ++i)
    if ((high[i] = ::fcntl(want[i], F_DUPFD, 8)) < 0) ::_exit(1);
  for (int i = 0; i < 5; ++i)
    if (::dup2(high[i], 3 + i) != 3 + i) ::_exit(1);
  ::syscall(SYS_close_range, 8u, ~0u, 0u);
  const int status_fd = 4;
  // Wait until the parent has written our id maps and put us in the cgroup.
  char go = 0;
  if (::read(3, &go, 1) != 1) ::_exit(1);
  ::close(3);
  if (::unshare(CLONE_NEWCGROUP) != 0) die(status_fd, "unshare", "cgroup namespace");
  // Raw system calls: glibc's set-id wrappers signal every thread of the process, and the
  // server's threads are not in this copy of it.
  if (::syscall(SYS_setresgid, 0, 0, 0) != 0 || ::syscall(SYS_setresuid, 0, 0, 0) != 0)
    die(status_fd, "setresuid", "0 (setup)");
  // This user namespace's own quotas (charged to the host's root too): small ones, and no
  // namespaces within (seccomp refuses them as well).
  for (const auto& [file, value] : {std::pair{"/proc/sys/user/max_inotify_instances", "16"},
                                    std::pair{"/proc/sys/user/max_inotify_watches", "8192"},
                                    std::pair{"/proc/sys/user/max_user_namespaces", "0"}}) {
    int fd = ::open(file, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
      (void)!::write(fd, value, std::strlen(value));
      ::close(fd);
    }
  }
  run_ops(p, status_fd);
  // pivot_root: the new root stacked over the old, then the old detached.
  if (::chdir(kRoot) != 0) die(status_fd, "chdir", kRoot);
  if (::syscall(SYS_pivot_root, ".", ".") != 0) die(status_fd, "pivot_root", nullptr);
  if (::umount2(".", MNT_DETACH) != 0) die(status_fd, "umount", "old root");
  if (::chdir("/") != 0) die(status_fd, "chdir", "/");
  ::sethostname("sandbox", 7);
  {  // loopback up (the only interface there is)
    int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr{};
    std::memcpy(ifr.ifr_name, "lo", 3);
    if (s >= 0 && ::ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
      ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
      ::ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    if (s >= 0) ::close(s);
  }
  // /dev/null as 0-2 (the server's own 0-2 must not reach the sandbox).
  int null_fd = ::open("/dev/null", O_RDWR);
  if (null_fd < 0) die(status_fd, "open", "/dev/null");
  for (int fd = 0; fd < 3; ++fd)
    if (null_fd != fd) ::dup2(null_fd, fd);
  if (null_fd > 2) ::close(null_fd);
  // This process is a copy of the server: wipe the server's command line and environment from
  // our copy (so /proc/1/cmdline and /proc/1/environ show nothing of it) and make it unreadable.
  if (p.arg_end > p.arg_start) std::memset(reinterpret_cast<void*>(p.arg_start), 0, p.arg_end - p.arg_start);
  if (p.env_end > p.env_start) std::memset(reinterpret_cast<void*>(p.env_start), 0, p.env_end - p.env_start);
  // Every privilege dropped: bounding set, ambient set, groups, ids, then the capabilities.
  for (int cap = 0; cap <= p.cap_last; ++cap) ::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
  ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  if (p.set_groups && ::syscall(SYS_setgroups, 0, nullptr) != 0) die(status_fd, "setgroups", nullptr);
  if (::syscall(SYS_setresgid, p.user_gid, p.user_gid, p.user_gid) != 0) die(status_fd, "setresgid", nullptr);
  if (::syscall(SYS_setresuid, p.user_uid, p.user_uid, p.user_uid) != 0) die(status_fd, "setresuid", nullptr);
  {
    struct __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2]{};
    if (::syscall(SYS_capset, &hdr, data) != 0) die(status_fd, "capset", nullptr);
  }
  // After the id change (which resets it to fs.suid_dumpable): the code shares our uid and must
  // not read this process's memory (a copy of the server's) through /proc.
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 || ::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0)
    die(status_fd, "dumpable", nullptr);
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die(status_fd, "no_new_privs", nullptr);
  int ep[2];
  if (::pipe2(ep, O_CLOEXEC) != 0) die(status_fd, "pipe", nullptr);
  pid_t cmd = static_cast<pid_t>(::syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0));  // fork, without atfork handlers
  if (cmd < 0) die(status_fd, "fork", nullptr);
  if (cmd == 0) exec_user(p, ep[1]);
  ::close(ep[1]);
  ::close(5);
  ::close(6);
  ::close(7);
  if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &p.seccomp) != 0) die(status_fd, "seccomp", nullptr);
  // Reap everything; once the command has ended, kill whatever it left behind.
  int cmd_status = 0;
  bool cmd_done = false;
  for (;;) {
    int st = 0;
    pid_t w = ::waitpid(-1, &st, 0);
    if (w < 0) {
      if (errno == EINTR) continue;
      break;  // ECHILD: no process is left in the sandbox
    }
    if (w == cmd) {
      cmd_status = st;
      cmd_done = true;
    }
    if (cmd_done) ::kill(-1, SIGKILL);
  }
  int32_t exec_errno = 0;
  if (::read(ep[0], &exec_errno, 4) != 4) exec_errno = 0;
  // The report: 'R', how the command ended, then each file to read back.
  char head[16];
  size_t n = 0;
  head[n++] = 'R';
  const int32_t how = WIFEXITED(cmd_status) ? 0 : 1;
  const int32_t code = WIFEXITED(cmd_status) ? WEXITSTATUS(cmd_status) : WTERMSIG(cmd_status);
  put(head, n, &how, 4);
  put(head, n, &code, 4);
  put(head, n, &exec_errno, 4);
  write_all(status_fd, head, n);
  static char buf[65536];  // this process's own copy: not shared with the server
  // Beneath /work, through no symlink at all (/work is nodev: no device node opens here).
  const int work_fd = ::open("/work", O_PATH | O_DIRECTORY | O_CLOEXEC);
  for (uint32_t i = 0; i < p.read_back.size(); ++i) {
    int64_t len = -1;
    struct open_how how{};
    how.flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    int fd = work_fd < 0 ? -1 : static_cast<int>(::syscall(SYS_openat2, work_fd, p.read_back[i], &how, sizeof how));
    struct stat st{};
    if (fd >= 0 && ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size <= p.read_back_cap) len = st.st_size;
    char frame[12];
    size_t m = 0;
    put(frame, m, &i, 4);
    put(frame, m, &len, 8);
    write_all(status_fd, frame, m);
    int64_t left = len;
    while (left > 0) {
      ssize_t r = ::read(fd, buf, static_cast<size_t>(std::min<int64_t>(left, sizeof buf)));
      if (r <= 0) {  // shrank meanwhile: pad, so the frame keeps its length
        std::memset(buf, 0, sizeof buf);
        r = static_cast<ssize_t>(std::min<int64_t>(left, sizeof buf));
      }
      write_all(status_fd, buf, static_cast<size_t>(r));
      left -= r;
    }
    if (fd >= 0) ::close(fd);
  }
  ::_exit(0);
}

// ---- the parent ----

struct HostFlags {
  unsigned long locked = 0;  // flags a bind's remount must keep (noexec, atime) in a user namespace
};

unsigned long locked_flags(const char* path) {
  struct statvfs s{};
  if (::statvfs(path, &s) != 0) return 0;
  unsigned long f = 0;
  if (s.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
  if (s.f_flag & ST_NOATIME) f |= MS_NOATIME;
  if (s.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
  if (s.f_flag & ST_RELATIME) f |= MS_RELATIME;
  return f;
}

// The arguments and environment area of this process (fields 48-51 of /proc/self/stat).
std::array<uintptr_t, 4> arg_env_area() {
  std::ifstream in("/proc/self/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::array<uintptr_t, 4> out{};
  auto close = text.rfind(')');
  if (close == std::string::npos) return out;
  std::istringstream rest(text.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 51 && rest >> field; ++i)  // field 3 is the state
    if (i >= 48) out[static_cast<size_t>(i - 48)] = static_cast<uintptr_t>(std::stoull(field));
  return out;
}

int cap_last() {
  std::ifstream in("/proc/sys/kernel/cap_last_cap");
  int v = 40;
  in >> v;
  return v;
}


class NativeSandbox final : public Sandbox {
 public:
  explicit NativeSandbox(Options o) : o_(std::move(o)) { ::signal(SIGPIPE, SIG_IGN); }
  std::string name() const override { return "native"; }

  asio::awaitable<Result<RunResult>> run(Spec spec, OnOutput on_output) override;

 private:
  Result<std::unique_ptr<Plan>> plan(const Spec& spec);
  Options o_;
};

Result<std::unique_ptr<Plan>> NativeSandbox::plan(const Spec& spec) {
  auto p = std::make_unique<Plan>();
  const bool root = ::geteuid() == 0;
  p->user_uid = root ? 1000 : 0;
  p->user_gid = root ? 1000 : 0;
  p->set_groups = root;
  p->cap_last = cap_last();
  AP_ASSIGN_OR_RETURN(auto prog, seccomp_program());
  p->seccomp.len = static_cast<unsigned short>(prog->size());
  p->seccomp.filter = const_cast<sock_filter*>(prog->data());
  auto area = arg_env_area();
  p->arg_start = area[0];
  p->arg_end = area[1];
  p->env_start = area[2];
  p->env_end = area[3];
  const Limits& l = spec.limits;
  p->fsize = static_cast<rlim_t>(l.disk_bytes);
  p->nofile = static_cast<rlim_t>(l.open_files);
  p->cpu_s = static_cast<rlim_t>((l.cpu.count() + 999) / 1000);

  const std::string R = kRoot;
  auto op = [&](Op o) { p->ops.push_back(o); };
  auto path = [&](const std::string& s) { return p->keep(R + s); };
  op({Op::kMount, nullptr, "/", nullptr, nullptr, MS_REC | MS_PRIVATE});
  op({Op::kMount, "tmpfs", p->keep(R), "tmpfs", "size=1m,nr_inodes=4096,mode=0755", MS_NOSUID | MS_NODEV});
  // The runtime: /usr and the library dirs, read-only (symlinks as the host has them).
  for (const char* dir : {"/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin", "/etc/alternatives"}) {
    struct stat st{};
    if (::lstat(dir, &st) != 0) continue;
    if (std::string(dir) == "/etc/alternatives") op({Op::kMkdir, path("/etc")});
    if (S_ISLNK(st.st_mode)) {
      char target[4096];
      ssize_t n = ::readlink(dir, target, sizeof target - 1);
      if (n <= 0) continue;
      op({Op::kSymlink, p->keep(std::string(target, static_cast<size_t>(n))), path(dir)});
    } else if (S_ISDIR(st.st_mode)) {
      op({Op::kMkdir, path(dir)});
      op({Op::kMount, dir, path(dir), nullptr, nullptr, MS_BIND});
      op({Op::kMount, nullptr, path(dir), nullptr, nullptr,
          MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | locked_flags(dir)});
    }
  }
  // A minimal /etc.
  op({Op::kMkdir, path("/etc")});
  auto write = [&](const std::string& at, std::string content, int mode, bool chown) {
    const char* c = p->keep(std::move(content));
    op({Op::kWrite, path(at), c, nullptr, nullptr, 0, mode, std::strlen(c), chown});
  };
  write("/etc/passwd", "root:x:0:0:root:/:/usr/sbin/nologin\nsandbox:x:1000:1000:sandbox:/work:/bin/sh\n", 0644, false);
  write("/etc/group", "root:x:0:\nsandbox:x:1000:\n", 0644, false);
  write("/etc/hosts", "127.0.0.1 localhost sandbox\n::1 localhost\n", 0644, false);
  write("/etc/resolv.conf", "", 0644, false);  // no resolver: there is no network
  for (const char* f : {"/etc/ld.so.cache", "/etc/localtime"}) {
    struct stat st{};
    if (::lstat(f, &st) != 0) continue;
    if (S_ISLNK(st.st_mode)) {
      char target[4096];
      ssize_t n = ::readlink(f, target, sizeof target - 1);
      if (n > 0) op({Op::kSymlink, p->keep(std::string(target, static_cast<size_t>(n))), path(f)});
    } else if (S_ISREG(st.st_mode)) {
      op({Op::kTouch, path(f)});
      op({Op::kMount, f, path(f), nullptr, nullptr, MS_BIND});
      op({Op::kMount, nullptr, path(f), nullptr, nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | locked_flags(f)});
    }
  }
  // A fresh /proc of the sandbox's PID namespace.
  op({Op::kMkdir, path("/proc")});
  op({Op::kMount, "proc", path("/proc"), "proc", nullptr, MS_NOSUID | MS_NODEV | MS_NOEXEC});
  // A minimal /dev: the harmless character devices, bound from the host's.
  op({Op::kMkdir, path("/dev")});
  op({Op::kMount, "tmpfs", path("/dev"), "tmpfs", "size=64k,nr_inodes=64,mode=0755", MS_NOSUID | MS_NOEXEC});
  for (const char* dev : {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"}) {
    op({Op::kTouch, path(dev)});
    op({Op::kMount, dev, path(dev), nullptr, nullptr, MS_BIND});
  }
  op({Op::kSymlink, "/proc/self/fd", path("/dev/fd")});
  op({Op::kSymlink, "/proc/self/fd/0", path("/dev/stdin")});
  op({Op::kSymlink, "/proc/self/fd/1", path("/dev/stdout")});
  op({Op::kSymlink, "/proc/self/fd/2", path("/dev/stderr")});
  op({Op::kMkdir, path("/dev/shm")});
  const std::string shm_opts = "size=" + std::to_string(std::min<int64_t>(l.disk_bytes, 64ll << 20)) + ",mode=1777";
  op({Op::kMount, "tmpfs", path("/dev/shm"), "tmpfs", p->keep(shm_opts), MS_NOSUID | MS_NODEV | MS_NOEXEC});
  // The workspace and /tmp: writable, size-capped, fresh for every run.
  const std::string ids = ",uid=" + std::to_string(p->user_uid) + ",gid=" + std::to_string(p->user_gid);
  op({Op::kMkdir, path("/work")});
  op({Op::kMount, "tmpfs", path("/work"), "tmpfs",
      p->keep("size=" + std::to_string(l.disk_bytes) + ",nr_inodes=65536,mode=0755" + ids), MS_NOSUID | MS_NODEV});
  op({Op::kMkdir, path("/tmp")});
  op({Op::kMount, "tmpfs", path("/tmp"), "tmpfs",
      p->keep("size=" + std::to_string(l.disk_bytes) + ",nr_inodes=65536,mode=1777"), MS_NOSUID | MS_NODEV});
  int64_t total = 0;
  for (const auto& f : spec.files) {
    AP_RETURN_IF_ERROR(valid_rel_path(f.path));
    total += static_cast<int64_t>(f.content.size());
    if (total > l.disk_bytes) return Error::invalid_argument("the files are larger than the disk limit");
    if (f.mode < 0 || f.mode > 0777) return Error::invalid_argument("file mode must be within 0777");
    for (size_t slash = f.path.find('/'); slash != std::string::npos; slash = f.path.find('/', slash + 1))
      op({Op::kMkdir, path("/work/" + f.path.substr(0, slash)), nullptr, nullptr, nullptr, 0, 0755, 0, true});
    const char* c = p->keep(f.content);
    op({Op::kWrite, path("/work/" + f.path), c, nullptr, nullptr, 0, f.mode, f.content.size(), true});
  }
  // Then the root and /dev read-only.
  op({Op::kMount, nullptr, path("/dev"), nullptr, nullptr, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC});
  op({Op::kMount, nullptr, p->keep(R), nullptr, nullptr, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV});

  // The command, its arguments and environment.
  std::string path_var;
  AP_ASSIGN_OR_RETURN(auto env, environment(spec, &path_var));
  for (auto& e : env) p->envp.push_back(p->keep_mut(std::move(e)));
  p->envp.push_back(nullptr);
  for (const auto& a : spec.argv) p->argv.push_back(p->keep_mut(a));
  p->argv.push_back(nullptr);
  const std::string& cmd = spec.argv[0];
  if (cmd.find('/') != std::string::npos) {
    if (cmd.front() != '/') return Error::invalid_argument("the command must be a name on PATH or an absolute path");
    p->exec_paths.push_back(p->keep(cmd));
  } else {
    std::istringstream dirs(path_var);
    std::string dir;
    while (std::getline(dirs, dir, ':'))
      if (!dir.empty() && dir.front() == '/') p->exec_paths.push_back(p->keep(dir + "/" + cmd));
  }
  for (const auto& f : spec.read_back) {
    AP_RETURN_IF_ERROR(valid_rel_path(f));
    p->read_back.push_back(p->keep(f));  // relative to /work
  }
  p->read_back_cap = std::min<int64_t>(kMaxReadBack, l.disk_bytes);
  return p;
}

bool write_proc(pid_t pid, const char* file, const std::string& value) {
  const std::string path = "/proc/" + std::to_string(pid) + "/" + file;
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::write(fd, value.data(), value.size()) == static_cast<ssize_t>(value.size());
  ::close(fd);
  return ok;
}

std::string errno_text(int e) { return std::strerror(e); }

asio::awaitable<Result<RunResult>> NativeSandbox::run(Spec spec, OnOutput on_output) {
  // A cancel must not skip the clean-up below: operations report it, coroutines do not throw.
  co_await asio::this_coro::throw_if_cancelled(false);
  if (spec.argv.empty() || spec.argv[0].empty()) co_return Error::invalid_argument("the command is empty");
  AP_CO_RETURN_IF_ERROR(spec.limits.validate());
  if (spec.network)
    co_return Error::unimplemented("network egress is not available in the native sandbox (the sandbox has only loopback)");
  AP_CO_ASSIGN_OR_RETURN(auto plan, this->plan(spec));
  const auto start = std::chrono::steady_clock::now();
  CgroupLimits cl{spec.limits.memory_bytes, spec.limits.pids, spec.limits.cpus};
  AP_CO_ASSIGN_OR_RETURN(auto cg, Cgroup::create(o_.cgroup_name, "run-" + random_hex(16), cl));

  Pipe sync, status, in, out, err;
  for (Pipe* pp : {&sync, &status, &in, &out, &err}) AP_CO_RETURN_IF_ERROR(pp->open());
  plan->sync_fd = sync.fds[0];
  plan->status_fd = status.fds[1];
  plan->in_fd = in.fds[0];
  plan->out_fd = out.fds[1];
  plan->err_fd = err.fds[1];

  constexpr size_t kStack = 1 << 20;
  void* stack = ::mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) co_return Error::unavailable("mmap: " + errno_text(errno));
  int pidfd = -1;
  const int flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_PIDFD | SIGCHLD;
  pid_t pid = ::clone(child_main, static_cast<char*>(stack) + kStack, flags, plan.get(), &pidfd);
  const int clone_errno = errno;
  ::munmap(stack, kStack);
  if (pid < 0) co_return Error::unavailable("clone into new namespaces failed: " + errno_text(clone_errno));
  for (Pipe* pp : {&sync, &in}) ::close(pp->take(0));
  for (Pipe* pp : {&status, &out, &err}) ::close(pp->take(1));
  auto abandon = [&](Error e) -> Error {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    if (pidfd >= 0) ::close(pidfd);
    return e;
  };
  // Id maps: inside, 0 (for the setup only) and 1000 (the user) map to unprivileged host ids;
  // without root, our own id is all there is to map.
  const bool root = ::geteuid() == 0;
  static std::atomic<uint32_t> next_ids{0};
  const uint32_t base = o_.host_id_base + 2 * (next_ids.fetch_add(1) % std::max<uint32_t>(o_.id_range, 1));
  const std::string ids = "0 " + std::to_string(base) + " 1\n1000 " + std::to_string(base + 1) + " 1\n";
  const std::string uid_map = root ? ids : "0 " + std::to_string(::geteuid()) + " 1\n";
  const std::string gid_map = root ? ids : "0 " + std::to_string(::getegid()) + " 1\n";
  if ((!root && !write_proc(pid, "setgroups", "deny")) || !write_proc(pid, "uid_map", uid_map) ||
      !write_proc(pid, "gid_map", gid_map))
    co_return abandon(Error::unavailable("cannot write the sandbox's user namespace id maps: " + errno_text(errno)));
  if (auto st = cg.add(pid); !st) co_return abandon(st.error());
  if (::write(sync.fds[1], "g", 1) != 1) co_return abandon(Error::unavailable("cannot start the sandbox"));
  ::close(sync.take(1));

  Supervision sv;
  sv.stdin_fd = in.take(1);
  sv.stdout_fd = out.take(0);
  sv.stderr_fd = err.take(0);
  sv.report_fd = status.take(0);
  sv.report_cap = 64 + spec.read_back.size() * (12 + static_cast<size_t>(plan->read_back_cap)) + 4096;
  sv.exit_fd = pidfd;
  sv.kill = [pid] { ::kill(pid, SIGKILL); };  // PID 1 of the namespace: all of it dies
  sv.cgroup = &cg;
  sv.start = start;
  Supervised got = co_await supervise(std::move(sv), spec, on_output);
  auto ex = co_await asio::this_coro::executor;
  // Init has exited (a zombie until reaped here), or we were cancelled: either way, none of the
  // sandbox outlives this.
  ::kill(pid, SIGKILL);
  int wstatus = 0;
  ::waitpid(pid, &wstatus, 0);
  const bool cancelled = (co_await asio::this_coro::cancellation_state).cancelled() != asio::cancellation_type::none;
  const CgroupStats stats = cg.stats();
  Usage usage;
  usage.cpu_s = stats.cpu_s;
  usage.peak_memory_bytes = stats.peak_memory_bytes;
  usage.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // Removing the cgroup can take a moment after the last exit: retry without blocking.
  for (int i = 0; i < 100 && !cg.remove(); ++i) {
    asio::steady_timer t(ex, std::chrono::milliseconds(2));
    co_await t.async_wait(kTuple);
  }

  if (cancelled) {  // what it used still counts (the caller bills it)
    RunResult r;
    r.outcome = Outcome::kCancelled;
    r.signal = SIGKILL;
    r.usage = usage;
    co_return r;
  }
  const std::string& report = got.report;
  if (!report.empty() && report[0] == 'E') {
    int32_t e = 0;
    if (report.size() >= 5) std::memcpy(&e, report.data() + 1, 4);
    co_return Error::internal("sandbox setup failed: " + report.substr(std::min<size_t>(5, report.size())) + ": " + errno_text(e));
  }
  RunResult result;
  result.usage = usage;
  const bool killed = apply_kills(got, spec, result);
  bool have_status = report.size() >= 13 && report[0] == 'R';
  int32_t how = 0, code = 0, exec_errno = 0;
  if (have_status) {
    std::memcpy(&how, report.data() + 1, 4);
    std::memcpy(&code, report.data() + 5, 4);
    std::memcpy(&exec_errno, report.data() + 9, 4);
    size_t at = 13;
    while (at + 12 <= report.size()) {
      uint32_t i = 0;
      int64_t len = 0;
      std::memcpy(&i, report.data() + at, 4);
      std::memcpy(&len, report.data() + at + 4, 8);
      at += 12;
      if (len < 0) continue;
      if (at + static_cast<size_t>(len) > report.size() || i >= spec.read_back.size()) break;
      result.files[spec.read_back[i]] = report.substr(at, static_cast<size_t>(len));
      at += static_cast<size_t>(len);
    }
  }
  if (killed) {
    // the parent's own kill: the outcome is set
  } else if (have_status) {
    if (exec_errno != 0) {
      result.outcome = Outcome::kExited;
      result.exit_code = 127;
      result.stderr_data += "agentplane sandbox: cannot execute " + spec.argv[0] + ": " + errno_text(exec_errno) + "\n";
    } else if (how == 0) {
      result.outcome = Outcome::kExited;
      result.exit_code = code;
    } else if (code == SIGKILL && stats.oom_kills > 0) {
      result.outcome = Outcome::kOomKilled;
      result.signal = SIGKILL;
    } else if (code == SIGXCPU || (code == SIGKILL && result.usage.cpu_s >= static_cast<double>(spec.limits.cpu.count()) / 1000.0)) {
      result.outcome = Outcome::kCpuLimit;
      result.signal = code;
    } else {
      result.outcome = Outcome::kSignaled;
      result.signal = code;
    }
  } else if (stats.oom_kills > 0) {
    result.outcome = Outcome::kOomKilled;
    result.signal = SIGKILL;
  } else {
    co_return Error::internal("the sandbox ended without a report (its init exited with status " + std::to_string(wstatus) + ")");
  }
  co_return result;
}

}  // namespace

std::unique_ptr<Sandbox> make_native_sandbox(const Options& options) { return std::make_unique<NativeSandbox>(options); }

Probe probe_native() {
  Probe p;
  auto layout = Cgroup::layout();
  if (!layout) {
    p.detail = layout.error().message;
    return p;
  }
  auto prog = seccomp_program();
  if (!prog) {
    p.detail = prog.error().message;
    return p;
  }
  p.available = true;
  p.detail = "namespaces, seccomp (" + std::to_string((*prog)->size()) + " BPF instructions), cgroups " + *layout;
  return p;
}

}  // namespace ap::sandbox
