// The gVisor backend: the same spec run by runsc (a user-space kernel between the code and the
// host) on an OCI bundle, with --network=none. Use make_sandbox("gvisor").
#pragma once

#include <memory>

#include "exec/sandbox/sandbox.h"

namespace ap::sandbox {

std::unique_ptr<Sandbox> make_gvisor_sandbox(const Options& options);
Probe probe_gvisor(const Options& options);

}  // namespace ap::sandbox
