// Egress: the sandbox's only way out is the proxy, which goes only where the check says (native:
// its listener is made inside the sandbox's network namespace; gvisor: a relay inside the sandbox
// reaches it on a unix socket).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <mutex>
#include <thread>

#include "exec/sandbox/sandbox.h"
#include "exec/sandbox/sandbox_test_util.h"

namespace ap::sandbox {
namespace {

using testing::run_sync;

// A tiny HTTP server on the host's loopback: answers every request with "hello", keeps the
// request lines it saw.
class Upstream {
 public:
  Upstream() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    ::listen(fd_, 16);
    thread_ = std::thread([this] { serve(); });
  }
  ~Upstream() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  int port() const { return port_; }
  // A connection is recorded once its client is done with it, which may be just after the
  // sandbox's run returns: these wait (at most 5 s) until `at_least` connections are.
  std::vector<std::string> requests(size_t at_least) {
    wait_for(at_least);
    std::lock_guard lock(mu_);
    return requests_;
  }
  std::vector<std::string> received(size_t at_least) {  // everything each connection sent
    wait_for(at_least);
    std::lock_guard lock(mu_);
    return received_;
  }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      std::string got;
      char buf[4096];
      while (got.find("\r\n\r\n") == std::string::npos) {
        pollfd q{c, POLLIN, 0};
        if (::poll(&q, 1, 3000) <= 0) break;
        ssize_t n = ::read(c, buf, sizeof buf);
        if (n <= 0) break;
        got.append(buf, static_cast<size_t>(n));
      }
      const std::string reply = "HTTP/1.0 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
      (void)!::write(c, reply.data(), reply.size());
      ::shutdown(c, SHUT_WR);
      for (;;) {  // and whatever else comes on this connection, until the client is done
        pollfd q{c, POLLIN, 0};
        if (::poll(&q, 1, 300) <= 0) break;
        ssize_t n = ::read(c, buf, sizeof buf);
        if (n <= 0) break;
        got.append(buf, static_cast<size_t>(n));
      }
      {
        std::lock_guard lock(mu_);
        requests_.push_back(got.substr(0, got.find("\r\n")));
        received_.push_back(got);
      }
      ::close(c);
    }
  }
  void wait_for(size_t n) {
    for (int i = 0; i < 500; ++i) {
      {
        std::lock_guard lock(mu_);
        if (requests_.size() >= n) return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  int fd_ = -1, port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> requests_, received_;
};

class Egress : public testing::BackendTest {
 protected:
  Spec python(const std::string& code) {
    Spec s;
    s.argv = {"python3", "-c", code};
    s.limits.wall = std::chrono::seconds(20);
    return s;
  }
};

// Only 127.0.0.1 (what the test's upstream listens on) is allowed; 127.0.0.2 is refused.
Status only_127_0_0_1(std::string_view host, const boost::asio::ip::address& a) {
  if (a.to_string() == "127.0.0.1") return ok_status();
  return Error::permission_denied(std::string(host) + " (" + a.to_string() + ") is not on the test's allowlist");
}

TEST_P(Egress, ThroughTheProxyOnlyWhereTheCheckAllows) {
  Upstream up;
  const std::string port = std::to_string(up.port());
  Spec s = python(
      "import os, socket, urllib.request, urllib.error\n"
      "print('proxy', os.environ.get('HTTP_PROXY'))\n"
      "print('http', urllib.request.urlopen('http://127.0.0.1:" + port + "/x?y=1', timeout=10).read().decode())\n"
      "try:\n"
      "  urllib.request.urlopen('http://127.0.0.2:" + port + "/', timeout=10)\n"
      "  print('refused? no')\n"
      "except urllib.error.HTTPError as e:\n"
      "  print('refused', e.code, 'not on the test' in e.read().decode())\n"
      "t = socket.create_connection(('127.0.0.1', 3128), timeout=10)\n"
      "t.sendall(b'CONNECT 127.0.0.1:" + port + " HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\n')\n"
      "head = b''\n"
      "while b'\\r\\n\\r\\n' not in head: head += t.recv(1)\n"
      "print('tunnel', head.split(b'\\r\\n')[0].decode())\n"
      "t.sendall(b'GET /tunneled HTTP/1.0\\r\\n\\r\\n')\n"
      "body = b''\n"
      "while True:\n"
      "  c = t.recv(4096)\n"
      "  if not c: break\n"
      "  body += c\n"
      "print('tunneled', body.split(b'\\r\\n\\r\\n')[-1].decode())\n"
      "d = socket.socket(); d.settimeout(3)\n"
      "try:\n"
      "  d.connect(('127.0.0.1', " + port + "))\n"
      "  print('direct connected')\n"
      "except OSError as e:\n"
      "  print('direct', e.errno)\n");
  s.network = true;
  s.egress_check = only_127_0_0_1;
  auto r = run_sync(*sb_, s);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(r->ok()) << r->summary() << "\n" << r->stdout_data << r->stderr_data;
  EXPECT_EQ(r->stdout_data,
            "proxy http://127.0.0.1:3128\n"
            "http hello\n"
            "refused 403 True\n"
            "tunnel HTTP/1.1 200 Connection established\n"
            "tunneled hello\n"
            "direct 111\n")  // the host's loopback is not the sandbox's: nothing listens there
      << r->stderr_data;
  // The upstream saw the plain request in origin-form, and the tunneled one.
  auto seen = up.requests(2);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0], "GET /x?y=1 HTTP/1.1");
  EXPECT_EQ(seen[1], "GET /tunneled HTTP/1.0");
  // Each destination is recorded: two allowed with their bytes, one refused with the reason.
  ASSERT_EQ(r->egress.size(), 3u);
  EXPECT_TRUE(r->egress[0].allowed);
  EXPECT_EQ(r->egress[0].host, "127.0.0.1");
  EXPECT_EQ(r->egress[0].port, up.port());
  EXPECT_GT(r->egress[0].bytes_out, 0);
  EXPECT_GT(r->egress[0].bytes_in, 0);
  EXPECT_FALSE(r->egress[1].allowed);
  EXPECT_EQ(r->egress[1].host, "127.0.0.2");
  EXPECT_NE(r->egress[1].reason.find("not on the test's allowlist"), std::string::npos) << r->egress[1].reason;
  EXPECT_TRUE(r->egress[2].allowed);
}

TEST_P(Egress, APlainRequestGoesOutAsCheckedAndAlone) {
  Upstream up;
  const std::string port = std::to_string(up.port());
  // Another Host behind the allowed address, and a second request smuggled after the body.
  Spec s = python(
      "import socket\n"
      "t = socket.create_connection(('127.0.0.1', 3128), timeout=10)\n"
      "t.sendall(b'POST http://127.0.0.1:" + port + "/p HTTP/1.1\\r\\nHost: other.example\\r\\nContent-Length: 3\\r\\n\\r\\n'\n"
      "          b'abcGET /smuggled HTTP/1.1\\r\\nHost: other.example\\r\\n\\r\\n')\n"
      "print(t.recv(4096).split(b'\\r\\n')[0].decode())\n");
  s.network = true;
  s.egress_check = only_127_0_0_1;
  auto r = run_sync(*sb_, s);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->stdout_data, "HTTP/1.0 200 OK\n") << r->stderr_data;
  auto got = up.received(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_NE(got[0].find("Host: 127.0.0.1:" + port + "\r\n"), std::string::npos) << got[0];
  EXPECT_EQ(got[0].find("other.example"), std::string::npos) << got[0];
  EXPECT_EQ(got[0].find("smuggled"), std::string::npos) << got[0];
  EXPECT_TRUE(got[0].ends_with("\r\n\r\nabc")) << got[0];
}

TEST_P(Egress, BadProxyRequestsGetAClearAnswer) {
  Spec s = python(
      "import socket\n"
      "for req in [b'GET /relative HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n', b'CONNECT nohostport HTTP/1.1\\r\\n\\r\\n',\n"
      "            b'GET http://no.such.host.invalid/ HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n']:\n"
      "  t = socket.create_connection(('127.0.0.1', 3128), timeout=10)\n"
      "  t.sendall(req)\n"
      "  print(t.recv(4096).split(b'\\r\\n')[0].decode())\n");
  s.network = true;
  s.egress_check = only_127_0_0_1;
  auto r = run_sync(*sb_, s);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->stdout_data, "HTTP/1.1 400 Bad Request\nHTTP/1.1 400 Bad Request\nHTTP/1.1 502 Bad Gateway\n") << r->stderr_data;
}

TEST_P(Egress, WithoutNetworkThereIsNoProxy) {
  Spec s = python(
      "import os, socket\n"
      "print(os.environ.get('HTTP_PROXY'))\n"
      "try:\n"
      "  socket.create_connection(('127.0.0.1', 3128), timeout=3)\n"
      "except OSError as e:\n"
      "  print(e.errno)\n");
  auto r = run_sync(*sb_, s);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->stdout_data, "None\n111\n") << r->stderr_data;
  EXPECT_TRUE(r->egress.empty());
}

TEST_P(Egress, TheCommandsOwnStatusComesBack) {  // gvisor: the relay became the command
  Spec exits = testing::sh("echo out; echo err >&2; exit 3");
  exits.network = true;
  exits.egress_check = only_127_0_0_1;
  auto r = run_sync(*sb_, exits);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->outcome, Outcome::kExited);
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->stdout_data, "out\n");
  EXPECT_EQ(r->stderr_data, "err\n");
  Spec killed = testing::sh("kill -SEGV $$");
  killed.network = true;
  killed.egress_check = only_127_0_0_1;
  auto k = run_sync(*sb_, killed);
  ASSERT_TRUE(k) << k.error().message;
  EXPECT_EQ(k->outcome, Outcome::kSignaled) << k->summary();
  EXPECT_EQ(k->signal, SIGSEGV);
}

TEST_P(Egress, NetworkNeedsACheck) {
  Spec s = testing::sh("true");
  s.network = true;
  auto r = run_sync(*sb_, s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Backends, Egress, ::testing::ValuesIn(testing::backends()));

}  // namespace
}  // namespace ap::sandbox
