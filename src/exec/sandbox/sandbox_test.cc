// The sandbox's interface on every backend that runs here: what goes in comes out.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "common/thread_priority.h"
#include "exec/sandbox/cgroup.h"
#include "exec/sandbox/sandbox.h"
#include "exec/sandbox/sandbox_test_util.h"
#include "exec/sandbox/warm_sets.h"

namespace ap::sandbox {
namespace {

using testing::run_sync;
using testing::sh;

using Native = testing::BackendTest;

TEST_P(Native, StdinStdoutStderrAndTheExitCode) {
  Spec s = sh("cat; echo oops >&2; exit 3");
  s.stdin_data = "hello from stdin";
  std::string streamed;
  auto r = run_sync(*sb_, s, [&](int fd, std::string_view chunk) {
    if (fd == 1) streamed += chunk;
  });
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->outcome, Outcome::kExited) << r->summary();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->stdout_data, "hello from stdin");
  EXPECT_EQ(streamed, "hello from stdin");
  EXPECT_EQ(r->stderr_data, "oops\n");
  EXPECT_GT(r->usage.wall_s, 0);
}

// Started from a server thread of raised priority (the worker's, --worker-nice), the sandbox's
// processes still run at the server process's own.
TEST_P(Native, TenantCodeRunsAtTheServersPriorityNotAtItsThreads) {
  std::string out, error;
  bool raised = false;
  std::thread t([&] {
    if (set_thread_nice(process_nice() - 5) != 0) return;  // needs CAP_SYS_NICE
    raised = true;
    auto r = run_sync(*sb_, sh("cut -d' ' -f19 /proc/self/stat"));
    if (r) out = r->stdout_data + r->stderr_data;
    else error = r.error().message;
  });
  t.join();
  if (!raised) GTEST_SKIP() << "this process may not raise a thread's priority (CAP_SYS_NICE)";
  ASSERT_TRUE(error.empty()) << error;
  EXPECT_EQ(out, std::to_string(process_nice()) + "\n");
}

TEST_P(Native, FilesGoInAndComeBack) {
  Spec s = sh("cat data/in.txt | tr a-z A-Z > out.txt; mkdir -p d; echo x > d/y; ln -s /etc/passwd link");
  s.files = {{"data/in.txt", "shout", 0644}};
  s.read_back = {"out.txt", "d/y", "missing.txt", "link"};
  auto r = run_sync(*sb_, s);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(r->ok()) << r->summary() << "\nstdout: " << r->stdout_data << "\nstderr: " << r->stderr_data;
  EXPECT_EQ(r->files["out.txt"], "SHOUT");
  EXPECT_EQ(r->files["d/y"], "x\n");
  EXPECT_EQ(r->files.count("missing.txt"), 0u);
  EXPECT_EQ(r->files.count("link"), 0u) << "a symlink is not followed out of the workspace";
}

TEST_P(Native, TheEnvironmentIsOnlyWhatTheSpecGives) {
  ::setenv("AGENTPLANE_TEST_LAUNCHER_SECRET", "launcher-value", 1);
  Spec s = sh("env | sort");
  s.env = {{"GREETING", "hi"}};
  auto r = run_sync(*sb_, s);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->stdout_data.find("launcher-value"), std::string::npos);
  EXPECT_NE(r->stdout_data.find("GREETING=hi\n"), std::string::npos) << r->stdout_data;
  EXPECT_NE(r->stdout_data.find("HOME=/work\n"), std::string::npos);
  EXPECT_NE(r->stdout_data.find("PATH=/usr/local/bin:/usr/bin:/bin\n"), std::string::npos);
}

TEST_P(Native, RuntimesRun) {
  Spec py;
  py.argv = {"python3", "-c", "import json, sys; print(json.dumps({'sum': sum(json.load(sys.stdin))}))"};
  py.stdin_data = "[1, 2, 3]";
  auto r = run_sync(*sb_, py);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(r->ok()) << r->summary() << r->stderr_data;
  EXPECT_EQ(r->stdout_data, "{\"sum\": 6}\n");
  Spec node;
  node.argv = {"node", "-e", "let s = ''; process.stdin.on('data', d => s += d).on('end', () => console.log(JSON.parse(s).length))"};
  node.stdin_data = "[1, 2, 3, 4]";
  node.limits.memory_bytes = 512ll << 20;
  auto n = run_sync(*sb_, node);
  ASSERT_TRUE(n) << n.error().message;
  EXPECT_TRUE(n->ok()) << n->summary() << n->stderr_data;
  EXPECT_EQ(n->stdout_data, "4\n");
}

TEST_P(Native, AMissingCommandIs127) {
  Spec s;
  s.argv = {"no-such-command"};
  auto r = run_sync(*sb_, s);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->exit_code, 127);
  EXPECT_NE(r->stderr_data.find("cannot execute no-such-command"), std::string::npos) << r->stderr_data;
}

TEST_P(Native, BadSpecsAreRefusedBeforeAnythingRuns) {
  Spec empty;
  EXPECT_EQ(run_sync(*sb_, empty).error().code, Code::kInvalidArgument);
  Spec up = sh("true");
  up.files = {{"../escape", "x", 0644}};
  EXPECT_EQ(run_sync(*sb_, up).error().code, Code::kInvalidArgument);
  Spec abs = sh("true");
  abs.read_back = {"/etc/passwd"};
  EXPECT_EQ(run_sync(*sb_, abs).error().code, Code::kInvalidArgument);
  Spec lim = sh("true");
  lim.limits.memory_bytes = 1;
  EXPECT_EQ(run_sync(*sb_, lim).error().code, Code::kInvalidArgument);
  Spec net = sh("true");  // network without an egress check (the policy)
  net.network = true;
  EXPECT_EQ(run_sync(*sb_, net).error().code, Code::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Backends, Native, ::testing::ValuesIn(testing::backends()));

TEST(NativeWarmPool, ARunTakesAFreshStartedSandboxOfItsTenantOnce) {
  if (::geteuid() != 0) GTEST_SKIP() << "sandboxes need root here (cgroups; CI runs as root)";
  Options o;
  o.warm_pool = 1;
  auto sb = make_sandbox("native", o);
  ASSERT_TRUE(sb) << sb.error().message;
  auto run = [&](const std::string& tenant, Spec s) {
    s.tenant = tenant;
    auto r = testing::run_sync(**sb, s);  // returns once the refill behind it has started too
    EXPECT_TRUE(r) << r.error().message;
    return r ? *r : RunResult{};
  };
  // The first run of a tenant is cold and starts a warm sandbox behind it.
  auto first = run("tenant-a", testing::sh("echo left > /work/a; echo left > /tmp/b; echo cold"));
  EXPECT_FALSE(first.warm);
  EXPECT_EQ(first.stdout_data, "cold\n");
  // The next run of that tenant and those limits takes it: its files, argv, environment, stdin
  // and read-back arrive; nothing of the earlier run is there; it is PID 2 of its own namespace.
  Spec s = testing::sh("ls -A /work /tmp; cat data/in.txt; echo \"$GREETING $$\"; tr a-z A-Z > out.txt; "
                       "head -c 100000 /dev/zero | tr '\\0' a > big.txt");
  s.files = {{"data/in.txt", "from the spec\n", 0644}};
  s.env = {{"GREETING", "hi"}};
  s.stdin_data = "shout";
  s.read_back = {"out.txt", "big.txt"};
  auto warm = run("tenant-a", s);
  EXPECT_TRUE(warm.warm);
  EXPECT_TRUE(warm.ok()) << warm.summary() << warm.stderr_data;
  EXPECT_EQ(warm.stdout_data, "/tmp:\n\n/work:\ndata\nfrom the spec\nhi 2\n");
  EXPECT_EQ(warm.files["out.txt"], "SHOUT");
  EXPECT_EQ(warm.files["big.txt"], std::string(100000, 'a'));
  // Its limits hold as in a cold one; its CPU time is the run's, not the setup's.
  Spec hog;
  hog.argv = {"python3", "-c", "b = bytearray(1 << 30)"};
  hog.limits.memory_bytes = 64ll << 20;
  (void)run("tenant-a", hog);  // cold, with these limits: starts a warm one of them
  auto oom = run("tenant-a", hog);
  EXPECT_TRUE(oom.warm);
  EXPECT_EQ(oom.outcome, Outcome::kOomKilled) << oom.summary();
  EXPECT_LT(oom.usage.cpu_s, 5.0);
  // Another tenant never gets tenant-a's sandbox.
  auto other = run("tenant-b", testing::sh("echo b"));
  EXPECT_FALSE(other.warm);
}

TEST(GvisorWarmPool, ARunTakesAStartedSandboxOfItsTenantResetToFresh) {
  if (::geteuid() != 0 || !probe("gvisor").available) GTEST_SKIP() << "gvisor cannot run here";
  Options o;
  o.warm_pool = 1;
  auto sb = make_sandbox("gvisor", o);
  ASSERT_TRUE(sb) << sb.error().message;
  auto run = [&](const std::string& tenant, const std::string& script) {
    Spec s = testing::sh(script);
    s.tenant = tenant;
    auto r = testing::run_sync(**sb, s);
    EXPECT_TRUE(r) << r.error().message;
    return r ? *r : RunResult{};
  };
  // The first run of a tenant is cold and starts a warm sandbox behind it.
  auto first = run("tenant-a", "echo left > /work/a; echo left > /tmp/b; (sleep 60 &) ; echo cold");
  EXPECT_FALSE(first.warm);
  EXPECT_EQ(first.stdout_data, "cold\n");
  RunResult warm;
  for (int i = 0; i < 20 && !warm.warm; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    warm = run("tenant-a", "ls -A /work /tmp 2>/dev/null; cat /work/a /tmp/b 2>/dev/null; echo x > /work/a; "
                           "(sleep 60 &); echo warm $(pwd) $HOME");
  }
  ASSERT_TRUE(warm.warm) << "no warm sandbox was used";
  EXPECT_TRUE(warm.ok()) << warm.summary() << warm.stderr_data;
  EXPECT_EQ(warm.stdout_data, "warm /work /work\n") << "a warm sandbox must start empty";
  // Reset after that run: its file and its background process are gone for the next one.
  RunResult again;
  for (int i = 0; i < 20 && !again.warm; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    again = run("tenant-a", "cat /work/a 2>/dev/null; set -- /proc/[0-9]*; echo $#");
  }
  ASSERT_TRUE(again.warm);
  // The keeper (1) and this shell: nothing left from before.
  EXPECT_EQ(again.stdout_data, "2\n") << again.stdout_data;
  // Another tenant never gets tenant-a's sandbox.
  auto other = run("tenant-b", "echo b");
  EXPECT_FALSE(other.warm);
}

// The warm pools' bookkeeping (both backends): the least recently used sets make room; a set
// that is still starting a sandbox keeps its place; sets that hold nothing are forgotten.
TEST(WarmSets, LeastRecentlyUsedSetsMakeRoomAndEmptyOnesAreForgotten) {
  WarmSets<std::vector<std::unique_ptr<int>>> w;
  std::vector<std::unique_ptr<int>> dropped;
  w.touch("a");
  w.ready["a"].push_back(std::make_unique<int>(1));
  w.touch("b");
  w.starting["b"] = 1;
  w.touch("c");
  EXPECT_EQ(w.make_room("c", 1, 2, dropped), 1) << "a's ready sandbox made room";
  ASSERT_EQ(dropped.size(), 1u);
  EXPECT_EQ(*dropped[0], 1);
  EXPECT_FALSE(w.kept("a"));
  EXPECT_TRUE(w.kept("b")) << "still starting one";
  w.starting["c"] = 1;
  EXPECT_EQ(w.make_room("c", 1, 2, dropped), 0) << "b's start cannot be dropped";
  EXPECT_EQ(w.total(), 2);
  // b's start failed (nothing held): the next touch forgets it.
  w.starting["b"] = 0;
  w.touch("d");
  EXPECT_FALSE(w.kept("b"));
  EXPECT_FALSE(w.starting.count("b"));
  EXPECT_TRUE(w.kept("c") && w.kept("d"));
}

// With room for one set, a new tenant's set takes the place of the least recently used one:
// the sandboxes of a tenant that stopped running code do not hold the bound for good.
TEST(GvisorWarmPool, TheLeastRecentlyUsedSetMakesRoom) {
  if (::geteuid() != 0 || !probe("gvisor").available) GTEST_SKIP() << "gvisor cannot run here";
  Options o;
  o.warm_pool = 1;
  o.warm_sets = 1;
  auto sb = make_sandbox("gvisor", o);
  ASSERT_TRUE(sb) << sb.error().message;
  auto run = [&](const std::string& tenant) {
    Spec s = testing::sh("echo hi");
    s.tenant = tenant;
    auto r = testing::run_sync(**sb, s);
    EXPECT_TRUE(r) << r.error().message;
    return r ? r->warm : false;
  };
  auto warm_within = [&](const std::string& tenant) {
    for (int i = 0; i < 30; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      if (run(tenant)) return true;
    }
    return false;
  };
  EXPECT_FALSE(run("tenant-a"));  // cold; a's warm sandbox starts behind it
  ASSERT_TRUE(warm_within("tenant-a"));
  std::this_thread::sleep_for(std::chrono::seconds(2));  // a's replacement is ready, not starting
  EXPECT_FALSE(run("tenant-b"));  // cold; a's set is dropped to start b's
  EXPECT_TRUE(warm_within("tenant-b")) << "b never got a warm sandbox: a's kept the only room";
  EXPECT_FALSE(run("tenant-a")) << "a's set was dropped";
}

TEST(Cgroups, TheSweepRemovesEmptyRunCgroupsAndKeepsLiveOnes) {
  if (::geteuid() != 0) GTEST_SKIP() << "cgroups need root here";
  const std::string parent = "agentplane-sweep-test-" + std::to_string(::getpid());
  auto empty = Cgroup::create(parent, "run-left-behind", {});
  auto live = Cgroup::create(parent, "run-live", {});
  auto other = Cgroup::create(parent, "not-a-run", {});
  ASSERT_TRUE(empty && live && other);
  pid_t sleeper = ::fork();
  if (sleeper == 0) {
    ::execl("/bin/sleep", "sleep", "30", nullptr);
    ::_exit(127);
  }
  ASSERT_TRUE(live->add(sleeper));
  auto exists = [](const Cgroup& c) { return ::access(c.dirs().front().c_str(), F_OK) == 0; };
  EXPECT_EQ(Cgroup::sweep(parent, 3600), 0) << "nothing that young is swept";
  EXPECT_EQ(Cgroup::sweep(parent, 0), 1);
  EXPECT_FALSE(exists(*empty));
  EXPECT_TRUE(exists(*live)) << "a cgroup with a process stays";
  EXPECT_TRUE(exists(*other)) << "only run cgroups are swept";
  ::kill(sleeper, SIGKILL);
  ::waitpid(sleeper, nullptr, 0);
  std::vector<std::string> parents;
  for (const auto& d : live->dirs()) parents.push_back(d.substr(0, d.rfind('/')));
  for (int i = 0; i < 100 && !live->remove(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_TRUE(other->remove());
  for (const auto& p : parents) EXPECT_EQ(::rmdir(p.c_str()), 0) << p;
}

TEST(GvisorSweep, BundlesAKilledServerLeftAreRemovedAndUnmounted) {
  if (::geteuid() != 0 || !probe("gvisor").available) GTEST_SKIP() << "gvisor cannot run here";
  namespace fs = std::filesystem;
  const fs::path root = fs::temp_directory_path() / ("ap-sweep-" + std::to_string(::getpid()));
  for (const char* d : {"bundles/ap-stale/work", "bundles/ap-fresh/work", "bundles/ap-in-use/work", "bundles/other/work", "state"})
    fs::create_directories(root / d);
  // Another server's bundle, old but in use: it holds the bundle's lock.
  int held = ::open((root / "bundles/ap-in-use/.lock").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
  ASSERT_EQ(::flock(held, LOCK_EX), 0);
  ASSERT_EQ(::mount("tmpfs", (root / "bundles/ap-stale/work").c_str(), "tmpfs", 0, "size=1m"), 0);
  const auto old = fs::file_time_type::clock::now() - std::chrono::hours(1);
  fs::last_write_time(root / "bundles/ap-stale", old);
  fs::last_write_time(root / "bundles/other", old);
  fs::last_write_time(root / "bundles/ap-in-use", old);
  Options o;
  o.state_dir = root.string();
  auto sb = make_sandbox("gvisor", o);  // sweeps its state root
  ASSERT_TRUE(sb) << sb.error().message;
  EXPECT_FALSE(fs::exists(root / "bundles/ap-stale")) << "a stale bundle (and its mounted workspace) is removed";
  EXPECT_TRUE(fs::exists(root / "bundles/ap-fresh")) << "a young one may be another server's run starting";
  EXPECT_TRUE(fs::exists(root / "bundles/other")) << "only ours";
  EXPECT_TRUE(fs::exists(root / "bundles/ap-in-use")) << "a bundle another server holds stays";
  ::close(held);
  std::error_code ec;
  fs::remove_all(root, ec);
}

TEST(Backends, MicrovmSaysWhyItIsAbsent) {
  Probe p = probe("microvm");
  EXPECT_FALSE(p.available);
  EXPECT_FALSE(p.detail.empty());
  auto sb = make_sandbox("microvm");
  ASSERT_FALSE(sb);
  EXPECT_EQ(sb.error().code, Code::kFailedPrecondition);
  EXPECT_FALSE(make_sandbox("nope"));
}

}  // namespace
}  // namespace ap::sandbox
