// The sandbox's seccomp-bpf filter, built once with libseccomp and kept as a BPF program that a
// freshly cloned child can load with one prctl (no allocation after clone).
// Denied: the families a sandbox never needs and attackers do (see seccomp.cc for the list):
// EPERM or ENOSYS where common runtimes probe and fall back (io_uring, clone3, ...), the process
// killed (SIGSYS) for the rest. clone with any namespace flag: EPERM.
#pragma once

#include <linux/filter.h>
#include <vector>

#include "common/result.h"

namespace ap::sandbox {

// One denied system call and what a call gets.
struct DenyRule {
  enum Action { kEperm, kEnosys, kKill };
  const char* name;
  Action action;
};
// The list (the same for every backend: gvisor hands it to runsc as the OCI seccomp profile).
std::vector<DenyRule> deny_rules();
// clone's namespace flags (any of them set: EPERM).
std::vector<unsigned long> clone_namespace_flags();
// socket/socketpair address families refused with EAFNOSUPPORT: all but AF_UNIX, AF_INET,
// AF_INET6 and AF_NETLINK, i.e. these below 17 and everything from 17 on (AF_VSOCK among them:
// it ignores network namespaces and reaches the VM's host).
std::vector<int> denied_low_families();
constexpr int kFirstDeniedFamily = 17;

// The program, built on first use (thread-safe). Internal error if libseccomp fails.
Result<const std::vector<sock_filter>*> seccomp_program();

}  // namespace ap::sandbox
