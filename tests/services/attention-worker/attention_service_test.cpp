// dsv3-attention-worker as real processes on 127.0.0.1, driven over gRPC: the oracle
// fixtures through the service, experts in-process and in two expert workers, prefill on
// one worker plus decode on another, and the faults of the disaggregated path (decode
// worker killed after the transfer, sender gone mid-transfer, client cancellation).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/impl/codegen/client_unary_call.h>
#include <nlohmann/json.hpp>

#include "child_process.h"
#include "proto/dsv3/attention.grpc.pb.h"
#include "test_models.h"

namespace dsv3 {
namespace {

using testing::SharedOracle;
using testing::ScratchDir;

namespace pb = attention::v1;
using testing::ChildProcess;


const std::string& MkModel() {
  static const std::string dir = testing::RandomTinyModel("attn_service_mkmodel", 31, false);
  return dir;
}


std::unique_ptr<pb::AttentionService::Stub> Connect(const std::string& addr) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  return pb::AttentionService::NewStub(grpc::CreateCustomChannel(addr, grpc::InsecureChannelCredentials(), args));
}

struct Reply {
  std::vector<std::vector<int64_t>> tokens;
  std::vector<pb::FinishReason> finish;
  pb::Usage usage;
  std::string kv_handle;
  grpc::Status status;
};

Reply Generate(pb::AttentionService::Stub& stub, const pb::GenerateRequest& req, int n = 1) {
  Reply r;
  r.tokens.resize(static_cast<size_t>(n));
  r.finish.resize(static_cast<size_t>(n), pb::FINISH_NONE);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  auto reader = stub.Generate(&ctx, req);
  pb::GenerateResponse resp;
  while (reader->Read(&resp)) {
    for (const auto& c : resp.choices()) {
      auto& t = r.tokens[static_cast<size_t>(c.index())];
      t.insert(t.end(), c.token_ids().begin(), c.token_ids().end());
      if (c.finish_reason() != pb::FINISH_NONE) r.finish[static_cast<size_t>(c.index())] = c.finish_reason();
    }
    if (resp.has_usage()) r.usage = resp.usage();
    if (!resp.kv_handle().empty()) r.kv_handle = resp.kv_handle();
  }
  r.status = reader->Finish();
  return r;
}

pb::GenerateRequest Greedy(const std::vector<int64_t>& prompt, int max_tokens, const std::string& id = "") {
  pb::GenerateRequest r;
  r.set_request_id(id);
  for (int64_t t : prompt) r.add_prompt_ids(t);
  r.mutable_sampling()->set_temperature(0);
  r.set_max_tokens(max_tokens);
  r.set_ignore_eos(true);
  return r;
}

pb::LoadReport Load(pb::AttentionService::Stub& stub) {
  grpc::ClientContext ctx;
  pb::LoadReport l;
  EXPECT_TRUE(stub.GetLoad(&ctx, pb::LoadRequest{}, &l).ok());
  return l;
}

std::vector<int64_t> RandomPrompt(std::mt19937_64& rng, int64_t len) {
  std::uniform_int_distribution<int64_t> d(2, 129279);
  std::vector<int64_t> p(static_cast<size_t>(len));
  for (auto& t : p) t = d(rng);
  return p;
}

const std::vector<std::string> kSmallKv = {"--kv-cache-bytes", "8388608"};

TEST(AttentionServiceTest, OracleFixturesThroughTheService) {
  const std::string dir = SharedOracle("tiny-bf16");
  if (dir.empty()) GTEST_SKIP() << "oracle fixture tiny-bf16 not found (set DSV3_SHARED_DIR): skipping";
  std::string addr;
  ChildProcess w = testing::StartAttentionWorker(dir, "both", &addr, kSmallKv);
  ASSERT_FALSE(addr.empty());
  auto stub = Connect(addr);
  std::ifstream f(dir + "/golden.json");
  const auto golden = nlohmann::json::parse(f);
  // All prompts concurrently: they share steps.
  std::vector<std::thread> threads;
  std::vector<Reply> replies(golden["prompts"].size());
  std::vector<std::vector<int64_t>> want(replies.size());
  for (size_t i = 0; i < replies.size(); ++i) {
    const auto& p = golden["prompts"][i];
    for (const auto& st : p["greedy"]["steps"]) want[i].push_back(st["token"].get<int64_t>());
    threads.emplace_back([&, i, p] {
      replies[i] = Generate(*stub, Greedy(p["tokens"].get<std::vector<int64_t>>(), static_cast<int>(want[i].size())));
    });
  }
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < replies.size(); ++i) {
    ASSERT_TRUE(replies[i].status.ok()) << replies[i].status.error_message();
    EXPECT_EQ(replies[i].tokens[0], want[i]) << golden["prompts"][i]["name"];
  }
  // Health, Describe and bad input over the wire.
  {
    // grpc.health.v1.Health/Check with an empty request; SERVING is field 1 = 1 (08 01).
    auto channel = grpc::CreateChannel(addr, grpc::InsecureChannelCredentials());
    grpc::ClientContext ctx;
    grpc::ByteBuffer req, resp;
    grpc::Slice empty;
    req = grpc::ByteBuffer(&empty, 1);
    grpc::Status st = grpc::internal::BlockingUnaryCall<grpc::ByteBuffer, grpc::ByteBuffer>(
        channel.get(), grpc::internal::RpcMethod("/grpc.health.v1.Health/Check", grpc::internal::RpcMethod::NORMAL_RPC),
        &ctx, req, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    std::vector<grpc::Slice> slices;
    ASSERT_TRUE(resp.Dump(&slices).ok());
    std::string bytes;
    for (const auto& sl : slices) bytes.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
    EXPECT_EQ(bytes, std::string("\x08\x01", 2)) << "health status SERVING";
  }
  {
    grpc::ClientContext ctx;
    pb::WorkerInfo info;
    ASSERT_TRUE(stub->Describe(&ctx, pb::DescribeRequest{}, &info).ok());
    EXPECT_EQ(info.vocab_size(), 129280);
    EXPECT_EQ(info.role(), "both");
  }
  Reply bad = Generate(*stub, Greedy({1, 200000}, 3));
  EXPECT_EQ(bad.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(bad.status.error_message().find("outside the vocabulary"), std::string::npos);
}

// Routed experts in-process and in two expert worker processes give the same tokens.
TEST(AttentionServiceTest, ExpertWorkersAndInProcessExpertsAgree) {
  std::string a1, a2, attn_local, attn_remote;
  ChildProcess e1 = testing::StartExpertWorker(MkModel(), "0-127", "grpc", &a1);
  ChildProcess e2 = testing::StartExpertWorker(MkModel(), "128-255", "grpc", &a2);
  ASSERT_FALSE(a1.empty());
  ASSERT_FALSE(a2.empty());
  ChildProcess local = testing::StartAttentionWorker(MkModel(), "both", &attn_local, kSmallKv);
  std::vector<std::string> extra = kSmallKv;
  extra.insert(extra.end(), {"--expert-workers", a1 + "," + a2});
  ChildProcess remote = testing::StartAttentionWorker(MkModel(), "both", &attn_remote, extra);
  ASSERT_FALSE(attn_local.empty());
  ASSERT_FALSE(attn_remote.empty());
  auto s1 = Connect(attn_local), s2 = Connect(attn_remote);
  std::mt19937_64 rng(1);
  for (int i = 0; i < 3; ++i) {
    auto req = Greedy(RandomPrompt(rng, 10 + 13 * i), 8);
    Reply x = Generate(*s1, req), y = Generate(*s2, req);
    ASSERT_TRUE(x.status.ok() && y.status.ok()) << x.status.error_message() << y.status.error_message();
    EXPECT_EQ(x.tokens, y.tokens);
  }
  // An expert worker dies: the request fails with a clear error, the worker stays up.
  e2.Kill(SIGKILL);
  e2.Wait();
  Reply failed = Generate(*s2, Greedy(RandomPrompt(rng, 12), 8));
  EXPECT_FALSE(failed.status.ok());
  EXPECT_NE(failed.status.error_message().find("expert worker"), std::string::npos) << failed.status.error_message();
  const pb::LoadReport l = Load(*s2);
  EXPECT_EQ(l.kv_blocks_free(), l.kv_blocks_total()) << "the failed request's blocks are back";
}

class DisaggregatedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    prefill_ = testing::StartAttentionWorker(MkModel(), "prefill", &prefill_addr_, kSmallKv);
    decode_ = testing::StartAttentionWorker(MkModel(), "decode", &decode_addr_, kSmallKv);
    colo_ = testing::StartAttentionWorker(MkModel(), "both", &colo_addr_, kSmallKv);
    ASSERT_FALSE(prefill_addr_.empty());
    ASSERT_FALSE(decode_addr_.empty());
    ASSERT_FALSE(colo_addr_.empty());
    p_ = Connect(prefill_addr_);
    d_ = Connect(decode_addr_);
    c_ = Connect(colo_addr_);
  }
  std::string prefill_addr_, decode_addr_, colo_addr_;
  ChildProcess prefill_, decode_, colo_;
  std::unique_ptr<pb::AttentionService::Stub> p_, d_, c_;
};

TEST_F(DisaggregatedTest, PrefillHereDecodeThereEqualsColocated) {
  std::mt19937_64 rng(2);
  {
    grpc::ClientContext ctx;
    pb::WorkerInfo info;
    ASSERT_TRUE(d_->Describe(&ctx, pb::DescribeRequest{}, &info).ok());
    EXPECT_FALSE(info.ucx_worker_address().empty()) << "the decode worker offers UCX KV transfer";
  }
  for (const char* transport : {"grpc", "ucx"})
  for (int n : {1, 2}) {
    SCOPED_TRACE(std::string(transport) + " n=" + std::to_string(n));
    auto req = Greedy(RandomPrompt(rng, 77), 12);
    req.set_n(n);
    if (n > 1) {
      req.mutable_sampling()->set_temperature(0.8f);
      req.mutable_sampling()->set_has_seed(true);
      req.mutable_sampling()->set_seed(5);
    }
    Reply colo = Generate(*c_, req, n);
    ASSERT_TRUE(colo.status.ok()) << colo.status.error_message();
    auto pre = req;
    pre.set_prefill_only(true);
    pre.set_decode_worker(decode_addr_);
    pre.set_kv_transport(transport);
    Reply first = Generate(*p_, pre, n);
    ASSERT_TRUE(first.status.ok()) << first.status.error_message();
    ASSERT_FALSE(first.kv_handle.empty());
    for (int c = 0; c < n; ++c) EXPECT_EQ(first.finish[c], pb::FINISH_PREFILL_DONE);
    pb::GenerateRequest resume;
    resume.set_resume_kv_handle(first.kv_handle);
    Reply rest = Generate(*d_, resume, n);
    ASSERT_TRUE(rest.status.ok()) << rest.status.error_message();
    for (int c = 0; c < n; ++c) {
      std::vector<int64_t> joined = first.tokens[c];
      joined.insert(joined.end(), rest.tokens[c].begin(), rest.tokens[c].end());
      EXPECT_EQ(joined, colo.tokens[c]) << "choice " << c;
      EXPECT_EQ(rest.finish[c], pb::FINISH_LENGTH);
    }
    EXPECT_EQ(rest.usage.completion_tokens(), 12 * n);
    EXPECT_EQ(rest.usage.prompt_tokens(), 77);
  }
  const pb::LoadReport dl = Load(*d_), pl = Load(*p_);
  EXPECT_EQ(dl.kv_blocks_free(), dl.kv_blocks_total());
  EXPECT_EQ(pl.kv_blocks_free(), pl.kv_blocks_total());
}

TEST_F(DisaggregatedTest, DecodeWorkerKilledAfterTransferFailsTheRequestCleanly) {
  std::mt19937_64 rng(3);
  auto pre = Greedy(RandomPrompt(rng, 40), 30);
  pre.set_prefill_only(true);
  pre.set_decode_worker(decode_addr_);
  Reply first = Generate(*p_, pre);
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();
  decode_.Kill(SIGKILL);
  decode_.Wait();
  pb::GenerateRequest resume;
  resume.set_resume_kv_handle(first.kv_handle);
  const auto t0 = std::chrono::steady_clock::now();
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto reader = d_->Generate(&ctx, resume);
  pb::GenerateResponse resp;
  EXPECT_FALSE(reader->Read(&resp));
  const grpc::Status st = reader->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 10.0);
  // Pushing to the dead decode worker fails the prefill request clearly; the prefill
  // worker keeps serving and holds no blocks.
  Reply again = Generate(*p_, pre);
  EXPECT_EQ(again.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(again.status.error_message().find("KV transfer to decode worker"), std::string::npos)
      << again.status.error_message();
  const pb::LoadReport pl = Load(*p_);
  EXPECT_EQ(pl.kv_blocks_free(), pl.kv_blocks_total());
}

TEST_F(DisaggregatedTest, SenderGoneMidTransferLeavesNoBlocks) {
  const pb::LoadReport before = Load(*d_);
  // A well-formed header announcing 3 layers x 40 positions, half the data, then the
  // sender vanishes (stream cancelled, as when the prefill process dies).
  {
    grpc::ClientContext info_ctx;
    pb::WorkerInfo info;
    ASSERT_TRUE(d_->Describe(&info_ctx, pb::DescribeRequest{}, &info).ok());
    grpc::ClientContext ctx;
    pb::KvTransferResponse resp;
    auto w = d_->PushKv(&ctx, &resp);
    pb::KvTransferChunk chunk;
    auto* h = chunk.mutable_header();
    std::mt19937_64 rng(4);
    auto prompt = RandomPrompt(rng, 40);
    *h->mutable_request() = Greedy(prompt, 5);
    for (int64_t t : prompt) h->add_prompt_ids(t);
    h->add_first_token_ids(7);
    h->add_first_logprobs();
    h->add_sampler_states("");
    h->set_num_tokens(40);
    h->set_num_layers(3);
    h->set_latent_dim(32 + 64);  // kv_lora_rank + qk_rope_head_dim of the tiny preset
    h->set_config_fingerprint(info.config_fingerprint());
    chunk.set_offset(0);
    std::vector<float> half(3 * 40 * 96 / 2, 0.5f);
    chunk.set_data(reinterpret_cast<const char*>(half.data()), half.size() * sizeof(float));
    ASSERT_TRUE(w->Write(chunk));
    ctx.TryCancel();
    EXPECT_FALSE(w->Finish().ok());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const pb::LoadReport after = Load(*d_);
  EXPECT_EQ(after.kv_blocks_free(), before.kv_blocks_free());
  EXPECT_EQ(after.kv_blocks_free(), after.kv_blocks_total());
  // The real thing: a prefill worker killed while it pushes a long prompt.
  std::mt19937_64 rng(5);
  auto pre = Greedy(RandomPrompt(rng, 3000), 5);
  pre.set_prefill_only(true);
  pre.set_decode_worker(decode_addr_);
  std::thread call([&] { (void)Generate(*p_, pre); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  prefill_.Kill(SIGKILL);
  prefill_.Wait();
  call.join();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const pb::LoadReport end = Load(*d_);
  EXPECT_EQ(end.kv_blocks_free(), end.kv_blocks_total());
}

TEST_F(DisaggregatedTest, ClientCancellationFreesTheSequence) {
  std::mt19937_64 rng(6);
  auto req = Greedy(RandomPrompt(rng, 50), 100000);
  grpc::ClientContext ctx;
  auto reader = c_->Generate(&ctx, req);
  pb::GenerateResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  EXPECT_LT(Load(*c_).kv_blocks_free(), Load(*c_).kv_blocks_total());
  ctx.TryCancel();
  (void)reader->Finish();
  pb::LoadReport l;
  for (int i = 0; i < 50; ++i) {
    l = Load(*c_);
    if (l.kv_blocks_free() == l.kv_blocks_total() && l.running() == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(l.kv_blocks_free(), l.kv_blocks_total());
  EXPECT_EQ(l.running(), 0);
  // Abort by id works the same way.
  auto req2 = Greedy(RandomPrompt(rng, 20), 100000, "abort-me");
  grpc::ClientContext ctx2;
  auto reader2 = c_->Generate(&ctx2, req2);
  ASSERT_TRUE(reader2->Read(&resp));
  {
    grpc::ClientContext actx;
    pb::AbortRequest ar;
    ar.set_request_id("abort-me");
    pb::AbortResponse aresp;
    ASSERT_TRUE(c_->Abort(&actx, ar, &aresp).ok());
    EXPECT_TRUE(aresp.found());
  }
  pb::FinishReason last = pb::FINISH_NONE;
  while (reader2->Read(&resp)) {
    for (const auto& c : resp.choices()) last = c.finish_reason() != pb::FINISH_NONE ? c.finish_reason() : last;
  }
  EXPECT_TRUE(reader2->Finish().ok());
  EXPECT_EQ(last, pb::FINISH_ABORT);
  l = Load(*c_);
  EXPECT_EQ(l.kv_blocks_free(), l.kv_blocks_total());
}

}  // namespace
}  // namespace dsv3
