#include "vault/keyring.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "common/crypto.h"
#include "vault/hkdf.h"

namespace ap::vault {
namespace {

constexpr std::string_view kAuditInfo = "agentplane audit signing key v1";

Result<SecretString> decode_key(std::string_view b64) {
  auto raw = base64_decode(b64);
  if (!raw || raw->size() != 32) return Error::invalid_argument("a master key is 32 bytes, base64-encoded");
  return SecretString(std::move(*raw));
}

struct Line {
  int version;
  std::string key;
  bool retired;
};

Result<std::vector<Line>> read_lines(const std::string& path) {
  struct stat st{};
  if (stat(path.c_str(), &st) != 0) return Error::not_found("no master key file at " + path);
  if (st.st_mode & 077) return Error::failed_precondition("the master key file " + path + " must not be readable by group or others (chmod 600)");
  std::ifstream in(path);
  if (!in) return Error::permission_denied("cannot read the master key file " + path);
  std::vector<Line> out;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    Line l{0, "", false};
    std::string flag;
    if (!(fields >> l.version >> l.key) || l.version <= 0)
      return Error::invalid_argument("master key file line " + std::to_string(n) + ": expected '<version> <base64 key>'");
    if (fields >> flag) {
      if (flag != "retired") return Error::invalid_argument("master key file line " + std::to_string(n) + ": unknown flag");
      l.retired = true;
    }
    out.push_back(std::move(l));
  }
  return out;
}

Status write_lines(const std::string& path, const std::vector<Line>& lines) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return Error::permission_denied("cannot write " + tmp);
  std::string text = "# agentplane master keys: <version> <base64 key> [retired]. Keep secret.\n";
  for (const auto& l : lines) text += std::to_string(l.version) + " " + l.key + (l.retired ? " retired\n" : "\n");
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  wipe(text);
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) return Error::internal("cannot write " + path);
  return ok_status();
}

std::string new_key() {
  std::string raw(32, '\0');
  random_bytes(reinterpret_cast<uint8_t*>(raw.data()), raw.size());
  std::string b64 = base64_encode(raw);
  wipe(raw);
  return b64;
}

}  // namespace

Result<Keyring> Keyring::from_base64(std::string_view key) {
  AP_ASSIGN_OR_RETURN(auto k, decode_key(key));
  Keyring r;
  r.keys_[1] = {std::move(k), false};
  r.current_ = 1;
  return r;
}

Result<Keyring> Keyring::load_file(const std::string& path) {
  AP_ASSIGN_OR_RETURN(auto lines, read_lines(path));
  Keyring r;
  for (auto& l : lines) {
    AP_ASSIGN_OR_RETURN(auto k, decode_key(l.key));
    wipe(l.key);
    if (r.keys_.count(l.version)) return Error::invalid_argument("master key version " + std::to_string(l.version) + " appears twice");
    r.keys_[l.version] = {std::move(k), l.retired};
    if (!l.retired && l.version > r.current_) r.current_ = l.version;
  }
  if (r.current_ == 0) return Error::invalid_argument("the master key file has no usable (unretired) version");
  return r;
}

Status Keyring::create_file(const std::string& path) {
  struct stat st{};
  if (stat(path.c_str(), &st) == 0) return Error::already_exists(path + " exists");
  return write_lines(path, {{1, new_key(), false}});
}

Result<int> Keyring::rotate_file(const std::string& path) {
  AP_ASSIGN_OR_RETURN(auto lines, read_lines(path));
  int next = 1;
  for (const auto& l : lines) next = std::max(next, l.version + 1);
  lines.push_back({next, new_key(), false});
  AP_RETURN_IF_ERROR(write_lines(path, lines));
  for (auto& l : lines) wipe(l.key);
  return next;
}

Status Keyring::retire_in_file(const std::string& path, int version) {
  AP_ASSIGN_OR_RETURN(auto lines, read_lines(path));
  bool found = false;
  int usable = 0;
  for (auto& l : lines) {
    if (l.version == version) {
      found = true;
      l.retired = true;
    }
    if (!l.retired) ++usable;
  }
  if (!found) return Error::not_found("no master key version " + std::to_string(version));
  if (usable == 0) return Error::failed_precondition("cannot retire the last usable master key version");
  auto s = write_lines(path, lines);
  for (auto& l : lines) wipe(l.key);
  return s;
}

std::vector<int> Keyring::versions() const {
  std::vector<int> v;
  for (const auto& [n, _] : keys_) v.push_back(n);
  return v;
}

Result<Fernet> Keyring::tenant_key(const TenantId& tenant, int version) const {
  auto it = keys_.find(version);
  if (it == keys_.end()) return Error::failed_precondition("master key version " + std::to_string(version) + " is not loaded");
  AP_ASSIGN_OR_RETURN(auto raw, hkdf_sha256(it->second.key.reveal(), std::nullopt, tenant.to_string(), 32));
  auto f = Fernet::from_raw(raw);
  wipe(raw);
  return f;
}

Result<SecretString> Keyring::audit_seed(int version) const {
  auto it = keys_.find(version);
  if (it == keys_.end()) return Error::failed_precondition("master key version " + std::to_string(version) + " is not loaded");
  AP_ASSIGN_OR_RETURN(auto raw, hkdf_sha256(it->second.key.reveal(), std::nullopt, kAuditInfo, 32));
  return SecretString(std::move(raw));
}

}  // namespace ap::vault
