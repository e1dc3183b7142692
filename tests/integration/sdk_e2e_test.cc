// The LangGraph JS SDK suite (tests/e2e, `@langchain/langgraph-sdk` 1.15.0 unmodified) against a
// real server with two tenants: every SDK call the suite makes must behave as LangGraph's
// server does, and tenant B must never see tenant A's objects.
#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>
#include <sstream>

#include "tests/integration/fixture.h"

namespace ap::testing {
namespace {

TEST(LangGraphSdk, SuitePassesAgainstTheServer) {
  const char* data = std::getenv("AP_TESTDATA");
  std::string dir = std::string(data ? data : "tests/testdata") + "/../e2e";
  if (!std::filesystem::exists(dir + "/node_modules/@langchain/langgraph-sdk"))
    FAIL() << "run `npm ci` in tests/e2e (scripts/install-deps.sh --with-node does)";
  TestServer server;
  auto a = server.make_tenant("sdk-a");
  auto b = server.make_tenant("sdk-b");
  auto r = node({"--test", "--test-reporter=tap", dir + "/sdk.test.mjs"},
                {"AGENTPLANE_URL=" + server.url(), "AGENTPLANE_KEY_A=" + a.key, "AGENTPLANE_KEY_B=" + b.key});
  add_evidence("stderr", r.err);
  // The summary, and what was skipped or left to do, in the test's log.
  std::istringstream lines(r.out);
  for (std::string l; std::getline(lines, l);)
    if (l.rfind("# ", 0) == 0 || l.find("# SKIP") != std::string::npos || l.find("# TODO") != std::string::npos)
      std::cout << l << "\n";
  EXPECT_EQ(r.code, 0) << r.out.substr(r.out.size() > 20000 ? r.out.size() - 20000 : 0) << r.err;
  EXPECT_NE(r.out.find("# fail 0"), std::string::npos);
  EXPECT_EQ(r.out.find("# pass 0\n"), std::string::npos) << "nothing ran";
}

}  // namespace
}  // namespace ap::testing
