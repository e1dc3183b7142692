// The model gateway suite (tests/e2e/gateway.test.mjs) with the unmodified `openai` and
// `@anthropic-ai/sdk` npm clients against a real server and a mock provider the suite starts:
// routes, key injection from the vault, JSON and SSE relays, tool calls, errors, disconnects,
// usage records, limits and budgets; two tenants that never see each other's models or usage.
#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>
#include <sstream>

#include "tests/integration/fixture.h"

namespace ap::testing {
namespace {

TEST(ModelGateway, RealClientsPassAgainstTheServer) {
  const char* data = std::getenv("AP_TESTDATA");
  std::string dir = std::string(data ? data : "tests/testdata") + "/../e2e";
  if (!std::filesystem::exists(dir + "/node_modules/openai") || !std::filesystem::exists(dir + "/node_modules/@anthropic-ai/sdk"))
    FAIL() << "run `npm ci` in tests/e2e (scripts/install-deps.sh --with-node does)";
  TestServer server;
  auto a = server.make_tenant("gw-a");
  auto b = server.make_tenant("gw-b");
  auto r = node({"--test", "--test-reporter=tap", dir + "/gateway.test.mjs"},
                {"AGENTPLANE_URL=" + server.url(), "AGENTPLANE_KEY_A=" + a.key, "AGENTPLANE_KEY_B=" + b.key,
                 "AGENTPLANE_TENANT_B=" + b.id, "AGENTPLANE_ADMIN_TOKEN=" + server.admin_token()});
  add_evidence("stderr", r.err);
  std::istringstream lines(r.out);
  for (std::string l; std::getline(lines, l);)
    if (l.rfind("# ", 0) == 0 || l.find("not ok") != std::string::npos) std::cout << l << "\n";
  EXPECT_EQ(r.code, 0) << r.out.substr(r.out.size() > 20000 ? r.out.size() - 20000 : 0) << r.err;
  EXPECT_NE(r.out.find("# fail 0"), std::string::npos);
  EXPECT_EQ(r.out.find("# pass 0\n"), std::string::npos) << "nothing ran";
}

}  // namespace
}  // namespace ap::testing
