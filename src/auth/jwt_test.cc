// JWT verification with keys made here: RS256 and ES256 accepted; the attacks refused (alg none,
// RS256 -> HS256 confusion with the public key as the HMAC secret, unknown kid, kid path tricks,
// a key offered in the header, expired, not yet valid, wrong audience, wrong issuer, tampered
// payload).
#include "auth/jwt.h"
#include "auth/oidc.h"

#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <nlohmann/json.hpp>

#include "common/crypto.h"

namespace ap::auth {
namespace {

using nlohmann::json;
using Clock = std::chrono::system_clock;

std::string b64(std::string_view s) {
  std::string out = base64url_encode(s);
  while (!out.empty() && out.back() == '=') out.pop_back();
  return out;
}

std::string bn_bytes(const BIGNUM* bn, int len = 0) {
  std::string out(len ? static_cast<size_t>(len) : static_cast<size_t>(BN_num_bytes(bn)), '\0');
  if (len) {
    BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), len);
  } else {
    BN_bn2bin(bn, reinterpret_cast<unsigned char*>(out.data()));
  }
  return out;
}

struct Keys {
  EVP_PKEY* rsa = EVP_RSA_gen(2048);
  EVP_PKEY* ec = EVP_EC_gen("P-256");
  EVP_PKEY* attacker = EVP_RSA_gen(2048);
  ~Keys() {
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(attacker);
  }
  static json rsa_jwk(EVP_PKEY* k, const std::string& kid) {
    BIGNUM *n = nullptr, *e = nullptr;
    EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &n);
    EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_E, &e);
    json j{{"kty", "RSA"}, {"kid", kid}, {"use", "sig"}, {"alg", "RS256"}, {"n", b64(bn_bytes(n))}, {"e", b64(bn_bytes(e))}};
    BN_free(n);
    BN_free(e);
    return j;
  }
  json jwks() const {
    BIGNUM *x = nullptr, *y = nullptr;
    EVP_PKEY_get_bn_param(ec, OSSL_PKEY_PARAM_EC_PUB_X, &x);
    EVP_PKEY_get_bn_param(ec, OSSL_PKEY_PARAM_EC_PUB_Y, &y);
    json e{{"kty", "EC"}, {"kid", "ec-1"}, {"crv", "P-256"}, {"x", b64(bn_bytes(x, 32))}, {"y", b64(bn_bytes(y, 32))}};
    BN_free(x);
    BN_free(y);
    return json{{"keys", json::array({rsa_jwk(rsa, "rsa-1"), e, json{{"kty", "oct"}, {"k", "c2VjcmV0"}}})}};
  }
};

std::string sign(EVP_PKEY* key, const std::string& input, bool ec) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  size_t n = 0;
  EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key);
  EVP_DigestSign(ctx, nullptr, &n, reinterpret_cast<const unsigned char*>(input.data()), input.size());
  std::string sig(n, '\0');
  EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &n,
                 reinterpret_cast<const unsigned char*>(input.data()), input.size());
  sig.resize(n);
  EVP_MD_CTX_free(ctx);
  if (!ec) return sig;
  const unsigned char* p = reinterpret_cast<const unsigned char*>(sig.data());
  ECDSA_SIG* s = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size()));
  std::string raw = bn_bytes(ECDSA_SIG_get0_r(s), 32) + bn_bytes(ECDSA_SIG_get0_s(s), 32);
  ECDSA_SIG_free(s);
  return raw;
}

std::string token(EVP_PKEY* key, json header, const json& claims, bool ec = false) {
  std::string input = b64(header.dump()) + "." + b64(claims.dump());
  return input + "." + b64(sign(key, input, ec));
}

class Jwt : public ::testing::Test {
 protected:
  void SetUp() override {
    auto set = Jwks::parse(keys.jwks().dump());
    ASSERT_TRUE(set) << set.error().message;
    jwks = *set;
    policy.issuer = "https://id.example";
    policy.audiences = {"agentplane"};
  }
  json claims(int64_t exp_in = 300) const {
    int64_t t = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
    return {{"iss", "https://id.example"}, {"aud", json::array({"other", "agentplane"})}, {"sub", "u1"},
            {"tenant_id", "t"}, {"iat", t}, {"exp", t + exp_in}};
  }
  Result<json> check(const std::string& t) const { return verify_jwt(t, policy, jwks, now); }
  Keys keys;
  Jwks jwks;
  IssuerPolicy policy;
  Clock::time_point now = Clock::now();
};

TEST_F(Jwt, AcceptsRs256AndEs256) {
  EXPECT_EQ(jwks.size(), 2u);  // the symmetric key is not a signing key for us
  auto r = check(token(keys.rsa, {{"alg", "RS256"}, {"kid", "rsa-1"}, {"typ", "JWT"}}, claims()));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ((*r)["sub"], "u1");
  auto e = check(token(keys.ec, {{"alg", "ES256"}, {"kid", "ec-1"}}, claims(), true));
  ASSERT_TRUE(e) << e.error().message;
  auto peek = peek_jwt(token(keys.ec, {{"alg", "ES256"}, {"kid", "ec-1"}}, claims(), true));
  ASSERT_TRUE(peek);
  EXPECT_EQ(peek->kid, "ec-1");
  EXPECT_EQ(peek->iss, "https://id.example");
}

TEST_F(Jwt, RefusesTheAttacks) {
  auto refused = [&](const std::string& t, const std::string& why) {
    auto r = check(t);
    ASSERT_FALSE(r) << why;
    EXPECT_EQ(r.error().code, Code::kUnauthenticated) << why;
    EXPECT_NE(r.error().message.find(why), std::string::npos) << r.error().message;
  };
  json c = claims();
  // alg none, with and without a signature.
  std::string none = b64(json{{"alg", "none"}, {"kid", "rsa-1"}}.dump()) + "." + b64(c.dump());
  refused(none + ".", "not allowed");
  refused(none, "malformed");
  // RS256 -> HS256 confusion: HMAC with the RSA public key (PEM) as the secret.
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, keys.rsa);
  char* pem = nullptr;
  long pem_len = BIO_get_mem_data(bio, &pem);
  std::string input = b64(json{{"alg", "HS256"}, {"kid", "rsa-1"}}.dump()) + "." + b64(c.dump());
  unsigned char mac[32];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), pem, static_cast<int>(pem_len), reinterpret_cast<const unsigned char*>(input.data()),
       input.size(), mac, &mac_len);
  BIO_free(bio);
  refused(input + "." + b64(std::string(reinterpret_cast<char*>(mac), mac_len)), "not allowed");
  // Keys the issuer never published: unknown kid, path tricks, a key offered in the header.
  refused(token(keys.attacker, {{"alg", "RS256"}, {"kid", "attacker"}}, c), "unknown key id");
  refused(token(keys.attacker, {{"alg", "RS256"}, {"kid", "../../../dev/null"}}, c), "unknown key id");
  refused(token(keys.attacker, {{"alg", "RS256"}}, c), "no kid");
  refused(token(keys.attacker, {{"alg", "RS256"}, {"kid", "rsa-1"}, {"jku", "https://evil.example/jwks"},
                                {"jwk", Keys::rsa_jwk(keys.attacker, "rsa-1")}},
                c),
          "bad signature");
  // The right key, but the wrong algorithm for it.
  refused(token(keys.ec, {{"alg", "ES256"}, {"kid", "rsa-1"}}, c, true), "does not match");
  // Claims.
  refused(token(keys.rsa, {{"alg", "RS256"}, {"kid", "rsa-1"}}, claims(-61)), "expired");
  EXPECT_TRUE(check(token(keys.rsa, {{"alg", "RS256"}, {"kid", "rsa-1"}}, claims(-59))));  // within leeway
  json early = c;
  early["nbf"] = c["iat"].get<int64_t>() + 120;
  refused(token(keys.rsa, {{"alg", "RS256"}, {"kid", "rsa-1"}}, early), "not yet valid");
  json aud = c;
  aud["aud"] = "someone-else";
  refused(token(keys.rsa, {{"alg", "RS256"}, {"kid", "rsa-1"}}, aud), "wrong audience");
  json iss = c;
  iss["iss"] = "https://evil.example";
  refused(token(keys.rsa, {{"alg", "RS256"}, {"kid", "rsa-1"}}, iss), "wrong issuer");
  json no_exp = c;
  no_exp.erase("exp");
  refused(token(keys.rsa, {{"alg", "RS256"}, {"kid", "rsa-1"}}, no_exp), "no expiry");
  // A payload changed after signing.
  std::string good = token(keys.rsa, {{"alg", "RS256"}, {"kid", "rsa-1"}}, c);
  json forged = c;
  forged["tenant_id"] = "someone-elses-tenant";
  auto d1 = good.find('.'), d2 = good.rfind('.');
  refused(good.substr(0, d1 + 1) + b64(forged.dump()) + good.substr(d2), "bad signature");
  refused("a.b", "malformed");
  refused(std::string(20000, 'a'), "malformed");
  EXPECT_FALSE(Jwks::parse("{}"));
}

TEST(TenantClaim, StringOrOneKeycloakOrganization) {
  const std::string id = "01936b5e-8f3c-7aaa-9bbb-123456789abc";
  EXPECT_EQ(tenant_from_claim(json(id))->to_string(), id);
  EXPECT_EQ(tenant_from_claim(json::array({id}))->to_string(), id);                     // organization: [alias]
  EXPECT_EQ(tenant_from_claim(json{{"acme", {{"id", id}}}})->to_string(), id);          // {alias: {id}}
  EXPECT_EQ(tenant_from_claim(json{{id, json::object()}})->to_string(), id);            // {alias: {}}
  for (const json& bad : {json("acme"), json(7), json::array(), json::object(), json::array({id, id}),
                          json{{"a", {{"id", id}}}, {"b", {{"id", id}}}}, json{{"acme", {{"id", "acme"}}}}}) {
    auto r = tenant_from_claim(bad);
    ASSERT_FALSE(r) << bad.dump();
    EXPECT_EQ(r.error().code, Code::kUnauthenticated);
  }
}

}  // namespace
}  // namespace ap::auth
