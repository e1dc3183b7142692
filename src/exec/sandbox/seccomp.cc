#include "exec/sandbox/seccomp.h"

#include <cerrno>
#include <cstring>
#include <mutex>
#include <sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

namespace ap::sandbox {
namespace {

struct Rule {
  const char* name;
  uint32_t action;
};

Result<std::vector<sock_filter>> build() {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (!ctx) return Error::internal("seccomp_init failed");
  const uint32_t eperm = SCMP_ACT_ERRNO(EPERM), enosys = SCMP_ACT_ERRNO(ENOSYS), kill = SCMP_ACT_KILL_PROCESS;
  const Rule rules[] = {
      // Probed by runtimes, which fall back: answer ENOSYS.
      {"clone3", enosys},  // glibc's posix_spawn/pthread_create fall back to clone (flags checked below)
      {"io_uring_setup", enosys}, {"io_uring_enter", enosys}, {"io_uring_register", enosys},  // libuv
      {"userfaultfd", enosys}, {"perf_event_open", enosys}, {"bpf", enosys},
      // Other processes, namespaces, mounts, keys: EPERM (as an unprivileged process would get).
      {"ptrace", eperm}, {"process_vm_readv", eperm}, {"process_vm_writev", eperm},
      {"process_madvise", eperm}, {"pidfd_getfd", eperm}, {"kcmp", eperm},
      {"unshare", eperm}, {"setns", eperm},
      {"mount", eperm}, {"umount2", eperm}, {"pivot_root", eperm}, {"chroot", eperm},
      {"move_mount", eperm}, {"open_tree", eperm}, {"fsopen", eperm}, {"fsconfig", eperm},
      {"fsmount", eperm}, {"fspick", eperm}, {"mount_setattr", eperm},
      {"keyctl", eperm}, {"add_key", eperm}, {"request_key", eperm},
      {"fanotify_init", eperm}, {"open_by_handle_at", eperm}, {"name_to_handle_at", eperm},
      {"personality", eperm}, {"syslog", eperm}, {"vhangup", eperm}, {"acct", eperm},
      {"settimeofday", eperm}, {"clock_settime", eperm}, {"clock_adjtime", eperm}, {"adjtimex", eperm},
      // Never legitimate in a sandbox: kill.
      {"kexec_load", kill}, {"kexec_file_load", kill}, {"init_module", kill}, {"finit_module", kill},
      {"delete_module", kill}, {"reboot", kill}, {"swapon", kill}, {"swapoff", kill},
      {"iopl", kill}, {"ioperm", kill}, {"quotactl", kill}, {"quotactl_fd", kill}, {"lookup_dcookie", kill},
      {"nfsservctl", kill}, {"uselib", kill}, {"_sysctl", kill}, {"create_module", kill},
      {"get_kernel_syms", kill}, {"query_module", kill}, {"vm86", kill}, {"vm86old", kill},
  };
  for (const auto& r : rules) {
    int nr = seccomp_syscall_resolve_name(r.name);
    if (nr == __NR_SCMP_ERROR) continue;  // not on this architecture
    if (seccomp_rule_add(ctx, r.action, nr, 0) != 0) {
      seccomp_release(ctx);
      return Error::internal(std::string("seccomp rule for ") + r.name + " failed");
    }
  }
  // clone: any namespace flag (seccomp sees clone's flags, unlike clone3's: hence its ENOSYS).
  const uint64_t ns_flags[] = {CLONE_NEWUSER, CLONE_NEWNS,  CLONE_NEWPID,    CLONE_NEWNET,
                               CLONE_NEWIPC,  CLONE_NEWUTS, CLONE_NEWCGROUP, 0x00000080 /* CLONE_NEWTIME */};
  bool ok = true;
  for (uint64_t f : ns_flags) ok = ok && seccomp_rule_add(ctx, eperm, SCMP_SYS(clone), 1, SCMP_A0(SCMP_CMP_MASKED_EQ, f, f)) == 0;
  // Typing into a terminal (there is none, but the fds could be one in other uses).
  ok = ok && seccomp_rule_add(ctx, eperm, SCMP_SYS(ioctl), 1, SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCSTI)) == 0;
  ok = ok && seccomp_rule_add(ctx, eperm, SCMP_SYS(ioctl), 1, SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCLINUX)) == 0;
  if (!ok) {
    seccomp_release(ctx);
    return Error::internal("seccomp: a clone or ioctl rule failed");
  }
  int fd = ::memfd_create("agentplane-seccomp", MFD_CLOEXEC);
  if (fd < 0) {
    seccomp_release(ctx);
    return Error::internal(std::string("memfd_create: ") + std::strerror(errno));
  }
  int rc = seccomp_export_bpf(ctx, fd);
  seccomp_release(ctx);
  if (rc != 0) {
    ::close(fd);
    return Error::internal("seccomp_export_bpf failed: " + std::to_string(rc));
  }
  std::vector<sock_filter> prog;
  off_t size = ::lseek(fd, 0, SEEK_END);
  if (size > 0 && size % static_cast<off_t>(sizeof(sock_filter)) == 0) {
    prog.resize(static_cast<size_t>(size) / sizeof(sock_filter));
    ssize_t n = ::pread(fd, prog.data(), static_cast<size_t>(size), 0);
    if (n != size) prog.clear();
  }
  ::close(fd);
  if (prog.empty()) return Error::internal("seccomp: the exported program is empty");
  return prog;
}

}  // namespace

Result<const std::vector<sock_filter>*> seccomp_program() {
  static std::once_flag once;
  static Result<std::vector<sock_filter>> built = Error::internal("not built");
  std::call_once(once, [] { built = build(); });
  if (!built) return built.error();
  return &*built;
}

}  // namespace ap::sandbox
