#include "fake_attention_worker.h"

#include <chrono>
#include <thread>

namespace dsv3::testing {

std::unique_ptr<FakeAttentionWorker> FakeAttentionWorker::Start(Options options, std::shared_ptr<FakeKvStore> kv) {
  std::unique_ptr<FakeAttentionWorker> w(new FakeAttentionWorker());
  w->options_ = std::move(options);
  w->kv_ = kv ? std::move(kv) : std::make_shared<FakeKvStore>();
  grpc::ServerBuilder b;
  int port = 0;
  b.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  b.RegisterService(w.get());
  w->server_ = b.BuildAndStart();
  if (!w->server_ || port == 0) return nullptr;
  w->address_ = "127.0.0.1:" + std::to_string(port);
  return w;
}

FakeAttentionWorker::~FakeAttentionWorker() { Stop(); }

void FakeAttentionWorker::Stop() {
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
    server_->Wait();
    server_.reset();
  }
}

void FakeAttentionWorker::SetScript(FakeScript s) {
  std::lock_guard<std::mutex> l(mu_);
  script_ = std::move(s);
}

void FakeAttentionWorker::SetCachedPrefixHashes(std::vector<uint64_t> h) {
  std::lock_guard<std::mutex> l(mu_);
  cached_hashes_ = std::move(h);
}

std::vector<attn::GenerateRequest> FakeAttentionWorker::requests() {
  std::lock_guard<std::mutex> l(mu_);
  return requests_;
}

std::vector<std::string> FakeAttentionWorker::aborts() {
  std::lock_guard<std::mutex> l(mu_);
  return aborts_;
}

grpc::Status FakeAttentionWorker::Generate(grpc::ServerContext* ctx, const attn::GenerateRequest* req,
                                           grpc::ServerWriter<attn::GenerateResponse>* writer) {
  ++generate_calls_;
  ++active_;
  struct Active {
    std::atomic<int>& a;
    ~Active() { --a; }
  } active_guard{active_};
  FakeScript script;
  {
    std::lock_guard<std::mutex> l(mu_);
    requests_.push_back(*req);
    script = script_;
  }
  attn::GenerateRequest r = *req;
  int start = 0;  // tokens already generated (by the prefill worker)
  std::vector<int64_t> first_tokens;
  if (!req->resume_kv_handle().empty()) {
    std::lock_guard<std::mutex> l(kv_->mu);
    auto it = kv_->entries.find(req->resume_kv_handle());
    if (it == kv_->entries.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown kv handle");
    if (it->second.decode_worker != address_) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "kv was pushed to another worker");
    }
    r = it->second.request;
    r.set_prefill_only(false);
    start = 1;
  }
  // A migrated request continues the script where its first worker stopped, as a real
  // worker continues the model's output.
  if (req->generated_prefix() > 0) start = req->generated_prefix();
  const int n = r.n() > 0 ? r.n() : 1;
  const int64_t last = r.prompt_ids_size() > 0 ? r.prompt_ids(r.prompt_ids_size() - 1) : 0;
  auto token_at = [&](int i) -> int64_t {
    if (!script.tokens.empty()) return script.tokens[static_cast<size_t>(i)];
    return (last + 1 + i) % options_.vocab_size;
  };
  const int limit = script.tokens.empty() ? r.max_tokens() : std::min<int>(r.max_tokens(), static_cast<int>(script.tokens.size()));
  std::vector<bool> done(static_cast<size_t>(n), false);
  int completion = 0;
  for (int i = start;; ++i) {
    if (script.fail_after_tokens >= 0 && i >= script.fail_after_tokens &&
        !(script.fail_fresh_only && req->generated_prefix() > 0)) {
      return grpc::Status(script.fail_code, "scripted failure");
    }
    if (script.token_delay_ms > 0) {
      for (int waited = 0; waited < script.token_delay_ms; waited += 5) {
        if (ctx->IsCancelled()) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(std::min(5, script.token_delay_ms - waited)));
      }
    }
    if (ctx->IsCancelled()) {
      ++cancellations_;
      return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client");
    }
    attn::GenerateResponse resp;
    bool all_done = true;
    for (int c = 0; c < n; ++c) {
      if (done[static_cast<size_t>(c)]) continue;
      auto* cd = resp.add_choices();
      cd->set_index(c);
      const int64_t tok = token_at(i);
      cd->add_token_ids(tok);
      ++completion;
      if (r.logprobs() > 0) {
        auto* lp = cd->add_logprobs();
        lp->set_logprob(-0.5f);
        for (int k = 0; k < r.top_logprobs(); ++k) {
          auto* t = lp->add_top();
          t->set_id((tok + k) % options_.vocab_size);
          t->set_logprob(-0.5f - static_cast<float>(k));
        }
      }
      bool stop = false;
      for (int64_t s : r.stop_token_ids()) stop |= s == tok;
      if (stop || (!script.tokens.empty() && i + 1 >= static_cast<int>(script.tokens.size()))) {
        cd->set_finish_reason(attn::FINISH_STOP);
        done[static_cast<size_t>(c)] = true;
      } else if (i + 1 >= limit) {
        cd->set_finish_reason(attn::FINISH_LENGTH);
        done[static_cast<size_t>(c)] = true;
      } else if (r.prefill_only()) {
        cd->set_finish_reason(attn::FINISH_PREFILL_DONE);
      }
      all_done &= done[static_cast<size_t>(c)];
      if (r.prefill_only()) first_tokens.push_back(tok);
    }
    if (r.prefill_only()) {
      const std::string handle = "kv-" + r.request_id();
      {
        std::lock_guard<std::mutex> l(kv_->mu);
        kv_->entries[handle] = FakeKvStore::Entry{r, first_tokens, r.decode_worker()};
      }
      resp.set_kv_handle(handle);
      all_done = true;
    }
    if (all_done) {
      resp.mutable_usage()->set_prompt_tokens(r.prompt_ids_size());
      resp.mutable_usage()->set_completion_tokens(completion);
      resp.mutable_usage()->set_cached_prompt_tokens(script.cached_prompt_tokens);
    }
    if (!writer->Write(resp)) {
      ++cancellations_;
      return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
    }
    if (all_done) return grpc::Status::OK;
  }
}

grpc::Status FakeAttentionWorker::Abort(grpc::ServerContext*, const attn::AbortRequest* req, attn::AbortResponse* resp) {
  std::lock_guard<std::mutex> l(mu_);
  aborts_.push_back(req->request_id());
  resp->set_found(false);
  return grpc::Status::OK;
}

grpc::Status FakeAttentionWorker::GetLoad(grpc::ServerContext*, const attn::LoadRequest*, attn::LoadReport* resp) {
  ++load_polls_;
  std::lock_guard<std::mutex> l(mu_);
  resp->set_worker_id(options_.worker_id);
  resp->set_role(options_.role);
  resp->set_running(active_.load());
  resp->set_kv_blocks_total(1000);
  resp->set_kv_blocks_free(1000);
  resp->set_block_size(options_.block_size);
  for (uint64_t h : cached_hashes_) resp->add_cached_prefix_hashes(h);
  return grpc::Status::OK;
}

grpc::Status FakeAttentionWorker::Describe(grpc::ServerContext*, const attn::DescribeRequest*, attn::WorkerInfo* resp) {
  resp->set_worker_id(options_.worker_id);
  resp->set_role(options_.role);
  resp->set_model_name("fake-model");
  resp->set_model_type("deepseek_v3");
  resp->set_max_context(options_.max_context);
  resp->set_vocab_size(options_.vocab_size);
  resp->set_config_fingerprint(options_.fingerprint);
  resp->set_eos_token_id(1);
  resp->set_block_size(options_.block_size);
  return grpc::Status::OK;
}

}  // namespace dsv3::testing
