// The UCX KV transfer protocol in one process: a prefill engine's export pushed in pieces
// into a decode engine's KvUcxServer, against importing the same export directly; a
// sender that stops half-way or sends a short piece; a header the server refuses.
#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/engine/model_instance.h"
#include "proto/dsv3/attention.pb.h"
#include "services/attention-worker/engine/engine.h"
#include "services/attention-worker/generate_proto.h"
#include "services/attention-worker/kv_ucx_transfer.h"
#include "test_models.h"

namespace dsv3 {
namespace {

using namespace kv_ucx;

const std::string& MkModel() {
  static const std::string dir = testing::RandomTinyModel("kv_ucx_mkmodel", 31, false);
  return dir;
}

std::unique_ptr<ModelInstance> Load() {
  ModelInstanceOptions o;
  o.model_dir = MkModel();
  o.backend = {kernels::CpuIsa::kAuto, 1};
  auto m = LoadModelInstance(o);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? std::move(*m) : nullptr;
}

struct Tokens {
  std::vector<int64_t> ids;
  std::vector<double> logprobs;
  Status error;
};

Tokens Drain(OutputStream& s) {
  Tokens t;
  for (int i = 0; i < 1000; ++i) {
    auto o = s.Pop(60000);
    if (!o) {
      t.error = absl::DeadlineExceededError("no output in 60 s");
      break;
    }
    for (const auto& c : o->choices) {
      t.ids.insert(t.ids.end(), c.tokens.begin(), c.tokens.end());
      for (const auto& lp : c.logprobs) t.logprobs.push_back(lp.logprob);
    }
    if (o->final) {
      t.error = o->error;
      break;
    }
  }
  return t;
}

class KvUcxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (auto* m : {&pm_, &dm_, &rm_}) {
      *m = Load();
      ASSERT_NE(*m, nullptr);
    }
    EngineConfig cfg;
    cfg.num_blocks = 128;
    prefill_ = *Engine::Create(*pm_->model, cfg);
    decode_ = *Engine::Create(*dm_->model, cfg);
    reference_ = *Engine::Create(*rm_->model, cfg);
    fingerprint_ = pm_->config().Fingerprint();
    auto s = KvUcxServer::Start(*decode_, fingerprint_, /*timeout_ms=*/3000);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
  }

  // A prefill-only run of a random prompt: the export a prefill worker would push.
  std::shared_ptr<KvExport> Export(int64_t prompt_tokens, uint64_t seed) {
    std::mt19937_64 rng(seed);
    GenerateParams p;
    p.request_id = "ucx" + std::to_string(seed);
    for (int64_t i = 0; i < prompt_tokens; ++i) p.prompt.push_back(static_cast<int64_t>(rng() % 1000) + 3);
    p.max_tokens = 6;
    p.sampling.temperature = 0;
    p.sampling.logprobs = 1;
    p.prefill_only = true;
    auto s = prefill_->Submit(p);
    EXPECT_TRUE(s.ok()) << s.status();
    std::shared_ptr<KvExport> ex;
    for (int i = 0; i < 100 && s.ok(); ++i) {
      auto o = (*s)->Pop(60000);
      if (!o) break;
      if (o->kv_export) ex = o->kv_export;
      if (o->final) break;
    }
    EXPECT_NE(ex, nullptr);
    return ex;
  }

  Tokens Continue(Engine& e, const std::string& handle) {
    auto s = e.Resume(handle, "resume");
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? Drain(**s) : Tokens{};
  }

  bool DecodeHoldsNoBlocks() { return decode_->load().kv_blocks_free == decode_->load().kv_blocks_total; }

  std::unique_ptr<ModelInstance> pm_, dm_, rm_;
  std::unique_ptr<Engine> prefill_, decode_, reference_;
  std::string fingerprint_;
  std::unique_ptr<KvUcxServer> server_;
};

// Pieces of 4 KiB (a 70-token tiny export is ~27 KiB: several pieces and a short last
// one) and of 1 MiB (one piece) both give exactly what a direct import gives.
TEST_F(KvUcxTest, PiecesArriveWholeAndDecodeEqualsDirectImport) {
  auto ex = Export(70, 1);
  ASSERT_NE(ex, nullptr);
  const uint64_t bytes = ex->data.size() * sizeof(float);
  ASSERT_GT(bytes % 4096, 0u) << "the test wants a short last piece";
  auto direct = reference_->ImportKv(std::make_shared<KvExport>(*ex));  // import consumes the data
  ASSERT_TRUE(direct.ok()) << direct.status();
  const Tokens want = Continue(*reference_, *direct);
  ASSERT_TRUE(want.error.ok()) << want.error;
  ASSERT_EQ(want.ids.size(), 5u);
  for (uint64_t piece : {uint64_t{4096}, uint64_t{1} << 20}) {
    SCOPED_TRACE(piece);
    KvUcxClient client(fingerprint_, 10000, piece);
    auto r = client.Push("decode", server_->address(), *ex);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->bytes, static_cast<int64_t>(bytes));
    const Tokens got = Continue(*decode_, r->handle);
    ASSERT_TRUE(got.error.ok()) << got.error;
    EXPECT_EQ(got.ids, want.ids);
    EXPECT_EQ(got.logprobs, want.logprobs) << "the same bytes in the cache give bit-identical logprobs";
  }
  EXPECT_EQ(server_->received_bytes(), 2 * bytes);
  EXPECT_TRUE(DecodeHoldsNoBlocks());
}

TEST_F(KvUcxTest, ForeignModelIsRefusedBeforeAnyData) {
  auto ex = Export(20, 2);
  ASSERT_NE(ex, nullptr);
  KvUcxClient client("another model");
  auto r = client.Push("decode", server_->address(), *ex);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(r.status())) << r.status();
  EXPECT_NE(std::string(r.status().message()).find("different model configuration"), std::string::npos) << r.status();
  EXPECT_EQ(server_->received_bytes(), 0u);
  EXPECT_TRUE(DecodeHoldsNoBlocks());
}

TEST_F(KvUcxTest, ExportOfTheWrongSizeIsRefusedBySender) {
  auto ex = Export(20, 5);
  ASSERT_NE(ex, nullptr);
  ex->data.resize(ex->data.size() - 1);
  KvUcxClient client(fingerprint_);
  auto r = client.Push("decode", server_->address(), *ex);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
  EXPECT_EQ(server_->received_bytes(), 0u);
}

// A hand-driven sender: header, "ready", then only some of the pieces (or a short one).
class RawSender {
 public:
  RawSender(const std::string& server, const KvExport& ex, const std::string& fingerprint, uint64_t id)
      : id_(id) {
    ucx_ = *UcxWorker::Create();
    ep_ = *ucx_->Connect(server, &broken_);
    attention::v1::KvUcxPush push;
    push.set_reply_worker_address(ucx_->address());
    push.set_transfer_id(id);
    *push.mutable_header() = ExportHeader(ex, fingerprint);
    push.set_piece_bytes(4096);
    EXPECT_TRUE(ucx_->Send(ep_, kPushTag | id, push.SerializeAsString(), Soon(), &broken_).ok());
  }
  ~RawSender() {
    if (ucx_) ucx_->Close(ep_);
  }
  static Deadline Soon() { return std::chrono::steady_clock::now() + std::chrono::seconds(5); }
  // The server's answer of `kind` (ready or final).
  attention::v1::KvTransferResponse Reply(uint64_t kind) {
    attention::v1::KvTransferResponse r;
    std::string msg;
    uint64_t tag = 0;
    auto got = ucx_->Receive(kind | id_, ~0ull, &msg, &tag, Soon(), &broken_);
    EXPECT_TRUE(got.ok() && *got) << "no reply";
    EXPECT_TRUE(r.ParseFromString(msg));
    return r;
  }
  Status Send(uint64_t piece, const void* data, size_t bytes) {
    return ucx_->SendAll(ep_, {{DataTag(piece, id_), const_cast<void*>(data), bytes}}, Soon(), &broken_);
  }
  void Vanish() {
    ucx_->Close(ep_);
    ucx_.reset();
  }

 private:
  uint64_t id_;
  std::atomic<bool> broken_{false};
  std::unique_ptr<UcxWorker> ucx_;
  ucp_ep_h ep_ = nullptr;
};

TEST_F(KvUcxTest, SenderGoneHalfWayLeavesNoBlocksAndTheServerServesOn) {
  auto ex = Export(70, 3);
  ASSERT_NE(ex, nullptr);
  const auto* bytes = reinterpret_cast<const char*>(ex->data.data());
  {
    RawSender s(server_->address(), *ex, fingerprint_, 77);
    const auto ready = s.Reply(kReadyTag);
    ASSERT_EQ(ready.error_code(), 0) << ready.error_message();
    ASSERT_TRUE(s.Send(0, bytes, 4096).ok());
    ASSERT_TRUE(s.Send(1, bytes + 4096, 4096).ok());
    s.Vanish();  // as when the prefill process dies: its endpoint closes
  }
  // The server notices (peer failure or its 3 s deadline), drops the buffer, serves on.
  KvUcxClient client(fingerprint_, 10000, 4096);
  auto r = client.Push("decode", server_->address(), *ex);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(server_->received_bytes(), ex->data.size() * sizeof(float)) << "only the complete transfer counts";
  EXPECT_EQ(decode_->load().kv_blocks_free, decode_->load().kv_blocks_total - 5) << "70 tokens, blocks of 16";
  EXPECT_TRUE(Continue(*decode_, r->handle).error.ok());
  EXPECT_TRUE(DecodeHoldsNoBlocks());
}

TEST_F(KvUcxTest, ShortPieceIsAnErrorReplyAndNoBlocks) {
  auto ex = Export(70, 4);
  ASSERT_NE(ex, nullptr);
  const auto* bytes = reinterpret_cast<const char*>(ex->data.data());
  RawSender s(server_->address(), *ex, fingerprint_, 78);
  ASSERT_EQ(s.Reply(kReadyTag).error_code(), 0);
  ASSERT_TRUE(s.Send(0, bytes, 100).ok());
  const auto done = s.Reply(kReplyTag);
  EXPECT_EQ(done.error_code(), static_cast<int>(absl::StatusCode::kDataLoss)) << done.error_message();
  EXPECT_NE(done.error_message().find("piece 0 has 100 bytes, expected 4096"), std::string::npos)
      << done.error_message();
  EXPECT_TRUE(done.kv_handle().empty());
  EXPECT_EQ(server_->received_bytes(), 0u);
  EXPECT_TRUE(DecodeHoldsNoBlocks());
}

}  // namespace
}  // namespace dsv3
