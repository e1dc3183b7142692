// The hostile-code suite: real attacks, each asserted contained and the host untouched. At the
// end a table of cases and outcomes is printed. "Denied" means EPERM, ENOSYS or SIGSYS.
// Runs for every backend that can run here (native; gvisor where runsc is installed).
#include <arpa/inet.h>
#include <dirent.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <thread>

#include "exec/sandbox/sandbox.h"
#include "exec/sandbox/sandbox_test_util.h"

namespace ap::sandbox {
namespace {

using testing::run_sync;
using testing::sh;

struct Row {
  std::string backend, name, outcome;
  bool contained;
};
std::vector<Row>& table() {
  static std::vector<Row> rows;
  return rows;
}

class PrintTable : public ::testing::Environment {
 public:
  void TearDown() override {
    std::cout << "\nHostile-code suite\n";
    std::cout << std::left << std::setw(8) << "backend" << std::setw(56) << "case" << std::setw(11) << "contained"
              << "outcome\n";
    for (const auto& r : table())
      std::cout << std::setw(8) << r.backend << std::setw(56) << r.name << std::setw(11) << (r.contained ? "yes" : "NO")
                << r.outcome << "\n";
  }
};
const auto* const kTable = ::testing::AddGlobalTestEnvironment(new PrintTable);

// This suite's sandboxes take host ids of their own, above the default range, so that the
// sandboxes of other tests running at the same time (ctest -j) are not counted below.
Options hostile_options() {
  Options o;
  o.host_id_base = Options{}.host_id_base + 4 * o.id_range;
  return o;
}

// Processes on the host owned by this suite's sandboxes' host ids: none may outlive a run.
int sandbox_processes() {
  int n = 0;
  DIR* d = ::opendir("/proc");
  if (!d) return -1;
  while (auto* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream in(std::string("/proc/") + e->d_name + "/status");
    std::string line;
    while (std::getline(in, line))
      if (line.rfind("Uid:", 0) == 0) {
        std::istringstream f(line.substr(4));
        uint64_t real = 0;
        f >> real;
        const Options o = hostile_options();
        if (real >= o.host_id_base && real < uint64_t{o.host_id_base} + 2 * o.id_range) ++n;
        break;
      }
  }
  ::closedir(d);
  return n;
}

int64_t rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6);
  return 0;
}

// A Python snippet that calls raw syscall `nr` and prints "ret errno".
std::string syscall_py(int nr, const std::string& args = "0, 0, 0, 0, 0") {
  return "import ctypes; libc = ctypes.CDLL(None, use_errno=True); libc.syscall.restype = ctypes.c_long; "
         "r = libc.syscall(" + std::to_string(nr) + ", " + args + "); print(r, ctypes.get_errno())";
}

class Hostile : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "the hostile suite runs as root (CI does): host-side checks need it";
    auto sb = make_sandbox(GetParam(), hostile_options());
    ASSERT_TRUE(sb) << sb.error().message;
    sb_ = std::move(*sb);
  }
  void TearDown() override {
    if (!sb_) return;
    // The host is untouched: nothing of the sandbox runs on.
    int left = 0;
    for (int i = 0; i < 100 && (left = sandbox_processes()) > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_EQ(left, 0) << "sandbox processes outlived the run";
    if (left != 0) contained_ = false;
    table().push_back({GetParam(), ::testing::UnitTest::GetInstance()->current_test_info()->name(), outcome_,
                       contained_ && !HasFailure()});
  }
  RunResult run(Spec s) {
    auto r = run_sync(*sb_, std::move(s));
    if (!r) {
      ADD_FAILURE() << "platform error: " << r.error().message;
      outcome_ = "platform error: " + r.error().message;
      return {};
    }
    outcome_ = r->summary();
    return *r;
  }
  RunResult py(const std::string& code) {
    Spec s;
    s.argv = {"python3", "-c", code};
    s.limits.wall = std::chrono::seconds(10);
    return run(s);
  }
  // "denied": the call failed with EPERM (1) or ENOSYS (38), or SIGSYS killed the process.
  void expect_denied(const RunResult& r, const std::string& what) {
    if (r.outcome == Outcome::kSignaled && r.signal == SIGSYS) {
      outcome_ = what + ": killed by SIGSYS";
      return;
    }
    std::istringstream in(r.stdout_data);
    long ret = 0;
    int err = 0;
    in >> ret >> err;
    EXPECT_EQ(ret, -1) << what << ": " << r.stdout_data << r.stderr_data;
    EXPECT_TRUE(err == 1 || err == 38) << what << ": errno " << err;
    outcome_ = what + ": " + (err == 1 ? "EPERM" : err == 38 ? "ENOSYS" : "errno " + std::to_string(err));
  }
  bool native() const { return GetParam() == "native"; }
  std::unique_ptr<Sandbox> sb_;
  std::string outcome_ = "not run";
  bool contained_ = true;
};

TEST_P(Hostile, ForkBomb) {
  Spec s = sh(":(){ :|:& };:");
  s.limits.pids = 32;
  s.limits.wall = std::chrono::seconds(2);
  auto r = run(s);
  EXPECT_TRUE(r.outcome == Outcome::kTimedOut || r.outcome == Outcome::kExited) << r.summary();
}

TEST_P(Hostile, Allocate1GiBIsReportedAsOom) {
  Spec s;
  s.argv = {"python3", "-c", "b = bytearray(1 << 30)\nfor i in range(0, len(b), 4096): b[i] = 1\nprint('allocated')"};
  s.limits.memory_bytes = 128ll << 20;
  auto r = run(s);
  EXPECT_EQ(r.outcome, Outcome::kOomKilled) << r.summary() << r.stderr_data;
  EXPECT_EQ(r.stdout_data.find("allocated"), std::string::npos);
  if (native()) {  // gvisor: plus the sentry's own
    EXPECT_LE(r.usage.peak_memory_bytes, (128ll << 20) + (1 << 20));
  }
}

TEST_P(Hostile, FillTheDisk) {
  Spec s = sh("dd if=/dev/zero of=/work/big bs=1M count=200 2>&1; echo dd=$?; dd if=/dev/zero of=/tmp/big bs=1M count=200 2>&1; "
              "echo tmp=$?; du -sk /work /tmp");
  s.limits.disk_bytes = 8ll << 20;
  auto r = run(s);
  EXPECT_EQ(r.outcome, Outcome::kExited) << r.summary();
  EXPECT_EQ(r.stdout_data.find("dd=0"), std::string::npos) << r.stdout_data;
  EXPECT_EQ(r.stdout_data.find("tmp=0"), std::string::npos) << r.stdout_data;
  outcome_ = "writes stopped at the 8 MiB cap; " + r.summary();
}

TEST_P(Hostile, SpinPastTheTimeoutWithADoubleForkedSetsidSpinner) {
  Spec s = sh("(setsid sh -c 'while :; do :; done' &); while :; do :; done");
  s.limits.wall = std::chrono::milliseconds(800);
  auto r = run(s);
  EXPECT_EQ(r.outcome, Outcome::kTimedOut) << r.summary();
  EXPECT_LT(r.usage.wall_s, 6.0);  // killed, both spinners (room for a slow, busy machine)
}

TEST_P(Hostile, ASpinnerLeftBehindIsKilledWhenTheCommandEnds) {
  auto r = run(sh("(setsid sh -c 'while :; do :; done' > /dev/null 2>&1 &); echo started"));
  EXPECT_TRUE(r.ok()) << r.summary();
  EXPECT_EQ(r.stdout_data, "started\n");
}

TEST_P(Hostile, CpuTimeLimit) {
  Spec s = sh("while :; do :; done");
  s.limits.cpu = std::chrono::milliseconds(500);
  s.limits.wall = std::chrono::seconds(10);
  auto r = run(s);
  EXPECT_EQ(r.outcome, Outcome::kCpuLimit) << r.summary();
  EXPECT_LT(r.usage.wall_s, 8.0);  // stopped by its CPU time, before the 10 s wall limit
}

TEST_P(Hostile, ConnectToAServiceOnTheHostsLoopback) {
  int srv = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(srv, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(srv, 8), 0);
  socklen_t len = sizeof a;
  ::getsockname(srv, reinterpret_cast<sockaddr*>(&a), &len);
  const int port = ntohs(a.sin_port);
  auto r = py("import socket\ntry:\n  socket.create_connection(('127.0.0.1', " + std::to_string(port) +
              "), timeout=2)\n  print('connected')\nexcept OSError as e:\n  print('refused', e.errno)");
  EXPECT_NE(r.stdout_data.find("refused"), std::string::npos) << r.stdout_data << r.stderr_data;
  int c = ::accept(srv, nullptr, nullptr);
  EXPECT_LT(c, 0) << "the host's listener got a connection";
  if (c >= 0) ::close(c);
  ::close(srv);
  outcome_ = "connect: " + r.stdout_data.substr(0, r.stdout_data.size() - 1);
}

TEST_P(Hostile, ResolveANameThroughAResolverOnTheHostsLoopback) {
  // A "resolver" on the host's 127.0.0.1:53 (UDP): it must hear nothing.
  int dns = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(53);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool bound = ::bind(dns, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  auto r = py("import socket\ntry:\n  print(socket.getaddrinfo('example.com', 80))\nexcept OSError as e:\n  print('no resolution', e)\n"
              "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.sendto(b'x', ('127.0.0.1', 53))");
  EXPECT_NE(r.stdout_data.find("no resolution"), std::string::npos) << r.stdout_data << r.stderr_data;
  if (bound) {
    char buf[512];
    EXPECT_LT(::recv(dns, buf, sizeof buf, 0), 0) << "the host's resolver got a query";
  }
  ::close(dns);
  outcome_ = "getaddrinfo failed; host resolver heard nothing";
}

TEST_P(Hostile, ReachAnotherHost) {
  // A test host in its own network namespace, over a veth pair; reachable from the host.
  if (::system("command -v ip >/dev/null 2>&1") != 0) GTEST_SKIP() << "iproute2 is not installed";
  const std::string ns = "ap-hostile-" + std::to_string(::getpid());
  auto sys = [](const std::string& cmd) { return ::system((cmd + " >/dev/null 2>&1").c_str()); };
  sys("ip netns del " + ns);
  ASSERT_EQ(sys("ip netns add " + ns), 0);
  ASSERT_EQ(sys("ip link add aph0 type veth peer name aph1 netns " + ns), 0);
  sys("ip addr add 10.231.0.1/30 dev aph0 && ip link set aph0 up");
  sys("ip netns exec " + ns + " sh -c 'ip addr add 10.231.0.2/30 dev aph1 && ip link set aph1 up && ip link set lo up'");
  // Something that answers there, and proof that the host reaches it.
  std::thread server([&] {
    sys("ip netns exec " + ns + " timeout 8 /usr/bin/python3 -c \"import socket; s = socket.socket(); "
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('10.231.0.2', 8765)); s.listen(); "
        "s.settimeout(7)\ntry:\n  [s.accept()[0].close() for _ in range(2)]\nexcept Exception: pass\"");
  });
  bool host_reaches = false;
  for (int i = 0; i < 50 && !host_reaches; ++i) {
    host_reaches = sys("/usr/bin/python3 -c \"import socket; socket.create_connection(('10.231.0.2', 8765), timeout=1)\"") == 0;
    if (!host_reaches) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(host_reaches) << "the test host is not reachable from the host: the case would prove nothing";
  auto r = py("import socket\ntry:\n  socket.create_connection(('10.231.0.2', 8765), timeout=2)\n  print('connected')\n"
              "except OSError as e:\n  print('unreachable', e.errno)");
  EXPECT_NE(r.stdout_data.find("unreachable"), std::string::npos) << r.stdout_data << r.stderr_data;
  auto links = run(sh("cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '"));
  EXPECT_EQ(links.stdout_data, "lo\n") << "the sandbox must have only lo";
  sys("ip link del aph0");
  sys("ip netns del " + ns);
  server.join();
  outcome_ = "connect: " + r.stdout_data.substr(0, r.stdout_data.size() - 1) + "; interfaces: lo";
}

TEST_P(Hostile, ReadHostSecretsAndTheLaunchersFiles) {
  char exe[4096] = {0};
  ASSERT_GT(::readlink("/proc/self/exe", exe, sizeof exe - 1), 0);
  // Each read prints a marker only if it worked.
  auto r = run(sh(std::string("cat /etc/shadow && echo SHADOW; cat /root/.bashrc && echo ROOT; head -c 4 ") + exe +
                  " && echo LAUNCHER; cat /proc/1/root/etc/shadow && echo PROC-ROOT; cat /home/*/.ssh/id_* && echo SSH; echo done"));
  EXPECT_EQ(r.stdout_data, "done\n") << r.stdout_data;
  EXPECT_NE(r.stderr_data.find("/etc/shadow: No such file"), std::string::npos) << r.stderr_data;
  outcome_ = "not found / permission denied";
}

TEST_P(Hostile, ProcShowsNoHostEnvironmentOrCommandLines) {
  ::setenv("AP_HOSTILE_LAUNCHER_VAR", "launcher-secret-value", 1);
  auto r = run(sh("cat /proc/1/environ; cat /proc/*/cmdline | tr '\\0' ' '; echo; ls /proc | grep -c '^[0-9]'"));
  EXPECT_EQ(r.stdout_data.find("launcher-secret-value"), std::string::npos);
  EXPECT_EQ(r.stdout_data.find("hostile"), std::string::npos) << "a launcher's command line is visible: " << r.stdout_data;
  EXPECT_EQ(r.stdout_data.find("sandbox_test"), std::string::npos) << r.stdout_data;
  if (native()) {  // PID 1 is our small init, exec'd: no copy of the launcher's memory
    auto init = run(sh("tr '\\0' ' ' < /proc/1/cmdline; echo; grep VmSize /proc/1/status"));
    EXPECT_EQ(init.stdout_data.rfind("agentplane-sandbox-init \n", 0), 0u) << init.stdout_data;
    const auto at = init.stdout_data.find("VmSize:");
    ASSERT_NE(at, std::string::npos) << init.stdout_data;
    EXPECT_LT(std::stol(init.stdout_data.substr(at + 7)), 16 * 1024) << "PID 1 maps more than 16 MiB: " << init.stdout_data;
  }
  outcome_ = "/proc/1/environ unreadable, no host process visible";
}

TEST_P(Hostile, VsockAndRawSocketsToTheHost) {
  // AF_VSOCK (40) ignores network namespaces: it would reach the VM's host. AF_PACKET (17).
  auto vsock = py("import socket\ntry:\n  socket.socket(40, socket.SOCK_STREAM)\n  print('vsock open')\n"
                  "except OSError as e:\n  print('vsock', e.errno)\ntry:\n  socket.socket(17, socket.SOCK_RAW)\n  print('packet open')\n"
                  "except OSError as e:\n  print('packet', e.errno)");
  // EAFNOSUPPORT (97); gvisor's profile answers every denial with EPERM (1).
  const bool refused = vsock.stdout_data == "vsock 97\npacket 97\n" || vsock.stdout_data == "vsock 1\npacket 1\n";
  EXPECT_TRUE(refused) << vsock.stdout_data << vsock.stderr_data;
  outcome_ = std::string("socket(AF_VSOCK), socket(AF_PACKET): ") + (vsock.stdout_data.find("97") != std::string::npos ? "EAFNOSUPPORT" : "EPERM");
}

TEST_P(Hostile, Ptrace) { expect_denied(py(syscall_py(101, "16, 1, 0, 0, 0")), "ptrace(ATTACH, 1)"); }
TEST_P(Hostile, ProcessVmReadv) { expect_denied(py(syscall_py(310, "1, 0, 0, 0, 0, 0")), "process_vm_readv"); }
TEST_P(Hostile, Mount) {
  expect_denied(py("import ctypes; libc = ctypes.CDLL(None, use_errno=True); "
                   "r = libc.mount(b'none', b'/tmp', b'tmpfs', 0, None); print(r, ctypes.get_errno())"),
                "mount");
}
TEST_P(Hostile, UnshareUserNamespace) { expect_denied(py(syscall_py(272, "0x10000000, 0, 0, 0, 0")), "unshare(NEWUSER)"); }
TEST_P(Hostile, CloneIntoANewUserNamespace) { expect_denied(py(syscall_py(56, "0x10000000 | 17, 0, 0, 0, 0")), "clone(NEWUSER)"); }
TEST_P(Hostile, Setns) { expect_denied(py(syscall_py(308, "0, 0, 0, 0, 0")), "setns"); }
TEST_P(Hostile, Keyctl) { expect_denied(py(syscall_py(250, "0, 0, 0, 0, 0")), "keyctl"); }
TEST_P(Hostile, Bpf) { expect_denied(py(syscall_py(321, "0, 0, 0, 0, 0")), "bpf"); }
TEST_P(Hostile, IoUring) { expect_denied(py(syscall_py(425, "8, 0, 0, 0, 0")), "io_uring_setup"); }
TEST_P(Hostile, PerfEventOpen) { expect_denied(py(syscall_py(298, "0, 0, -1, -1, 0")), "perf_event_open"); }
TEST_P(Hostile, Userfaultfd) { expect_denied(py(syscall_py(323, "0, 0, 0, 0, 0")), "userfaultfd"); }
TEST_P(Hostile, KexecLoad) {
  auto r = py(syscall_py(246, "0, 0, 0, 0, 0"));
  if (native()) {  // the seccomp filter kills for the never-legitimate calls
    EXPECT_EQ(r.outcome, Outcome::kSignaled);
    EXPECT_EQ(r.signal, SIGSYS);
    outcome_ = "kexec_load: killed by SIGSYS";
  } else {
    expect_denied(r, "kexec_load");
  }
}

TEST_P(Hostile, SetuidBinariesGainNothing) {
  auto r = run(sh("grep -E '^(Uid|CapEff|CapBnd|NoNewPrivs)' /proc/self/status; "
                  "for b in /usr/bin/su /usr/bin/passwd /usr/bin/mount /usr/bin/newgrp; do "
                  "[ -u $b ] && { $b root -c 'id -u' </dev/null 2>/dev/null | grep -qx 0 && echo ROOT-VIA-$b; }; done; echo done"));
  EXPECT_NE(r.stdout_data.find("CapEff:\t0000000000000000"), std::string::npos) << r.stdout_data;
  EXPECT_NE(r.stdout_data.find("CapBnd:\t0000000000000000"), std::string::npos) << r.stdout_data;
  if (native()) {  // gvisor's /proc has no such line
    EXPECT_NE(r.stdout_data.find("NoNewPrivs:\t1"), std::string::npos) << r.stdout_data;
  }
  EXPECT_NE(r.stdout_data.find("Uid:\t1000\t1000\t1000\t1000"), std::string::npos) << r.stdout_data;
  EXPECT_EQ(r.stdout_data.find("ROOT-VIA"), std::string::npos) << r.stdout_data;
  outcome_ = "uid 1000, no capabilities, no_new_privs";
}

TEST_P(Hostile, WriteToDeviceNodes) {
  auto r = run(sh("ls /dev | tr '\\n' ' '; echo; echo x > /dev/sda && echo SDA; echo x > /dev/mem && echo MEM; "
                  "mknod /tmp/disk b 8 0 && echo MKNOD; mknod /work/disk c 1 1 && echo MKNOD2; echo fine > /dev/null && echo null-ok"));
  for (const char* m : {"SDA", "MEM", "MKNOD"}) EXPECT_EQ(r.stdout_data.find(m), std::string::npos) << m << ": " << r.stdout_data;
  EXPECT_NE(r.stdout_data.find("null-ok"), std::string::npos) << r.stdout_data;
  if (native()) {
    EXPECT_EQ(r.stdout_data, "fd full null random shm stderr stdin stdout urandom zero \nnull-ok\n") << r.stdout_data;
    EXPECT_NE(r.stderr_data.find("Read-only file system"), std::string::npos) << r.stderr_data;
  }
  outcome_ = "no disk or memory device; mknod refused";
}

TEST_P(Hostile, AFloodOf256MiBOnStdoutIsCapped) {
  const int64_t before = rss_kib();
  Spec s = sh("head -c 268435456 /dev/zero");
  s.limits.output_bytes = 1 << 20;
  auto r = run(s);
  EXPECT_EQ(r.outcome, Outcome::kOutputCapped) << r.summary();
  EXPECT_TRUE(r.stdout_capped);
  EXPECT_LE(r.stdout_data.size(), (1u << 20) + 100);
  EXPECT_LT(r.usage.wall_s, 3.0) << "the writer must be stopped quickly";
  EXPECT_LT(rss_kib() - before, 32 * 1024) << "the supervisor's memory must stay bounded";
  outcome_ = "capped at 1 MiB, writer killed after " + std::to_string(static_cast<int>(r.usage.wall_s * 1000)) + " ms";
}

TEST_P(Hostile, ZombiesAndOrphansAreReaped) {
  auto r = run(sh("for i in 1 2 3 4 5 6 7 8; do (sleep 0.05 & exec true) & done; sleep 0.4; "
                  "grep -l '^State:.*Z' /proc/[0-9]*/status 2>/dev/null | wc -l"));
  EXPECT_TRUE(r.ok()) << r.summary();
  EXPECT_EQ(r.stdout_data, "0\n") << "zombies left in the sandbox";
  outcome_ = "no zombie inside; nothing left after";
}

TEST_P(Hostile, ARunCannotReadAnotherRunsFiles) {
  auto first = run(sh("echo secret-of-run-1 > /work/secret; echo secret-of-run-1 > /tmp/secret; "
                      "(echo secret-of-run-1 > /dev/shm/secret) 2>/dev/null; true"));
  ASSERT_TRUE(first.ok()) << first.summary() << first.stderr_data;
  auto second = run(sh("cat /work/secret /tmp/secret /dev/shm/secret; ls -A /work /tmp; echo done"));
  EXPECT_EQ(second.stdout_data.find("secret-of-run-1"), std::string::npos) << second.stdout_data;
  outcome_ = "fresh workspace, /tmp and /dev/shm per run";
}

INSTANTIATE_TEST_SUITE_P(Backends, Hostile, ::testing::ValuesIn(testing::backends()));

}  // namespace
}  // namespace ap::sandbox
