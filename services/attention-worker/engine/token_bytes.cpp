#include "services/attention-worker/engine/token_bytes.h"

#include "common/tokenizer/bpe_tokenizer.h"

namespace dsv3 {

StatusOr<std::shared_ptr<const TokenBytes>> LoadTokenBytes(const std::string& tokenizer_dir, int64_t vocab_size,
                                                           int64_t eos_token_id) {
  if (tokenizer_dir.empty()) return absl::FailedPreconditionError("no tokenizer directory configured");
  DSV3_ASSIGN_OR_RETURN(auto tok, BpeTokenizer::FromDirectory(tokenizer_dir));
  auto out = std::make_shared<TokenBytes>();
  out->bytes.resize(static_cast<size_t>(vocab_size));
  out->eos_token_id = eos_token_id;
  int64_t usable = 0;
  for (int64_t id = 0; id < vocab_size && id < static_cast<int64_t>(tok->id_space()); ++id) {
    auto piece = tok->GetPiece(static_cast<int32_t>(id));
    if (!piece.ok() || piece->added || piece->special) continue;
    out->bytes[static_cast<size_t>(id)] = std::string(piece->bytes);
    usable += !piece->bytes.empty();
  }
  if (usable == 0) return InvalidArgument("tokenizer", StrCat(tokenizer_dir, ": no vocabulary entries"));
  IndexForJson(out.get());
  return std::shared_ptr<const TokenBytes>(std::move(out));
}

}  // namespace dsv3
