// The native backend (namespaces + seccomp + cgroups); use make_sandbox("native").
#pragma once

#include <memory>
#include <string_view>

#include "exec/sandbox/sandbox.h"

namespace ap::sandbox {

std::unique_ptr<Sandbox> make_native_sandbox(const Options& options);
Probe probe_native();
// The sandbox init program's bytes (a static executable; gvisor uses its egress relay mode).
std::string_view sandbox_init_program();

}  // namespace ap::sandbox
