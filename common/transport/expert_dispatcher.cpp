#include "common/transport/expert_dispatcher.h"

#include <algorithm>
#include <cstring>
#include <unordered_map>

namespace dsv3 {

StatusOr<std::unique_ptr<ExpertDispatcher>> ExpertDispatcher::Create(const ModelConfig& cfg,
                                                                     std::vector<ExpertWorkerEndpoint> workers,
                                                                     const ExpertDispatcherOptions& opts) {
  if (workers.empty()) return InvalidArgument("dispatch", "no expert workers");
  std::unique_ptr<ExpertDispatcher> d(new ExpertDispatcher(cfg, std::move(workers), opts));
  for (int64_t e = 0; e < cfg.n_routed_experts; ++e) {
    if (d->owners_[e].empty()) {
      return InvalidArgument("dispatch", StrCat("routed expert ", e, " is hosted by no expert worker"));
    }
  }
  return d;
}

ExpertDispatcher::ExpertDispatcher(const ModelConfig& cfg, std::vector<ExpertWorkerEndpoint> workers,
                                   const ExpertDispatcherOptions& opts)
    : cfg_(cfg), workers_(std::move(workers)), opts_(opts), owners_(cfg.n_routed_experts), pending_(workers_.size()) {
  for (size_t w = 0; w < workers_.size(); ++w) {
    for (int32_t e : workers_[w].experts) {
      if (e >= 0 && e < cfg.n_routed_experts) owners_[e].push_back(static_cast<int32_t>(w));
    }
  }
  stats_.routed_tokens_per_expert.assign(cfg.n_routed_experts, 0);
  stats_.exchanges_per_layer.assign(cfg.num_hidden_layers, 0);
  stats_.seconds_per_layer.assign(cfg.num_hidden_layers, 0.0);
}

std::string ExpertDispatcher::Describe(size_t w) const {
  return StrCat("expert worker ", workers_[w].channel->name(), " (experts ", FormatExpertRanges(workers_[w].experts), ")");
}

Status ExpertDispatcher::Fail(size_t worker, const Status& cause) {
  // Drop every connection with work in flight, so no stale result is read as the next
  // layer's; the next Dispatch reconnects.
  for (size_t w = 0; w < workers_.size(); ++w) {
    if (!pending_[w].empty() || w == worker) workers_[w].channel->Reset();
    pending_[w].clear();
  }
  return absl::Status(cause.code() == absl::StatusCode::kDeadlineExceeded ? cause.code() : absl::StatusCode::kUnavailable,
                      StrCat(Describe(worker), " failed during MoE layer ", layer_, ": ", cause.message()));
}

Status ExpertDispatcher::Dispatch(int64_t layer, const float* x, const RoutingResult& r) {
  started_ = std::chrono::steady_clock::now();
  const Deadline deadline = started_ + opts_.timeout;
  layer_ = layer;
  tokens_ = r.tokens;
  const int64_t H = cfg_.hidden_size, K = r.k, W = static_cast<int64_t>(workers_.size());
  // Slot assignment: (token, slot) -> worker; replicas spread by token index.
  std::vector<std::vector<int64_t>> rows(W);            // token rows per worker
  std::vector<std::vector<int32_t>> slot_ids(W);        // flattened [rows, K] per worker (-1 padded)
  std::vector<std::vector<float>> slot_w(W);
  std::vector<int64_t> last_row(W, -1);
  for (int64_t t = 0; t < r.tokens; ++t) {
    for (int64_t k = 0; k < K; ++k) {
      const int32_t e = r.experts[t * K + k];
      const auto& own = owners_[e];
      const int64_t w = own[static_cast<size_t>(t) % own.size()];
      if (last_row[w] != t) {
        rows[w].push_back(t);
        slot_ids[w].resize(slot_ids[w].size() + K, -1);
        slot_w[w].resize(slot_w[w].size() + K, 0.0f);
        last_row[w] = t;
      }
      const size_t base = (rows[w].size() - 1) * K;
      slot_ids[w][base + k] = e;
      slot_w[w][base + k] = r.weights[t * K + k];
      ++stats_.routed_tokens_per_expert[e];
    }
  }
  const size_t esz = WireDTypeSize(opts_.wire_dtype);
  const int64_t per_msg = opts_.max_tokens_per_message > 0
                              ? opts_.max_tokens_per_message
                              : std::max<int64_t>(1, kMaxWireMessageBytes / static_cast<int64_t>(H * esz + K * 8));
  dispatch_status_ = absl::OkStatus();
  for (int64_t w = 0; w < W; ++w) {
    const int64_t n = static_cast<int64_t>(rows[w].size());
    for (int64_t b = 0; b < n; b += per_msg) {
      const int64_t m = std::min(per_msg, n - b);
      expert_pb::ExpertBatch batch;
      Pending p{next_seq_++, {}};
      batch.set_seq(p.seq);
      batch.set_layer(static_cast<int32_t>(layer));
      batch.set_num_tokens(static_cast<int32_t>(m));
      batch.set_hidden_size(static_cast<int32_t>(H));
      batch.set_dtype(ToProto(opts_.wire_dtype));
      batch.set_slots(static_cast<int32_t>(K));
      std::string* act = batch.mutable_activations();
      act->reserve(static_cast<size_t>(m * H) * esz);
      for (int64_t i = b; i < b + m; ++i) EncodeFloats(x + rows[w][i] * H, H, opts_.wire_dtype, act);
      batch.mutable_expert_ids()->assign(reinterpret_cast<const char*>(slot_ids[w].data() + b * K), static_cast<size_t>(m * K) * 4);
      batch.mutable_weights()->assign(reinterpret_cast<const char*>(slot_w[w].data() + b * K), static_cast<size_t>(m * K) * 4);
      p.rows.assign(rows[w].begin() + b, rows[w].begin() + b + m);
      stats_.bytes_sent += batch.ByteSizeLong();
      Status st = workers_[w].channel->Send(batch, deadline);
      if (!st.ok()) {
        dispatch_status_ = Fail(static_cast<size_t>(w), st);
        return dispatch_status_;
      }
      pending_[w].push_back(std::move(p));
    }
  }
  return absl::OkStatus();
}

Status ExpertDispatcher::Combine(float* out) {
  if (!dispatch_status_.ok()) return dispatch_status_;
  const Deadline deadline = started_ + opts_.timeout;
  const int64_t H = cfg_.hidden_size;
  std::fill_n(out, tokens_ * H, 0.0f);
  std::vector<float> partial;
  for (size_t w = 0; w < workers_.size(); ++w) {
    // This worker's results, matched by seq, then added in message order.
    std::unordered_map<uint64_t, expert_pb::ExpertResult> got;
    while (got.size() < pending_[w].size()) {
      auto r = workers_[w].channel->Receive(deadline);
      if (!r.ok()) return Fail(w, r.status());
      if (r->error_code() != 0) {
        return Fail(w, absl::Status(static_cast<absl::StatusCode>(r->error_code()), r->error_message()));
      }
      const uint64_t seq = r->seq();
      if (std::none_of(pending_[w].begin(), pending_[w].end(), [&](const Pending& p) { return p.seq == seq; })) continue;
      stats_.bytes_received += r->ByteSizeLong();
      got.emplace(seq, std::move(*r));
    }
    for (const Pending& p : pending_[w]) {
      const expert_pb::ExpertResult& r = got[p.seq];
      const int64_t m = static_cast<int64_t>(p.rows.size());
      const size_t esz = r.dtype() == expert_pb::WIRE_F32 ? 4 : 2;
      if (r.num_tokens() != m || r.partial_sums().size() != static_cast<size_t>(m * H) * esz) {
        return Fail(w, absl::DataLossError(StrCat("malformed result for seq ", p.seq)));
      }
      partial.resize(static_cast<size_t>(m * H));
      DecodeFloats(r.partial_sums(), m * H, r.dtype(), partial.data());
      for (int64_t i = 0; i < m; ++i) {
        float* o = out + p.rows[i] * H;
        const float* s = partial.data() + i * H;
        for (int64_t d = 0; d < H; ++d) o[d] += s[d];
      }
    }
    pending_[w].clear();
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  ++stats_.exchanges;
  stats_.seconds += secs;
  stats_.last_seconds = secs;
  if (layer_ >= 0 && layer_ < static_cast<int64_t>(stats_.exchanges_per_layer.size())) {
    ++stats_.exchanges_per_layer[layer_];
    stats_.seconds_per_layer[layer_] += secs;
  }
  return absl::OkStatus();
}

}  // namespace dsv3
