// `agentplane sandbox run` and `sandbox probe`: operators try the sandbox on this host, no server
// needed. Output streams as the command writes it; the exit status is the command's (128+signal
// when killed; 125 for an error of the platform); a one-line summary goes to stderr.
#pragma once

#include <string>
#include <vector>

namespace ap::app::cli {

struct SandboxRunOptions {
  std::string backend = "native";
  std::string timeout = "10s";   // wall clock: 500ms, 5s, 2m
  std::string memory = "256M";   // 64M, 1G
  int pids = 64;
  std::string disk = "64M";
  bool network = false;          // egress through the sandbox's proxy, as the policy below allows
  std::vector<std::string> egress_allow;  // hosts / networks besides public addresses
  bool egress_public = true;
  bool quiet = false;            // no summary line
  std::vector<std::string> files;  // local files copied into the workspace (by their base name)
  std::vector<std::string> command;
};

int sandbox_run(const SandboxRunOptions& o);
int sandbox_probe();

}  // namespace ap::app::cli
