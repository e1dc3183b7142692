#include "audit/chain.h"

#include <openssl/evp.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "audit/canonical.h"
#include "common/crypto.h"

namespace ap::audit {

bool ChainVerifier::add(int64_t seq, std::string_view body, std::string_view stored_hash) {
  if (bad_) return false;
  if (seq != size_ + 1) {
    bad_ = size_ + 1;
    problem_ = seq > size_ + 1 ? "entry " + std::to_string(size_ + 1) + " is missing"
                               : "entry " + std::to_string(seq) + " is out of order";
    return false;
  }
  std::string_view parts[] = {head_, body};
  auto h = sha256_parts(parts);
  std::string computed(reinterpret_cast<const char*>(h.data()), h.size());
  if (computed != stored_hash) {
    bad_ = seq;
    problem_ = "entry " + std::to_string(seq) +
               ": its hash is not SHA-256(previous hash || body): this entry, or the one before it, "
               "was changed, removed or moved";
    return false;
  }
  head_ = std::move(computed);
  size_ = seq;
  if (seq == remember_seq_) remembered_ = head_;
  return true;
}

std::string Checkpoint::signed_bytes() const {
  return canonical_json(nlohmann::json{{"tenant", tenant}, {"size", size}, {"head", head_hex},
                                       {"time", time}, {"key_version", key_version}});
}

std::string Checkpoint::to_json() const {
  nlohmann::json j = nlohmann::json::parse(signed_bytes());
  j["signature"] = signature;
  return j.dump();
}

Checkpoint sign_head(const Signer& signer, std::string tenant, int64_t size, std::string head_hex,
                     std::string time) {
  Checkpoint cp;
  cp.tenant = std::move(tenant);
  cp.size = size;
  cp.head_hex = std::move(head_hex);
  cp.time = std::move(time);
  cp.key_version = signer.version();
  cp.signature = base64_encode(signer.sign(cp.signed_bytes()));
  return cp;
}

Result<Checkpoint> Checkpoint::from_json(std::string_view text) {
  auto j = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (!j.is_object()) return Error::invalid_argument("a checkpoint is a JSON object");
  try {
    Checkpoint c;
    c.tenant = j.at("tenant").get<std::string>();
    c.size = j.at("size").get<int64_t>();
    c.head_hex = j.at("head").get<std::string>();
    c.time = j.at("time").get<std::string>();
    c.key_version = j.at("key_version").get<int>();
    c.signature = j.at("signature").get<std::string>();
    return c;
  } catch (const nlohmann::json::exception&) {
    return Error::invalid_argument("a checkpoint needs tenant, size, head, time, key_version and signature");
  }
}

namespace {
using Pkey = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using MdCtx = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;
}  // namespace

Result<Signer> Signer::from_seed(int version, const SecretString& seed) {
  if (seed.reveal().size() != 32) return Error::invalid_argument("an Ed25519 seed is 32 bytes");
  Pkey key(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr,
                                        reinterpret_cast<const unsigned char*>(seed.reveal().data()), 32),
           EVP_PKEY_free);
  if (!key) return Error::internal("cannot make an Ed25519 key");
  std::string pub(32, '\0');
  size_t n = pub.size();
  if (EVP_PKEY_get_raw_public_key(key.get(), reinterpret_cast<unsigned char*>(pub.data()), &n) != 1)
    return Error::internal("cannot read an Ed25519 public key");
  Signer s;
  s.version_ = version;
  s.seed_ = seed;
  s.public_ = std::move(pub);
  return s;
}

std::string Signer::sign(std::string_view bytes) const {
  Pkey key(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr,
                                        reinterpret_cast<const unsigned char*>(seed_.reveal().data()), 32),
           EVP_PKEY_free);
  MdCtx ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  std::string sig(64, '\0');
  size_t n = sig.size();
  if (!key || !ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &n,
                     reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size()) != 1)
    return {};
  return sig;
}

bool verify_signature(std::string_view public_key, std::string_view bytes, std::string_view signature) {
  if (public_key.size() != 32 || signature.size() != 64) return false;
  Pkey key(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr,
                                       reinterpret_cast<const unsigned char*>(public_key.data()), 32),
           EVP_PKEY_free);
  MdCtx ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  return key && ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) == 1 &&
         EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                          reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size()) == 1;
}

Status check_against(const Checkpoint& cp, const ChainVerifier& chain) {
  if (chain.bad_entry()) return Error::failed_precondition(chain.problem());
  if (chain.size() < cp.size)
    return Error::failed_precondition("entries " + std::to_string(chain.size() + 1) + ".." +
                                      std::to_string(cp.size) + " are missing: the checkpoint says the chain had " +
                                      std::to_string(cp.size) + " entries, it has " + std::to_string(chain.size()));
  if (cp.size > 0 && (!chain.remembered() || hex_encode(*chain.remembered()) != cp.head_hex))
    return Error::failed_precondition("entry " + std::to_string(cp.size) +
                                      ": its hash differs from the checkpoint's head: the chain up to it was rewritten");
  return ok_status();
}

}  // namespace ap::audit
