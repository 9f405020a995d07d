#include "services/attention-worker/attention_service.h"

#include <cstdio>
#include <cstring>

#include "services/attention-worker/generate_proto.h"

namespace dsv3 {

namespace pb = attention::v1;

grpc::Status ToGrpcStatus(const Status& st) {
  if (st.ok()) return grpc::Status::OK;
  // absl and gRPC share the canonical code numbering.
  return grpc::Status(static_cast<grpc::StatusCode>(st.code()), std::string(st.message()));
}

AttentionService::AttentionService(Engine& engine, const AttentionServiceOptions& opts)
    : engine_(engine),
      opts_(opts),
      fingerprint_(engine.model_config().Fingerprint()),
      kv_client_(fingerprint_),
      ucx_client_(fingerprint_) {}

StatusOr<KvTransferResult> AttentionService::PushKv(const std::string& decode_worker, const std::string& transport,
                                                    const KvExport& ex) {
  if (transport == "ucx") {
    DSV3_ASSIGN_OR_RETURN(std::string ucx, kv_client_.UcxAddress(decode_worker));
    if (!ucx.empty()) {
      kv_stats_.ucx_transfers++;
      return ucx_client_.Push(decode_worker, ucx, ex);
    }
    // The decode worker offers no UCX (its UCX context failed to start): gRPC carries it,
    // counted and said once so it is visible.
    if (kv_stats_.ucx_fallbacks++ == 0) {
      std::fprintf(stderr, "attention worker: decode worker %s offers no UCX; KV transfers fall back to gRPC\n",
                   decode_worker.c_str());
    }
  }
  return kv_client_.Push(decode_worker, ex);
}

grpc::Status AttentionService::Generate(grpc::ServerContext* ctx, const pb::GenerateRequest* req,
                                        grpc::ServerWriter<pb::GenerateResponse>* w) {
  if (draining_ && req->resume_kv_handle().empty()) return Draining();
  const ActiveCall active(active_calls_);
  std::string rid = req->request_id();
  if (rid.empty()) rid = StrCat(engine_.config().worker_id, "-req-", next_id_++);
  StatusOr<std::shared_ptr<OutputStream>> stream;
  if (!req->resume_kv_handle().empty()) {
    stream = engine_.Resume(req->resume_kv_handle(), rid);
  } else {
    auto params = ParamsFromProto(*req);
    if (!params.ok()) return ToGrpcStatus(params.status());
    params->request_id = rid;
    if (params->prefill_only && req->decode_worker().empty()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "decode_worker: prefill_only needs a decode worker");
    }
    if (!req->kv_transport().empty() && req->kv_transport() != "grpc" && req->kv_transport() != "ucx") {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          StrCat("kv_transport must be grpc or ucx, got '", req->kv_transport(), "'"));
    }
    stream = engine_.Submit(std::move(*params));
  }
  if (!stream.ok()) return ToGrpcStatus(stream.status());
  while (true) {
    auto o = (*stream)->Pop(50);
    if (!o) {
      if (ctx->IsCancelled()) {
        engine_.Abort(rid);
        return grpc::Status(grpc::StatusCode::CANCELLED, "client cancelled");
      }
      continue;
    }
    if (!o->error.ok()) return ToGrpcStatus(o->error);
    pb::GenerateResponse resp = OutputToProto(*o);
    if (o->final && o->kv_export) {
      auto pushed = PushKv(req->decode_worker(), req->kv_transport(), *o->kv_export);
      if (metrics_) {
        metrics_->OnKvTransfer(req->kv_transport() == "ucx" ? "ucx" : "grpc", pushed.ok() ? pushed->seconds : 0,
                               pushed.ok() ? pushed->bytes : 0, pushed.ok());
      }
      if (!pushed.ok()) {
        kv_stats_.failed_transfers++;
        return ToGrpcStatus(pushed.status());
      }
      kv_stats_.sent_transfers++;
      kv_stats_.sent_bytes += static_cast<uint64_t>(pushed->bytes);
      kv_stats_.sent_micros += static_cast<uint64_t>(pushed->seconds * 1e6);
      resp.set_kv_handle(pushed->handle);
    }
    if (!w->Write(resp)) {
      if (!o->final) engine_.Abort(rid);
      return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
    }
    if (o->final) return grpc::Status::OK;
  }
}

grpc::Status AttentionService::Abort(grpc::ServerContext*, const pb::AbortRequest* req, pb::AbortResponse* resp) {
  resp->set_found(engine_.Abort(req->request_id()));
  return grpc::Status::OK;
}

grpc::Status AttentionService::Draining() const {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      StrCat("attention worker ", engine_.config().worker_id, " is draining (shutting down)"));
}

grpc::Status AttentionService::GetLoad(grpc::ServerContext*, const pb::LoadRequest*, pb::LoadReport* r) {
  if (draining_) return Draining();  // the gateway's router marks it down
  const EngineLoad l = engine_.load();
  r->set_worker_id(engine_.config().worker_id);
  r->set_role(engine_.config().role);
  r->set_waiting(static_cast<int32_t>(l.waiting));
  r->set_running(static_cast<int32_t>(l.running));
  r->set_kv_blocks_total(l.kv_blocks_total);
  r->set_kv_blocks_free(l.kv_blocks_free);
  r->set_kv_usage(l.kv_blocks_total ? 1.0 - static_cast<double>(l.kv_blocks_free) / l.kv_blocks_total : 0.0);
  r->set_block_size(static_cast<int32_t>(engine_.block_size()));
  for (uint64_t h : l.recent_prefix_hashes) r->add_cached_prefix_hashes(h);
  r->set_prefix_queried_tokens(l.prefix_queried_tokens);
  r->set_prefix_hit_tokens(l.prefix_hit_tokens);
  return grpc::Status::OK;
}

grpc::Status AttentionService::Describe(grpc::ServerContext*, const pb::DescribeRequest*, pb::WorkerInfo* r) {
  const ModelConfig& mc = engine_.model_config();
  r->set_worker_id(engine_.config().worker_id);
  r->set_role(engine_.config().role);
  r->set_model_name(opts_.model_name);
  r->set_model_type(mc.model_type);
  r->set_max_context(engine_.max_context());
  r->set_vocab_size(mc.vocab_size);
  r->set_config_fingerprint(fingerprint_);
  r->set_eos_token_id(mc.eos_token_id);
  r->set_block_size(static_cast<int32_t>(engine_.block_size()));
  r->set_ucx_worker_address(ucx_address_);
  return grpc::Status::OK;
}

grpc::Status AttentionService::PushKv(grpc::ServerContext*, grpc::ServerReader<pb::KvTransferChunk>* reader,
                                      pb::KvTransferResponse* resp) {
  if (draining_) return Draining();
  const ActiveCall active(active_calls_);
  pb::KvTransferChunk chunk;
  if (!reader->Read(&chunk) || !chunk.has_header()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "kv: the first message must carry the header");
  }
  const pb::KvTransferHeader& h = chunk.header();
  if (h.config_fingerprint() != fingerprint_) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "kv: the prefill worker serves a different model configuration");
  }
  auto ex = ExportFromHeader(h);
  if (!ex.ok()) return ToGrpcStatus(ex.status());
  const int64_t total = (*ex)->layers * (*ex)->num_positions * (*ex)->latent_dim;
  if (total * static_cast<int64_t>(sizeof(float)) > opts_.max_kv_transfer_bytes) {
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, StrCat("kv: transfer of ", total * 4, " bytes over the limit"));
  }
  // Staged in host memory; cache blocks are taken only when everything arrived, so a
  // sender that dies mid-way leaves nothing behind.
  std::vector<float>& data = (*ex)->data;
  data.resize(static_cast<size_t>(total));
  int64_t received = 0;
  do {
    if (chunk.offset() != received || chunk.data().size() % sizeof(float) != 0 ||
        received + static_cast<int64_t>(chunk.data().size() / sizeof(float)) > total) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          StrCat("kv: chunk at offset ", chunk.offset(), " with ", chunk.data().size(),
                                 " bytes does not continue the transfer at ", received));
    }
    std::memcpy(data.data() + received, chunk.data().data(), chunk.data().size());
    received += static_cast<int64_t>(chunk.data().size() / sizeof(float));
  } while (reader->Read(&chunk));
  if (received != total) {
    return grpc::Status(grpc::StatusCode::ABORTED,
                        StrCat("kv: transfer ended after ", received, " of ", total, " values"));
  }
  kv_stats_.received_bytes += static_cast<uint64_t>(total * 4);
  if (metrics_) metrics_->OnKvReceived(total * 4);
  auto handle = engine_.ImportKv(*ex);
  if (!handle.ok()) return ToGrpcStatus(handle.status());
  resp->set_kv_handle(*handle);
  resp->set_bytes_received(total * 4);
  return grpc::Status::OK;
}

}  // namespace dsv3
