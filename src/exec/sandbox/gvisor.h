// The gVisor backend: the same spec run by runsc (a user-space kernel between the code and the
// host) on an OCI bundle, with --network=none. Use make_sandbox("gvisor").
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "exec/sandbox/sandbox.h"

namespace ap::sandbox {

std::unique_ptr<Sandbox> make_gvisor_sandbox(const Options& options);
Probe probe_gvisor(const Options& options);
// Removes what a killed server left in the state root `root` (shared by a host's servers): the
// bundles, their workspaces still mounted, of containers runsc does not run and older than
// `min_age`. Done when a gvisor sandbox is made; returns how many were removed.
int sweep_bundles(const std::string& root, const std::string& runsc, std::chrono::seconds min_age);

}  // namespace ap::sandbox
