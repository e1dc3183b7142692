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

Result<std::vector<sock_filter>> build() {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (!ctx) return Error::internal("seccomp_init failed");
  const uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
  for (const auto& r : deny_rules()) {
    int nr = seccomp_syscall_resolve_name(r.name);
    if (nr == __NR_SCMP_ERROR) continue;  // not on this architecture
    const uint32_t action = r.action == DenyRule::kEperm    ? eperm
                            : r.action == DenyRule::kEnosys ? SCMP_ACT_ERRNO(ENOSYS)
                                                            : SCMP_ACT_KILL_PROCESS;
    if (seccomp_rule_add(ctx, action, nr, 0) != 0) {
      seccomp_release(ctx);
      return Error::internal(std::string("seccomp rule for ") + r.name + " failed");
    }
  }
  // clone: any namespace flag (seccomp sees clone's flags, unlike clone3's: hence its ENOSYS).
  bool ok = true;
  for (uint64_t f : clone_namespace_flags()) ok = ok && seccomp_rule_add(ctx, eperm, SCMP_SYS(clone), 1, SCMP_A0(SCMP_CMP_MASKED_EQ, f, f)) == 0;
  for (int sc : {SCMP_SYS(socket), SCMP_SYS(socketpair)}) {
    ok = ok && seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), sc, 1, SCMP_A0(SCMP_CMP_GE, kFirstDeniedFamily)) == 0;
    for (int af : denied_low_families())
      ok = ok && seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), sc, 1, SCMP_A0(SCMP_CMP_EQ, static_cast<uint64_t>(af))) == 0;
  }
  // Typing into a terminal (there is none, but the fds could be one in other uses).
  ok = ok && seccomp_rule_add(ctx, eperm, SCMP_SYS(ioctl), 1, SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCSTI)) == 0;
  ok = ok && seccomp_rule_add(ctx, eperm, SCMP_SYS(ioctl), 1, SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCLINUX)) == 0;
  if (!ok) {
    seccomp_release(ctx);
    return Error::internal("seccomp: a clone, socket or ioctl rule failed");
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

std::vector<DenyRule> deny_rules() {
  using A = DenyRule;
  return {
      // Probed by runtimes, which fall back: answer ENOSYS.
      {"clone3", A::kEnosys},  // glibc's posix_spawn/pthread_create fall back to clone (flags checked)
      {"io_uring_setup", A::kEnosys}, {"io_uring_enter", A::kEnosys}, {"io_uring_register", A::kEnosys},  // libuv
      {"userfaultfd", A::kEnosys}, {"perf_event_open", A::kEnosys}, {"bpf", A::kEnosys},
      // Other processes, namespaces, mounts, keys: EPERM (as an unprivileged process would get).
      {"ptrace", A::kEperm}, {"process_vm_readv", A::kEperm}, {"process_vm_writev", A::kEperm},
      {"process_madvise", A::kEperm}, {"pidfd_getfd", A::kEperm}, {"kcmp", A::kEperm},
      {"unshare", A::kEperm}, {"setns", A::kEperm},
      {"mount", A::kEperm}, {"umount2", A::kEperm}, {"pivot_root", A::kEperm}, {"chroot", A::kEperm},
      {"move_mount", A::kEperm}, {"open_tree", A::kEperm}, {"fsopen", A::kEperm}, {"fsconfig", A::kEperm},
      {"fsmount", A::kEperm}, {"fspick", A::kEperm}, {"mount_setattr", A::kEperm},
      {"keyctl", A::kEperm}, {"add_key", A::kEperm}, {"request_key", A::kEperm},
      {"fanotify_init", A::kEperm}, {"open_by_handle_at", A::kEperm}, {"name_to_handle_at", A::kEperm},
      {"personality", A::kEperm}, {"modify_ldt", A::kEperm}, {"syslog", A::kEperm}, {"vhangup", A::kEperm}, {"acct", A::kEperm},
      {"settimeofday", A::kEperm}, {"clock_settime", A::kEperm}, {"clock_adjtime", A::kEperm}, {"adjtimex", A::kEperm},
      // Never legitimate in a sandbox: kill.
      {"kexec_load", A::kKill}, {"kexec_file_load", A::kKill}, {"init_module", A::kKill}, {"finit_module", A::kKill},
      {"delete_module", A::kKill}, {"reboot", A::kKill}, {"swapon", A::kKill}, {"swapoff", A::kKill},
      {"iopl", A::kKill}, {"ioperm", A::kKill}, {"quotactl", A::kKill}, {"quotactl_fd", A::kKill},
      {"lookup_dcookie", A::kKill}, {"nfsservctl", A::kKill}, {"uselib", A::kKill}, {"_sysctl", A::kKill},
      {"create_module", A::kKill}, {"get_kernel_syms", A::kKill}, {"query_module", A::kKill}, {"vm86", A::kKill},
      {"vm86old", A::kKill},
  };
}

std::vector<int> denied_low_families() { return {0, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15}; }

std::vector<unsigned long> clone_namespace_flags() {
  return {CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWCGROUP,
          0x00000080 /* CLONE_NEWTIME */};
}

Result<const std::vector<sock_filter>*> seccomp_program() {
  static std::once_flag once;
  static Result<std::vector<sock_filter>> built = Error::internal("not built");
  std::call_once(once, [] { built = build(); });
  if (!built) return built.error();
  return &*built;
}

}  // namespace ap::sandbox
