// What the native sandbox's init (src/exec/sandbox/init.cc, a small static program of ours) is
// told to do: the server builds an InitPlan, encodes it into a memfd, and the init, exec'd as
// the sandbox's PID 1, decodes it. The standard library and libc only: the init links nothing
// else.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ap::sandbox {

// One step of building the sandbox's root.
struct InitOp {
  enum Kind : uint8_t { kMkdir, kMount, kSymlink, kWrite, kTouch };
  Kind kind = kMkdir;
  std::optional<std::string> a;  // mkdir/touch/write: path; mount: source; symlink: target
  std::optional<std::string> b;  // mount: target; symlink: link path; write: content
  std::optional<std::string> c;  // mount: file system type
  std::optional<std::string> d;  // mount: data
  uint64_t flags = 0;            // mount flags
  uint32_t mode = 0755;
  bool chown = false;            // mkdir/write: owned by the sandbox's user
};

struct InitPlan {
  std::vector<InitOp> ops;                  // then pivot_root into kRoot
  std::vector<std::string> exec_paths;      // tried in order (PATH resolved by the server)
  std::vector<std::string> argv, envp;      // envp: "K=V"
  std::vector<std::string> read_back;       // relative to /work
  int64_t read_back_cap = 0;
  uint32_t user_uid = 0, user_gid = 0;      // the code's ids inside
  bool set_groups = false;                  // setgroups(0) allowed (root server)
  uint32_t cap_last = 40;
  std::string seccomp;                      // the BPF program (struct sock_filter array)
  uint64_t fsize = 0, nofile = 0, cpu_s = 0;  // rlimits
  uint32_t egress_port = 0;  // egress: a listener at 127.0.0.1:<port>, handed to the server (0: none)
  // A warm sandbox: after the setup, the init waits on fd 3 for a second plan (u64 length, then
  // the encoding) with the files, argv, envp, exec paths and read-back list.
  bool deferred = false;
};

// The new root's mount point, in the sandbox's own mount namespace.
inline constexpr const char* kInitRoot = "/tmp";

// The init's descriptors: the server's pipes and the plan at fixed numbers.
inline constexpr int kInitSyncFd = 3;    // the server's go (read before the exec); warm: the command
inline constexpr int kInitStatusFd = 4;  // the report (see init.cc)
inline constexpr int kInitStdinFd = 5, kInitStdoutFd = 6, kInitStderrFd = 7;
inline constexpr int kInitPlanFd = 8;
inline constexpr int kInitEgressFd = 9;  // with network: a unix socket to send the listener on

// One byte with room for one descriptor (SCM_RIGHTS): how the init hands over the egress listener.
struct FdMessage {
  char byte = 'L';
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))]{};
  msghdr msg{};
  FdMessage() {
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
  }
  FdMessage(const FdMessage&) = delete;
  FdMessage& operator=(const FdMessage&) = delete;
};

namespace plan_codec {

inline void u64(std::string& out, uint64_t v) { out.append(reinterpret_cast<const char*>(&v), 8); }
inline void str(std::string& out, const std::optional<std::string>& s) {
  u64(out, s ? s->size() : UINT64_MAX);
  if (s) out += *s;
}
inline void strs(std::string& out, const std::vector<std::string>& v) {
  u64(out, v.size());
  for (const auto& s : v) str(out, s);
}

struct Reader {
  std::string_view in;
  bool ok = true;
  uint64_t u64() {
    uint64_t v = 0;
    if (in.size() < 8) {
      ok = false;
      return 0;
    }
    std::memcpy(&v, in.data(), 8);
    in.remove_prefix(8);
    return v;
  }
  std::optional<std::string> str() {
    const uint64_t n = u64();
    if (n == UINT64_MAX || !ok) return std::nullopt;
    if (n > in.size()) {
      ok = false;
      return std::nullopt;
    }
    std::string s(in.substr(0, n));
    in.remove_prefix(n);
    return s;
  }
  std::vector<std::string> strs() {
    std::vector<std::string> v;
    const uint64_t n = u64();
    for (uint64_t i = 0; ok && i < n; ++i) v.push_back(str().value_or(""));
    return v;
  }
};

}  // namespace plan_codec

inline std::string encode_plan(const InitPlan& p) {
  using namespace plan_codec;
  std::string out = "APINIT1";
  u64(out, p.ops.size());
  for (const auto& op : p.ops) {
    u64(out, op.kind);
    for (const auto* s : {&op.a, &op.b, &op.c, &op.d}) str(out, *s);
    u64(out, op.flags);
    u64(out, op.mode);
    u64(out, op.chown);
  }
  strs(out, p.exec_paths);
  strs(out, p.argv);
  strs(out, p.envp);
  strs(out, p.read_back);
  for (uint64_t v : {static_cast<uint64_t>(p.read_back_cap), uint64_t{p.user_uid}, uint64_t{p.user_gid},
                     uint64_t{p.set_groups}, uint64_t{p.cap_last}, p.fsize, p.nofile, p.cpu_s, uint64_t{p.egress_port}, uint64_t{p.deferred}})
    u64(out, v);
  str(out, p.seccomp);
  return out;
}

inline bool decode_plan(std::string_view in, InitPlan& p) {
  using namespace plan_codec;
  if (!in.starts_with("APINIT1")) return false;
  Reader r{in.substr(7)};
  const uint64_t n_ops = r.u64();
  for (uint64_t i = 0; r.ok && i < n_ops; ++i) {
    InitOp op;
    const uint64_t kind = r.u64();
    if (kind > InitOp::kTouch) return false;
    op.kind = static_cast<InitOp::Kind>(kind);
    op.a = r.str();
    op.b = r.str();
    op.c = r.str();
    op.d = r.str();
    op.flags = r.u64();
    op.mode = static_cast<uint32_t>(r.u64());
    op.chown = r.u64() != 0;
    p.ops.push_back(std::move(op));
  }
  p.exec_paths = r.strs();
  p.argv = r.strs();
  p.envp = r.strs();
  p.read_back = r.strs();
  p.read_back_cap = static_cast<int64_t>(r.u64());
  p.user_uid = static_cast<uint32_t>(r.u64());
  p.user_gid = static_cast<uint32_t>(r.u64());
  p.set_groups = r.u64() != 0;
  p.cap_last = static_cast<uint32_t>(r.u64());
  p.fsize = r.u64();
  p.nofile = r.u64();
  p.cpu_s = r.u64();
  p.egress_port = static_cast<uint32_t>(r.u64());
  p.deferred = r.u64() != 0;
  p.seccomp = r.str().value_or("");
  return r.ok && r.in.empty();
}

}  // namespace ap::sandbox
