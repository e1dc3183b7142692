// The vault's cryptography against the reference vectors (RFC 5869, the Fernet spec's
// generate/verify/invalid) and, live, against Python's `cryptography` in both directions.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/crypto.h"
#include "vault/fernet.h"
#include "vault/hkdf.h"

namespace ap::vault {
namespace {

using nlohmann::json;

json load(const std::string& rel) {
  const char* dir = std::getenv("AP_TESTDATA");
  std::ifstream in(std::string(dir ? dir : "tests/testdata") + "/" + rel);
  EXPECT_TRUE(in) << rel;
  return json::parse(in);
}

std::string unhex(const std::string& h) { return hex_decode(h).value(); }

// "1985-10-26T01:20:00-07:00" -> Unix seconds.
uint64_t unix_time(const std::string& s) {
  std::tm tm{};
  int off_h = 0, off_m = 0;
  char sign = '+';
  std::sscanf(s.c_str(), "%d-%d-%dT%d:%d:%d%c%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
              &tm.tm_min, &tm.tm_sec, &sign, &off_h, &off_m);
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  int64_t t = timegm(&tm);
  int64_t off = (off_h * 3600 + off_m * 60) * (sign == '-' ? -1 : 1);
  return static_cast<uint64_t>(t - off);
}

TEST(Hkdf, Rfc5869Vectors) {
  auto v = load("hkdf/rfc5869.json");
  ASSERT_GE(v["cases"].size(), 3u);
  for (const auto& c : v["cases"]) {
    std::string salt = unhex(c["salt"]);
    std::optional<std::string_view> s;
    if (!salt.empty()) s = salt;
    auto prk = hkdf_sha256_extract(unhex(c["ikm"]), s);
    ASSERT_TRUE(prk) << c["name"];
    EXPECT_EQ(hex_encode(*prk), c["prk"].get<std::string>()) << c["name"];
    auto okm = hkdf_sha256(unhex(c["ikm"]), s, unhex(c["info"]), c["L"].get<size_t>());
    ASSERT_TRUE(okm) << c["name"];
    EXPECT_EQ(hex_encode(*okm), c["okm"].get<std::string>()) << c["name"];
  }
  EXPECT_FALSE(hkdf_sha256("k", std::nullopt, "", 0));
  EXPECT_FALSE(hkdf_sha256("k", std::nullopt, "", 255 * 32 + 1));
}

TEST(Fernet, GenerateVectors) {
  for (const auto& c : load("fernet/generate.json")) {
    auto f = Fernet::from_base64(c["secret"].get<std::string>());
    ASSERT_TRUE(f);
    std::array<uint8_t, 16> iv;
    for (size_t i = 0; i < 16; ++i) iv[i] = c["iv"][i].get<uint8_t>();
    EXPECT_EQ(f->encrypt_with_iv(c["src"].get<std::string>(), unix_time(c["now"]), iv), c["token"].get<std::string>());
  }
}

TEST(Fernet, VerifyVectors) {
  for (const auto& c : load("fernet/verify.json")) {
    auto f = Fernet::from_base64(c["secret"].get<std::string>());
    ASSERT_TRUE(f);
    auto p = f->decrypt(c["token"].get<std::string>(), unix_time(c["now"]), c["ttl_sec"].get<uint64_t>());
    ASSERT_TRUE(p) << p.error().message;
    EXPECT_EQ(p->reveal(), c["src"].get<std::string>());
  }
}

TEST(Fernet, InvalidVectors) {
  auto cases = load("fernet/invalid.json");
  ASSERT_GE(cases.size(), 8u);
  for (const auto& c : cases) {
    auto f = Fernet::from_base64(c["secret"].get<std::string>());
    ASSERT_TRUE(f);
    auto p = f->decrypt(c["token"].get<std::string>(), unix_time(c["now"]), c["ttl_sec"].get<uint64_t>());
    ASSERT_FALSE(p) << c["desc"];
    EXPECT_EQ(p.error().message, "invalid token") << c["desc"];  // says nothing about why
  }
}

TEST(Fernet, RoundTripTtlAndKeys) {
  auto f = *Fernet::from_raw(std::string(32, 'k'));
  auto other = *Fernet::from_raw(std::string(32, 'o'));
  std::string t = f.encrypt("secret value", 1000);
  EXPECT_NE(t, f.encrypt("secret value", 1000));  // a fresh IV each time
  EXPECT_EQ(f.decrypt(t, 5000)->reveal(), "secret value");            // no TTL: any age
  EXPECT_TRUE(f.decrypt(t, 1060, 60));                                 // exactly at the TTL
  EXPECT_FALSE(f.decrypt(t, 1061, 60));                                // expired
  EXPECT_FALSE(f.decrypt(t, 939, 60));                                 // more than 60 s in the future
  EXPECT_FALSE(other.decrypt(t, 1000));
  EXPECT_EQ(*Fernet::timestamp(t), 1000u);
  EXPECT_FALSE(Fernet::from_raw("short"));
  EXPECT_FALSE(Fernet::from_base64("not base64!"));
  EXPECT_FALSE(f.decrypt("", 0));
  EXPECT_FALSE(f.decrypt(std::string(t).replace(t.size() - 6, 2, "AA"), 1000));
}

TEST(MultiFernet, DecryptsWithAnyKeyAndRotateKeepsTheTimestamp) {
  auto old_key = *Fernet::from_raw(std::string(32, 'a'));
  auto new_key = *Fernet::from_raw(std::string(32, 'b'));
  std::string t = old_key.encrypt("v", 1234);
  MultiFernet mf({new_key, old_key});
  EXPECT_EQ(mf.decrypt(t, 2000)->reveal(), "v");
  auto rotated = mf.rotate(t);
  ASSERT_TRUE(rotated);
  EXPECT_EQ(*Fernet::timestamp(*rotated), 1234u);
  EXPECT_EQ(new_key.decrypt(*rotated, 2000)->reveal(), "v");
  EXPECT_FALSE(old_key.decrypt(*rotated, 2000));
  EXPECT_FALSE(MultiFernet({new_key}).rotate(t));
}

// Runs /usr/bin/python3 (Debian's, with python3-cryptography) on `script`; returns stdout.
std::string python(const std::string& script) {
  std::string path = ::testing::TempDir() + "/fernet_check.py";
  std::ofstream(path) << script;
  FILE* p = popen(("/usr/bin/python3 -I " + path).c_str(), "r");
  EXPECT_NE(p, nullptr);
  std::string out;
  char buf[512];
  while (p && fgets(buf, sizeof buf, p)) out += buf;
  if (p) {
    EXPECT_EQ(pclose(p), 0) << script;
  }
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

TEST(Fernet, InteroperatesWithPythonCryptography) {
  // Our HKDF and our tokens, checked by Python; Python's tokens, checked by us.
  std::string master(32, '\0');
  for (size_t i = 0; i < 32; ++i) master[i] = static_cast<char>(i * 7 + 1);
  std::string info = "7f1c2a9e-3b4d-4c5e-8f60-718293a4b5c6";
  auto key = *hkdf_sha256(master, std::nullopt, info, 32);
  auto f = *Fernet::from_raw(key);
  std::string token = f.encrypt("credential: sk-live-0123456789", static_cast<uint64_t>(std::time(nullptr)));
  std::string script =
      "import base64\n"
      "from cryptography.fernet import Fernet, MultiFernet\n"
      "from cryptography.hazmat.primitives import hashes\n"
      "from cryptography.hazmat.primitives.kdf.hkdf import HKDF\n"
      "master = bytes.fromhex('" + hex_encode(master) + "')\n"
      "key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b'" + info + "').derive(master)\n"
      "f = Fernet(base64.urlsafe_b64encode(key))\n"
      "assert f.decrypt(b'" + token + "', ttl=60) == b'credential: sk-live-0123456789'\n"
      "print(f.encrypt(b'from python').decode())\n";
  std::string from_python = python(script);
  ASSERT_FALSE(from_python.empty());
  auto p = f.decrypt(from_python, static_cast<uint64_t>(std::time(nullptr)), 60);
  ASSERT_TRUE(p) << from_python;
  EXPECT_EQ(p->reveal(), "from python");
  // MultiFernet.rotate in Python of our token, read back by the new key here.
  auto next = *Fernet::from_raw(std::string(32, 'n'));
  std::string rotate =
      "import base64\nfrom cryptography.fernet import Fernet, MultiFernet\n"
      "old = Fernet(base64.urlsafe_b64encode(bytes.fromhex('" + hex_encode(key) + "')))\n"
      "new = Fernet(base64.urlsafe_b64encode(b'" + std::string(32, 'n') + "'))\n"
      "print(MultiFernet([new, old]).rotate(b'" + token + "').decode())\n";
  std::string rotated = python(rotate);
  EXPECT_EQ(*Fernet::timestamp(rotated), *Fernet::timestamp(token));
  EXPECT_EQ(next.decrypt(rotated, 0)->reveal(), "credential: sk-live-0123456789");
}

}  // namespace
}  // namespace ap::vault
