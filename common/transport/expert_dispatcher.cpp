#include "common/transport/expert_dispatcher.h"

#include <algorithm>
#include <cstring>
#include <numeric>

namespace dsv3 {

namespace {
// A message goes to at most this many workers before the exchange gives up: more workers
// failing inside one exchange than this says the problem is not one worker.
constexpr int kMaxSendsPerMessage = 8;

// Result errors that say "this worker, now" (a draining or overloaded worker): another
// worker hosting the same experts is worth trying. Anything else is about the message.
bool WorkerSideError(int32_t code) {
  const auto c = static_cast<absl::StatusCode>(code);
  return c == absl::StatusCode::kUnavailable || c == absl::StatusCode::kResourceExhausted;
}
}  // namespace

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
    : cfg_(cfg), workers_(std::move(workers)), opts_(opts), owners_(cfg.n_routed_experts), group_(workers_.size()) {
  std::vector<ExpertHealth::Probe> probes;
  std::vector<std::string> names;
  for (size_t w = 0; w < workers_.size(); ++w) {
    std::sort(workers_[w].experts.begin(), workers_[w].experts.end());
    for (int32_t e : workers_[w].experts) {
      if (e >= 0 && e < cfg.n_routed_experts) owners_[e].push_back(static_cast<int32_t>(w));
    }
    // Replicas (identical expert sets) share a group; a group sits in the sum order at its
    // first worker's place, so whichever replica answers, a token's sum is the same.
    group_[w] = w;
    for (size_t v = 0; v < w; ++v) {
      if (workers_[v].experts == workers_[w].experts) {
        group_[w] = group_[v];
        break;
      }
    }
    probes.push_back(workers_[w].probe);
    names.push_back(workers_[w].channel->name());
  }
  members_.resize(workers_.size());
  for (size_t w = 0; w < workers_.size(); ++w) members_[group_[w]].push_back(w);
  health_ = std::make_unique<ExpertHealth>(std::move(probes), std::move(names), opts_.probe_interval,
                                           std::max(opts_.probe_interval, std::chrono::milliseconds(1000)));
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
  std::vector<bool> reset(workers_.size(), false);
  reset[worker] = true;
  for (const Pending& p : pending_) {
    if (!p.result && p.at >= 0) reset[static_cast<size_t>(p.at)] = true;
  }
  for (size_t w = 0; w < workers_.size(); ++w) {
    if (reset[w]) workers_[w].channel->Reset();
  }
  pending_.clear();
  return absl::Status(cause.code() == absl::StatusCode::kDeadlineExceeded ? cause.code() : absl::StatusCode::kUnavailable,
                      StrCat(Describe(worker), " failed during MoE layer ", layer_, ": ", cause.message()));
}

void ExpertDispatcher::WorkerFailed(size_t w, const Status& cause) {
  health_->MarkDown(w, cause);
  up_[w] = false;
  workers_[w].channel->Reset();  // its results in flight are gone with the connection
  const auto now = std::chrono::steady_clock::now();
  for (Pending& p : pending_) {
    if (p.result || p.at != static_cast<int64_t>(w)) continue;
    p.at = -1;
    if (p.first_failure == std::chrono::steady_clock::time_point()) p.first_failure = now;
  }
}

Status ExpertDispatcher::Dispatch(int64_t layer, const float* x, const RoutingResult& r) {
  started_ = std::chrono::steady_clock::now();
  layer_ = layer;
  tokens_ = r.tokens;
  pending_.clear();
  held_ = false;
  const int64_t H = cfg_.hidden_size, K = r.k, W = static_cast<int64_t>(workers_.size());
  // One view of who is up for the whole exchange: a token's experts of one group then go
  // to one replica. Experts with no live owner keep their owners (Combine waits for one).
  up_ = health_->Snapshot();
  const bool all_up = std::all_of(up_.begin(), up_.end(), [](bool u) { return u; });
  std::vector<std::vector<int32_t>> live(all_up ? 0 : owners_.size());
  // Slot assignment: (token, slot) -> worker; replicas spread by token index.
  std::vector<std::vector<int64_t>> rows(W);            // token rows per worker
  std::vector<std::vector<int32_t>> slot_ids(W);        // flattened [rows, K] per worker (-1 padded)
  std::vector<std::vector<float>> slot_w(W);
  std::vector<int64_t> last_row(W, -1);
  for (int64_t t = 0; t < r.tokens; ++t) {
    for (int64_t k = 0; k < K; ++k) {
      const int32_t e = r.experts[t * K + k];
      if (!all_up && live[e].empty()) {
        for (int32_t w : owners_[e]) {
          if (up_[w]) live[e].push_back(w);
        }
        if (live[e].empty()) live[e] = owners_[e];
      }
      const auto& own = all_up ? owners_[e] : live[e];
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
  for (int64_t w = 0; w < W; ++w) {
    const int64_t n = static_cast<int64_t>(rows[w].size());
    for (int64_t b = 0; b < n; b += per_msg) {
      const int64_t m = std::min(per_msg, n - b);
      Pending p;
      p.seq = next_seq_++;
      p.home = static_cast<size_t>(w);
      expert_pb::ExpertBatch& batch = p.batch;
      batch.set_seq(p.seq);
      batch.set_layer(static_cast<int32_t>(layer));
      batch.set_num_tokens(static_cast<int32_t>(m));
      batch.set_hidden_size(static_cast<int32_t>(H));
      batch.set_dtype(ToProto(opts_.wire_dtype));
      batch.set_slots(static_cast<int32_t>(K));
      std::string* act = batch.mutable_activations();
      act->reserve(static_cast<size_t>(m * H) * esz);
      for (int64_t i = b; i < b + m; ++i) EncodeFloats(x + rows[w][i] * H, H, opts_.wire_dtype, act);
      batch.mutable_expert_ids()->assign(reinterpret_cast<const char*>(slot_ids[w].data() + b * K),
                                         static_cast<size_t>(m * K) * 4);
      batch.mutable_weights()->assign(reinterpret_cast<const char*>(slot_w[w].data() + b * K), static_cast<size_t>(m * K) * 4);
      p.rows.assign(rows[w].begin() + b, rows[w].begin() + b + m);
      p.hosts = members_[group_[w]];  // where else it could go: its replicas (more only on a failover)
      stats_.bytes_sent += batch.ByteSizeLong();
      pending_.push_back(std::move(p));
      Pending& q = pending_.back();
      if (!up_[q.home]) {  // no live owner: Combine places it (or waits)
        q.first_failure = health_->down_since(q.home);
        continue;
      }
      q.sends = 1;
      Status st = workers_[w].channel->Send(q.batch, started_ + opts_.timeout);  // (a failure clears up_[w])
      if (st.ok()) {
        q.at = w;
        q.sent_at = std::chrono::steady_clock::now();
      } else {
        q.first_failure = std::chrono::steady_clock::now();
        WorkerFailed(q.home, st);
      }
    }
  }
  return absl::OkStatus();
}

Status ExpertDispatcher::Place(Pending& p) {
  for (;;) {
    // Which worker failed it last, and why: what the request's error names.
    const size_t blamed = p.home;
    const Status cause = health_->last_failure(blamed).ok() ? Internal("dispatch", "worker marked down")
                                                              : health_->last_failure(blamed);
    if (p.sends >= kMaxSendsPerMessage) return Fail(blamed, cause);
    int64_t target = health_->up(p.home) ? static_cast<int64_t>(p.home) : -1;
    for (size_t h : p.hosts) {
      if (target < 0 && health_->up(h)) target = static_cast<int64_t>(h);
    }
    if (target < 0 && !p.all_hosts) {
      FindAllHosts(p);  // no replica is up: any worker hosting all of its experts will do
      continue;
    }
    if (target < 0) {
      // Nobody hosts these experts right now: hold the exchange (the batch's KV stays) for
      // a restart, up to the grace period counted from when the worker went down.
      const auto grace_end = p.first_failure + opts_.restart_grace;
      if (opts_.restart_grace.count() <= 0 || std::chrono::steady_clock::now() >= grace_end) return Fail(blamed, cause);
      held_ = true;
      target = health_->WaitUp(p.hosts, grace_end);
      if (target < 0) return Fail(blamed, health_->last_failure(blamed).ok() ? cause : health_->last_failure(blamed));
    }
    ++p.sends;
    const auto now = std::chrono::steady_clock::now();
    Status st = workers_[target].channel->Send(p.batch, now + opts_.timeout);
    if (st.ok()) {
      p.at = target;
      p.sent_at = now;
      up_[target] = true;  // it may have come back during this exchange
      if (target != static_cast<int64_t>(p.home)) ++stats_.failovers;
      return absl::OkStatus();
    }
    if (p.first_failure == std::chrono::steady_clock::time_point()) p.first_failure = now;
    WorkerFailed(static_cast<size_t>(target), st);
  }
}

void ExpertDispatcher::FindAllHosts(Pending& p) const {
  std::vector<int32_t> ids(p.batch.expert_ids().size() / sizeof(int32_t));
  std::memcpy(ids.data(), p.batch.expert_ids().data(), ids.size() * sizeof(int32_t));
  for (size_t v = 0; v < workers_.size(); ++v) {
    if (group_[v] == group_[p.home]) continue;  // already there
    const auto& hosted = workers_[v].experts;
    if (std::all_of(ids.begin(), ids.end(), [&](int32_t e) { return e < 0 || std::binary_search(hosted.begin(), hosted.end(), e); })) {
      p.hosts.push_back(v);
    }
  }
  p.all_hosts = true;
}

Status ExpertDispatcher::Collect(size_t w) {
  // Wait for the earliest limit among this worker's messages: failover_after where another
  // live worker could take the message, the exchange timeout where none could.
  Deadline until = Deadline::max();
  bool any_alternative = false;
  for (const Pending& p : pending_) {
    if (p.result || p.at != static_cast<int64_t>(w)) continue;
    bool alt = false;
    for (size_t h : p.hosts) alt |= h != w && up_[h];
    any_alternative |= alt;
    until = std::min(until, p.sent_at + (alt ? std::min(opts_.failover_after, opts_.timeout) : opts_.timeout));
  }
  const bool can_wait = any_alternative || opts_.restart_grace.count() > 0;
  auto r = workers_[w].channel->Receive(until);
  if (!r.ok()) {
    if (!can_wait) return Fail(w, r.status());
    WorkerFailed(w, r.status());
    return absl::OkStatus();
  }
  if (r->error_code() != 0) {
    const Status cause(static_cast<absl::StatusCode>(r->error_code()), r->error_message());
    if (!WorkerSideError(r->error_code()) || !can_wait) return Fail(w, cause);
    WorkerFailed(w, cause);
    return absl::OkStatus();
  }
  for (Pending& p : pending_) {
    if (p.result || p.at != static_cast<int64_t>(w) || p.seq != r->seq()) continue;
    const int64_t m = static_cast<int64_t>(p.rows.size());
    const size_t esz = r->dtype() == expert_pb::WIRE_F32 ? 4 : 2;
    if (r->num_tokens() != m || r->partial_sums().size() != static_cast<size_t>(m * cfg_.hidden_size) * esz) {
      return Fail(w, absl::DataLossError(StrCat("malformed result for seq ", p.seq)));
    }
    stats_.bytes_received += r->ByteSizeLong();
    p.result = std::move(*r);
    break;
  }
  return absl::OkStatus();  // a result of no message here (an older exchange's) is dropped
}

Status ExpertDispatcher::Combine(float* out) {
  for (;;) {
    int64_t next = -1;  // a worker with a message in flight
    for (Pending& p : pending_) {
      if (p.result) continue;
      if (p.at < 0) DSV3_RETURN_IF_ERROR(Place(p));
      if (next < 0) next = p.at;
    }
    if (next < 0) break;
    DSV3_RETURN_IF_ERROR(Collect(static_cast<size_t>(next)));
  }
  const int64_t H = cfg_.hidden_size;
  std::fill_n(out, tokens_ * H, 0.0f);
  // Sum in placement-group order (messages of a group in dispatch order).
  std::vector<size_t> order(pending_.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return group_[pending_[a].home] < group_[pending_[b].home]; });
  std::vector<float> partial;
  for (size_t i : order) {
    const Pending& p = pending_[i];
    const int64_t m = static_cast<int64_t>(p.rows.size());
    partial.resize(static_cast<size_t>(m * H));
    DecodeFloats(p.result->partial_sums(), m * H, p.result->dtype(), partial.data());
    for (int64_t r = 0; r < m; ++r) {
      float* o = out + p.rows[r] * H;
      const float* s = partial.data() + r * H;
      for (int64_t d = 0; d < H; ++d) o[d] += s[d];
    }
  }
  pending_.clear();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  ++stats_.exchanges;
  if (held_) ++stats_.held_exchanges;
  stats_.seconds += secs;
  stats_.last_seconds = secs;
  if (layer_ >= 0 && layer_ < static_cast<int64_t>(stats_.exchanges_per_layer.size())) {
    ++stats_.exchanges_per_layer[layer_];
    stats_.seconds_per_layer[layer_] += secs;
  }
  return absl::OkStatus();
}

}  // namespace dsv3

