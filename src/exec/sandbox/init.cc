// agentplane-sandbox-init: PID 1 of a native sandbox. A small static program, built with the
// server and embedded in it (native.cc execs it from a sealed memfd, so nothing on disk is
// trusted and the server stays one binary). It starts in the sandbox's new namespaces as root
// of its user namespace, with the server's pipes at fixed descriptors and its plan in fd 8
// (init_plan.h); it holds nothing of the server's memory (the server never forks itself).
//
// It builds the root (tmpfs, read-only binds, fresh /proc and /dev, size-capped /work and
// /tmp), pivots into it, drops every privilege, starts the user's command as PID 2 with rlimits
// and the seccomp filter, reaps every process, kills what is left when the command ends, and
// writes the report on fd 4:
//   'E' errno(4) text          setup failed
//   'R' how(4) code(4) exec_errno(4) then per read-back file: index(4) length(8, -1: none) bytes
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <thread>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "exec/sandbox/init_plan.h"

namespace {

using ap::sandbox::InitOp;
using ap::sandbox::InitPlan;
constexpr int kStatus = ap::sandbox::kInitStatusFd;

void put(std::string& out, const void* p, size_t len) { out.append(static_cast<const char*>(p), len); }

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

[[noreturn]] void die(const char* what, const std::string& arg = "") {
  const int32_t err = errno;
  std::string msg = "E";
  put(msg, &err, 4);
  msg += what;
  if (!arg.empty()) msg += " " + arg.substr(0, 300);
  write_all(kStatus, msg.data(), msg.size());
  ::_exit(1);
}

const char* cstr(const std::optional<std::string>& s) { return s ? s->c_str() : nullptr; }

void run_ops(const InitPlan& p) {
  for (const InitOp& op : p.ops) {
    const std::string a = op.a.value_or(""), b = op.b.value_or("");
    switch (op.kind) {
      case InitOp::kMkdir:
        if (::mkdir(a.c_str(), op.mode) != 0 && errno != EEXIST) die("mkdir", a);
        if (op.chown && ::chown(a.c_str(), p.user_uid, p.user_gid) != 0) die("chown", a);
        break;
      case InitOp::kMount:
        if (::mount(cstr(op.a), b.c_str(), cstr(op.c), op.flags, cstr(op.d)) != 0) die("mount", b);
        break;
      case InitOp::kSymlink:
        if (::symlink(a.c_str(), b.c_str()) != 0) die("symlink", b);
        break;
      case InitOp::kTouch: {
        int fd = ::open(a.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
        if (fd < 0) die("create", a);
        ::close(fd);
        break;
      }
      case InitOp::kWrite: {
        int fd = ::open(a.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, op.mode);
        if (fd < 0) die("create", a);
        size_t off = 0;
        while (off < b.size()) {
          ssize_t n = ::write(fd, b.data() + off, b.size() - off);
          if (n < 0 && errno == EINTR) continue;
          if (n <= 0) die("write", a);
          off += static_cast<size_t>(n);
        }
        if (op.chown && ::fchown(fd, p.user_uid, p.user_gid) != 0) die("chown", a);
        if (::fchmod(fd, op.mode) != 0) die("chmod", a);
        ::close(fd);
        break;
      }
    }
  }
}

// Nothing of the server's signal state reaches the code: execve keeps ignored signals and the
// mask, so both are reset (as PID 1 of its namespace, signals from inside reach us only when we
// handle them: we do not).
void reset_signals() {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction dfl{};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig)
    if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, nullptr);
}

struct Exec {
  std::vector<char*> argv, envp;  // built before the vfork: the child allocates nothing
  sock_fprog filter{};
};

// The user's command (PID 2), in a vfork child on our memory until its execve: its pipes as 0,
// 1, 2, limits, seccomp, then execve. (Our signals were reset at start: nothing to undo.)
[[noreturn]] void exec_user(const InitPlan& p, const Exec& x, int exec_err_fd) {
  ::dup2(ap::sandbox::kInitStdinFd, 0);
  ::dup2(ap::sandbox::kInitStdoutFd, 1);
  ::dup2(ap::sandbox::kInitStderrFd, 2);
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
    ::setrlimit(static_cast<__rlimit_resource>(l.resource), &r);
  }
  if (::chdir("/work") != 0) (void)!::chdir("/");
  if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &x.filter) != 0) {
    const int32_t e = errno;
    write_all(3, &e, 4);
    ::_exit(126);
  }
  for (const auto& path : p.exec_paths) {
    ::execve(path.c_str(), x.argv.data(), x.envp.data());
    if (errno != ENOENT && errno != ENOTDIR) break;
  }
  const int32_t e = errno;
  write_all(3, &e, 4);
  ::_exit(127);
}

// Egress: a listening socket on this namespace's loopback, handed to the server (which serves it
// as the egress proxy); the code can connect to it but never holds it.
void share_egress_listener(const InitPlan& p) {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) die("socket", "egress");
  const int one = 1;
  ::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(p.egress_port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("bind", "egress proxy port");
  if (::listen(s, 64) != 0) die("listen", "egress");
  ap::sandbox::FdMessage m;
  cmsghdr* c = CMSG_FIRSTHDR(&m.msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &s, sizeof s);
  if (::sendmsg(ap::sandbox::kInitEgressFd, &m.msg, MSG_NOSIGNAL) != 1) die("sendmsg", "egress listener");
  ::close(s);
  ::close(ap::sandbox::kInitEgressFd);
}

// A warm sandbox's command: the second plan on fd 3 (its length first). EOF: the server let this
// sandbox go unused; we exit and the namespaces go with us.
void take_command(InitPlan& p) {
  auto read_exact = [](void* into, size_t len) {
    char* c = static_cast<char*>(into);
    while (len > 0) {
      ssize_t n = ::read(ap::sandbox::kInitSyncFd, c, len);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) ::_exit(0);
      c += n;
      len -= static_cast<size_t>(n);
    }
  };
  uint64_t len = 0;
  read_exact(&len, 8);
  if (len > (1ull << 32)) die("read", "command");
  std::string data(len, '\0');
  read_exact(data.data(), len);
  ::close(ap::sandbox::kInitSyncFd);
  InitPlan c;
  if (!decode_plan(data, c)) {
    errno = EINVAL;
    die("decode", "command");
  }
  run_ops(c);  // the files, as the code's user: we are that user by now
  p.argv = std::move(c.argv);
  p.envp = std::move(c.envp);
  p.exec_paths = std::move(c.exec_paths);
  p.read_back = std::move(c.read_back);
  p.read_back_cap = c.read_back_cap;
  p.fsize = c.fsize;
  p.nofile = c.nofile;
  p.cpu_s = c.cpu_s;
}

std::string read_plan() {
  struct stat st{};
  if (::fstat(ap::sandbox::kInitPlanFd, &st) != 0) die("fstat", "plan");
  std::string data(static_cast<size_t>(st.st_size), '\0');
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::pread(ap::sandbox::kInitPlanFd, data.data() + off, data.size() - off, static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) die("read", "plan");
    off += static_cast<size_t>(n);
  }
  ::close(ap::sandbox::kInitPlanFd);
  return data;
}

}  // namespace

// --forward PORT SOCKET -- COMMAND...: egress inside a gVisor sandbox, whose netstack has only
// its own loopback. A child relays 127.0.0.1:PORT to the server's egress proxy on a unix socket
// (mounted from the host), then this process becomes the command (its exit status stays the
// command's). The relay is untrusted plumbing: the policy is the proxy's, in the server.
void relay(int a, int b) {
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(a, buf, sizeof buf);
    if (n <= 0) break;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = ::write(b, buf + off, static_cast<size_t>(n - off));
      if (w <= 0) {
        n = -1;
        break;
      }
      off += w;
    }
    if (n < 0) break;
  }
  ::shutdown(b, SHUT_WR);
}

int forward_main(int argc, char** argv) {
  if (argc < 6 || std::strcmp(argv[4], "--") != 0) {
    std::fputs("usage: agentplane-sandbox-init --forward PORT SOCKET -- COMMAND...\n", stderr);
    return 2;
  }
  const int port = std::atoi(argv[2]);
  const char* path = argv[3];
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (s < 0 || ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(s, 64) != 0) {
    std::perror("agentplane sandbox: egress relay");
    return 125;
  }
  pid_t child = ::fork();
  if (child < 0) {
    std::perror("agentplane sandbox: fork");
    return 125;
  }
  if (child == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    int null_fd = ::open("/dev/null", O_RDWR);
    for (int fd = 0; fd < 3; ++fd) ::dup2(null_fd, fd);  // the command's pipes are not held open
    for (;;) {
      int c = ::accept4(s, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        ::_exit(0);
      }
      int u = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_un ua{};
      ua.sun_family = AF_UNIX;
      std::strncpy(ua.sun_path, path, sizeof ua.sun_path - 1);
      if (u < 0 || ::connect(u, reinterpret_cast<sockaddr*>(&ua), sizeof ua) != 0) {
        static constexpr char kDown[] = "HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        (void)!::write(c, kDown, sizeof kDown - 1);
        ::close(c);
        if (u >= 0) ::close(u);
        continue;
      }
      std::thread([c, u] {
        std::thread back([c, u] { relay(u, c); });
        relay(c, u);
        back.join();
        ::close(c);
        ::close(u);
      }).detach();
    }
  }
  ::close(s);
  ::execvp(argv[5], argv + 5);
  std::fprintf(stderr, "agentplane sandbox: cannot execute %s: %s\n", argv[5], std::strerror(errno));
  return 127;
}

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--forward") == 0) return forward_main(argc, argv);
  // The server's thread that started us gone (the server died): so are we, and the sandbox.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  reset_signals();  // the server's mask and ignored signals survive an exec
  InitPlan p;
  if (!decode_plan(read_plan(), p)) {
    errno = EINVAL;
    die("decode", "plan");
  }
  if (!p.deferred) ::close(ap::sandbox::kInitSyncFd);
  // The run's cgroup is ours already (the server moved us in before the exec).
  if (::unshare(CLONE_NEWCGROUP) != 0) die("unshare", "cgroup namespace");
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
  run_ops(p);
  // pivot_root: the new root stacked over the old, then the old detached.
  if (::chdir(ap::sandbox::kInitRoot) != 0) die("chdir", ap::sandbox::kInitRoot);
  if (::syscall(SYS_pivot_root, ".", ".") != 0) die("pivot_root");
  if (::umount2(".", MNT_DETACH) != 0) die("umount", "old root");
  if (::chdir("/") != 0) die("chdir", "/");
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
  if (p.egress_port != 0) share_egress_listener(p);
  // /dev/null as 0-2.
  int null_fd = ::open("/dev/null", O_RDWR);
  if (null_fd < 0) die("open", "/dev/null");
  for (int fd = 0; fd < 3; ++fd)
    if (null_fd != fd) ::dup2(null_fd, fd);
  if (null_fd > 2) ::close(null_fd);
  // Every privilege dropped: bounding set, ambient set, groups, ids, then the capabilities.
  for (uint32_t cap = 0; cap <= p.cap_last; ++cap) ::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
  ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  if (p.set_groups && ::setgroups(0, nullptr) != 0) die("setgroups");
  if (::setresgid(p.user_gid, p.user_gid, p.user_gid) != 0) die("setresgid");
  if (::setresuid(p.user_uid, p.user_uid, p.user_uid) != 0) die("setresuid");
  {
    struct __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2]{};
    if (::syscall(SYS_capset, &hdr, data) != 0) die("capset");
  }
  // The id change cleared the parent-death signal: again. Not dumpable (the code shares our uid
  // and must not drive this process through /proc), no new privileges.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 || ::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0) die("dumpable");
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die("no_new_privs");
  if (p.deferred) take_command(p);
  if (p.seccomp.empty() || p.seccomp.size() % sizeof(sock_filter) != 0) {
    errno = EINVAL;
    die("seccomp", "program");
  }
  Exec x;
  x.filter = {static_cast<unsigned short>(p.seccomp.size() / sizeof(sock_filter)), reinterpret_cast<sock_filter*>(p.seccomp.data())};
  for (auto& a : p.argv) x.argv.push_back(a.data());
  x.argv.push_back(nullptr);
  for (auto& e : p.envp) x.envp.push_back(e.data());
  x.envp.push_back(nullptr);
  int ep[2];
  if (::pipe2(ep, O_CLOEXEC) != 0) die("pipe");
  pid_t cmd = ::vfork();
  if (cmd < 0) die("fork");
  if (cmd == 0) exec_user(p, x, ep[1]);
  ::close(ep[1]);
  ::close(ap::sandbox::kInitStdinFd);
  ::close(ap::sandbox::kInitStdoutFd);
  ::close(ap::sandbox::kInitStderrFd);
  if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &x.filter) != 0) die("seccomp");
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
  std::string head = "R";
  const int32_t how = WIFEXITED(cmd_status) ? 0 : 1;
  const int32_t code = WIFEXITED(cmd_status) ? WEXITSTATUS(cmd_status) : WTERMSIG(cmd_status);
  put(head, &how, 4);
  put(head, &code, 4);
  put(head, &exec_errno, 4);
  write_all(kStatus, head.data(), head.size());
  // Beneath /work, through no symlink at all (/work is nodev: no device node opens here).
  static char buf[65536];
  const int work_fd = ::open("/work", O_PATH | O_DIRECTORY | O_CLOEXEC);
  for (uint32_t i = 0; i < p.read_back.size(); ++i) {
    int64_t len = -1;
    struct open_how oh{};
    oh.flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
    oh.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    int fd = work_fd < 0 ? -1 : static_cast<int>(::syscall(SYS_openat2, work_fd, p.read_back[i].c_str(), &oh, sizeof oh));
    struct stat st{};
    if (fd >= 0 && ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size <= p.read_back_cap) len = st.st_size;
    std::string frame;
    put(frame, &i, 4);
    put(frame, &len, 8);
    write_all(kStatus, frame.data(), frame.size());
    int64_t left = len;
    while (left > 0) {
      ssize_t r = ::read(fd, buf, static_cast<size_t>(std::min<int64_t>(left, sizeof buf)));
      if (r <= 0) {  // shrank meanwhile: pad, so the frame keeps its length
        std::memset(buf, 0, sizeof buf);
        r = static_cast<ssize_t>(std::min<int64_t>(left, sizeof buf));
      }
      write_all(kStatus, buf, static_cast<size_t>(r));
      left -= r;
    }
    if (fd >= 0) ::close(fd);
  }
  return 0;
}
