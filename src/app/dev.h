// `agentplane dev`: a private PostgreSQL in a data folder, migrations, a demo tenant with a key,
// and the server, with no set-up. Blocks until SIGINT/SIGTERM.
#pragma once

#include <string>
#include <vector>

namespace ap::app {

struct DevConfig {
  std::string data_dir;  // default: $HOME/.agentplane
  std::string listen = "127.0.0.1:8123";
  int threads = 0;
  size_t pool_size = 0;  // PostgreSQL connections per thread; 0: the server's default
  int worker_concurrency = 0;  // runs at once; 0: the worker's default
  std::vector<std::string> egress_allow;  // as serve --egress-allow (e.g. a local model server)
  std::string redis_url;  // set: limits on that Redis (serve --ratelimit-backend redis)
  std::string log_level = "info";
  std::string log_file;  // default: <data_dir>/agentplane.log; "-" for stderr
};

// Where dev keeps its files (dev.json has the URL, admin token and the demo tenant's key).
std::string default_data_dir();

int run_dev(const DevConfig& config);

}  // namespace ap::app
