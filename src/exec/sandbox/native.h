// The native backend (namespaces + seccomp + cgroups); use make_sandbox("native").
#pragma once

#include <memory>

#include "exec/sandbox/sandbox.h"

namespace ap::sandbox {

std::unique_ptr<Sandbox> make_native_sandbox(const Options& options);
Probe probe_native();

}  // namespace ap::sandbox
