#include "common/model/transformer.h"

#include <algorithm>

namespace dsv3 {

Transformer::Transformer(const ModelConfig& cfg, const ModelWeights& weights, kernels::Backend& backend,
                         RoutedExpertExecutor* experts)
    : cfg_(cfg), weights_(weights), backend_(backend), experts_(experts), attention_(cfg, backend) {
  if (experts_ == nullptr) {
    local_experts_ = std::make_unique<LocalExpertExecutor>(cfg, weights, backend);
    experts_ = local_experts_.get();
  }
}

void Transformer::Ffn(int64_t layer, const float* xn, int64_t T, float* out, const ForwardObserver* obs, Status* st) {
  const LayerWeights& lw = weights_.layers[layer];
  const int64_t hidden = cfg_.hidden_size;
  if (lw.dense) {
    RunMlp(backend_, *lw.dense, xn, T, out);
    return;
  }
  const MoeWeights& moe = *lw.moe;
  std::vector<float> logits(static_cast<size_t>(T * cfg_.n_routed_experts));
  backend_.Linear(xn, T, moe.gate, logits.data());
  RoutingResult routing;
  RouteTokens(cfg_, logits.data(), moe.gate_bias, T, &routing);
  if (obs && obs->on_routing) obs->on_routing(layer, routing);
  *st = experts_->Dispatch(layer, xn, routing);
  if (!st->ok()) return;
  // The shared expert runs while remote experts work; y + z as the reference adds them.
  std::vector<float> z;
  if (moe.shared) {
    z.resize(static_cast<size_t>(T * hidden));
    RunMlp(backend_, *moe.shared, xn, T, z.data());
  }
  *st = experts_->Combine(out);
  if (!st->ok()) return;
  for (size_t i = 0; i < z.size(); ++i) out[i] += z[i];
}

Status Transformer::Forward(const std::vector<SequenceInput>& seqs, std::vector<float>* logits, bool all_logits,
                            const ForwardObserver* obs) {
  const int64_t hidden = cfg_.hidden_size, V = cfg_.vocab_size;
  int64_t T = 0;
  for (const auto& s : seqs) {
    if (s.kv == nullptr || s.len <= 0) return InvalidArgument("model", "empty sequence slice");
    if (s.start_pos != s.kv->length()) {
      return InvalidArgument("model", StrCat("slice starts at ", s.start_pos, " but its cache holds ",
                                                   s.kv->length(), " positions"));
    }
    if (s.start_pos + s.len > cfg_.max_position_embeddings) {
      return InvalidArgument("model", StrCat("sequence length ", s.start_pos + s.len,
                                                   " exceeds max_position_embeddings ", cfg_.max_position_embeddings));
    }
    for (int64_t i = 0; i < s.len; ++i) {
      if (s.tokens[i] < 0 || s.tokens[i] >= V) {
        return InvalidArgument("model", StrCat("token id ", s.tokens[i], " outside the vocabulary [0, ", V, ")"));
      }
    }
    T += s.len;
  }
  if (T == 0) return InvalidArgument("model", "empty batch");

  std::vector<int64_t> ids(static_cast<size_t>(T)), pos(static_cast<size_t>(T));
  std::vector<SequenceSlice> slices;
  int64_t row = 0;
  for (const auto& s : seqs) {
    DSV3_RETURN_IF_ERROR(s.kv->Prepare(s.start_pos + s.len));
    for (int64_t i = 0; i < s.len; ++i) {
      ids[row + i] = s.tokens[i];
      pos[row + i] = s.start_pos + i;
    }
    slices.push_back({s.kv, s.start_pos, s.len, row});
    row += s.len;
  }

  std::vector<float> x(static_cast<size_t>(T * hidden)), xn(x.size()), y(x.size());
  backend_.Embedding(weights_.embed, ids.data(), T, x.data());
  if (obs && obs->on_hidden) obs->on_hidden(0, x.data(), T);
  const float eps = static_cast<float>(cfg_.rms_norm_eps);
  for (int64_t l = 0; l < cfg_.num_hidden_layers; ++l) {
    const LayerWeights& lw = weights_.layers[l];
    backend_.RmsNorm(x.data(), lw.attn_norm, T, hidden, eps, xn.data());
    attention_.Forward(lw.attn, l, xn.data(), T, pos.data(), slices, y.data());
    for (int64_t i = 0; i < T * hidden; ++i) x[i] += y[i];
    backend_.RmsNorm(x.data(), lw.ffn_norm, T, hidden, eps, xn.data());
    Status st;
    Ffn(l, xn.data(), T, y.data(), obs, &st);
    if (!st.ok()) return st;
    for (int64_t i = 0; i < T * hidden; ++i) x[i] += y[i];
    if (obs && obs->on_hidden) obs->on_hidden(l + 1, x.data(), T);
  }
  for (const auto& s : seqs) s.kv->Commit(s.start_pos + s.len);

  // Final norm and head on the rows asked for.
  std::vector<float> picked;
  const float* src = x.data();
  int64_t n_rows = 0;
  for (size_t i = 0; i < slices.size(); ++i) n_rows += all_logits || seqs[i].all_logits ? slices[i].len : 1;
  if (n_rows < T) {
    picked.resize(static_cast<size_t>(n_rows * hidden));
    float* dst = picked.data();
    for (size_t i = 0; i < slices.size(); ++i) {
      const bool all = all_logits || seqs[i].all_logits;
      const int64_t first = all ? slices[i].row : slices[i].row + slices[i].len - 1;
      const int64_t rows = all ? slices[i].len : 1;
      dst = std::copy_n(x.data() + first * hidden, rows * hidden, dst);
    }
    src = picked.data();
  }
  if (obs && obs->on_hidden) {
    // The tap reports the final norm over every row, so dumps cover whole prompts.
    backend_.RmsNorm(x.data(), weights_.final_norm, T, hidden, eps, xn.data());
    obs->on_hidden(cfg_.num_hidden_layers + 1, xn.data(), T);
  }
  std::vector<float> normed(static_cast<size_t>(n_rows * hidden));
  backend_.RmsNorm(src, weights_.final_norm, n_rows, hidden, eps, normed.data());
  logits->resize(static_cast<size_t>(n_rows * V));
  backend_.Linear(normed.data(), n_rows, weights_.lm_head, logits->data());
  return absl::OkStatus();
}

}  // namespace dsv3
