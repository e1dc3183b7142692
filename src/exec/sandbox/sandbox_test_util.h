// Runs a sandbox spec to completion on a private io_context (tests only).
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include "exec/sandbox/sandbox.h"

namespace ap::sandbox::testing {

inline Result<RunResult> run_sync(Sandbox& sb, Spec spec, OnOutput on_output = {}) {
  boost::asio::io_context ioc;
  auto f = boost::asio::co_spawn(ioc, sb.run(std::move(spec), std::move(on_output)), boost::asio::use_future);
  ioc.run();
  return f.get();
}

// Every backend that can run here: native always, gvisor where runsc is installed (and root).
inline std::vector<std::string> backends() {
  std::vector<std::string> out = {"native"};
  if (probe("gvisor").available) out.push_back("gvisor");
  return out;
}

// A test per backend (the parameter): sb_ is that backend's sandbox; skipped without root.
class BackendTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "sandboxes need root here (cgroups; CI runs as root)";
    auto sb = make_sandbox(GetParam());
    ASSERT_TRUE(sb) << sb.error().message;
    sb_ = std::move(*sb);
  }
  std::unique_ptr<Sandbox> sb_;
};

inline Spec sh(const std::string& script) {
  Spec s;
  s.argv = {"/bin/sh", "-c", script};
  s.limits.wall = std::chrono::seconds(10);
  return s;
}

}  // namespace ap::sandbox::testing
