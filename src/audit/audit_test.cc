// Canonical JSON, chain verification (edit, drop, reorder, truncate, rewrite) and signed
// checkpoints, without a database (tests/integration/audit_test.cc does it with one).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <vector>

#include "audit/canonical.h"
#include "audit/chain.h"
#include "common/crypto.h"

namespace ap::audit {
namespace {

using nlohmann::json;

TEST(Canonical, SortsKeysEscapesAndDropsWhitespace) {
  json j = json::parse(R"({"b": [1, 2.0, "x\n\"y\u0001"], "a": {"z": null, "é": true, "\ud83d\ude00": 1, "ｚ": 2}})");
  // UTF-16 order: U+D83D (surrogate of the emoji) sorts before U+FF5A ('ｚ'), unlike code points.
  EXPECT_EQ(canonical_json(j),
            "{\"a\":{\"z\":null,\"\xc3\xa9\":true,\"\xf0\x9f\x98\x80\":1,\"\xef\xbd\x9a\":2},"
            "\"b\":[1,2,\"x\\n\\\"y\\u0001\"]}");
}

struct Entry {
  int64_t seq;
  std::string body, hash;
};

std::vector<Entry> chain(int n) {
  std::vector<Entry> out;
  std::string head(32, '\0');
  for (int i = 1; i <= n; ++i) {
    std::string body = "{\"n\":" + std::to_string(i) + "}";
    std::string_view parts[] = {head, body};
    auto h = sha256_parts(parts);
    head.assign(reinterpret_cast<const char*>(h.data()), h.size());
    out.push_back({i, body, head});
  }
  return out;
}

ChainVerifier run(const std::vector<Entry>& entries, int64_t remember = -1) {
  ChainVerifier v;
  v.remember(remember);
  for (const auto& e : entries)
    if (!v.add(e.seq, e.body, e.hash)) break;
  return v;
}

TEST(Chain, DetectsEditDropAndReorderNamingTheEntry) {
  auto good = chain(10);
  EXPECT_FALSE(run(good).bad_entry());
  EXPECT_EQ(run(good).size(), 10);

  auto edited = good;
  edited[4].body = "{\"n\":500}";
  EXPECT_EQ(run(edited).bad_entry(), 5);

  auto dropped = good;
  dropped.erase(dropped.begin() + 6);
  EXPECT_EQ(run(dropped).bad_entry(), 7);
  EXPECT_NE(run(dropped).problem().find("entry 7 is missing"), std::string::npos);

  auto renumbered = dropped;  // the gap closed by renumbering: the hash still breaks
  for (size_t i = 6; i < renumbered.size(); ++i) renumbered[i].seq -= 1;
  EXPECT_EQ(run(renumbered).bad_entry(), 7);

  auto reordered = good;
  std::swap(reordered[2].body, reordered[3].body);
  std::swap(reordered[2].hash, reordered[3].hash);
  EXPECT_EQ(run(reordered).bad_entry(), 3);
}

TEST(Chain, RangesVerifyIndependently) {
  auto good = chain(10);
  ChainVerifier second(5, good[4].hash);  // entries 6..10, after entry 5's stored hash
  for (size_t i = 5; i < good.size(); ++i) ASSERT_TRUE(second.add(good[i].seq, good[i].body, good[i].hash));
  EXPECT_EQ(second.size(), 10);
  EXPECT_EQ(second.head(), run(good).head());
  auto bad = good;
  bad[7].body = "{}";
  ChainVerifier broken(5, bad[4].hash);
  for (size_t i = 5; i < bad.size(); ++i)
    if (!broken.add(bad[i].seq, bad[i].body, bad[i].hash)) break;
  EXPECT_EQ(broken.bad_entry(), 8);
}

TEST(Chain, CheckpointsCatchTruncationAndRewrites) {
  std::string seed(32, 's');
  auto signer = Signer::from_seed(1, SecretString(seed));
  ASSERT_TRUE(signer);
  auto good = chain(10);
  auto full = run(good, 8);
  Checkpoint cp{"t", 8, hex_encode(*full.remembered()), "2026-11-25T00:00:00.000000Z", 1, ""};
  cp.signature = base64_encode(signer->sign(cp.signed_bytes()));
  auto parsed = Checkpoint::from_json(cp.to_json());
  ASSERT_TRUE(parsed);
  EXPECT_TRUE(verify_signature(signer->public_key(), parsed->signed_bytes(), *base64_decode(parsed->signature)));
  Checkpoint forged = *parsed;
  forged.size = 7;
  EXPECT_FALSE(verify_signature(signer->public_key(), forged.signed_bytes(), *base64_decode(forged.signature)));

  EXPECT_TRUE(check_against(cp, run(good, cp.size)));
  // Truncated below the checkpoint: entries 7..8 are missing.
  auto truncated = good;
  truncated.resize(6);
  auto t = check_against(cp, run(truncated, cp.size));
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().message.find("entries 7..8 are missing"), std::string::npos);
  // A whole new, self-consistent chain (someone with superuser rights rewrote history).
  auto rewritten = chain(12);
  for (auto& e : rewritten) e.body += " ";
  std::string head(32, '\0');
  for (auto& e : rewritten) {
    std::string_view parts[] = {head, e.body};
    auto h = sha256_parts(parts);
    head.assign(reinterpret_cast<const char*>(h.data()), h.size());
    e.hash = head;
  }
  auto r = check_against(cp, run(rewritten, cp.size));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("entry 8"), std::string::npos);
  EXPECT_FALSE(Checkpoint::from_json("{}"));
  EXPECT_FALSE(Signer::from_seed(1, SecretString("short")));
}

}  // namespace
}  // namespace ap::audit
