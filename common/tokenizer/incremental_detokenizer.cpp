#include "common/tokenizer/incremental_detokenizer.h"

#include "common/tokenizer/utf8.h"

namespace dsv3 {

StatusOr<std::string> IncrementalDetokenizer::Push(int32_t id) {
  DSV3_ASSIGN_OR_RETURN(BpeTokenizer::Piece piece, tokenizer_.GetPiece(id));
  std::string out;
  if (piece.added) {
    if (piece.special && options_.skip_special_tokens) return out;
    // An added token ends any pending partial character (Decode() does the same).
    utf8::AppendLossy(pending_, &out, /*final=*/true);
    pending_.clear();
    out.append(piece.bytes);
    return out;
  }
  pending_.append(piece.bytes);
  const size_t consumed = utf8::AppendLossy(pending_, &out, /*final=*/false);
  pending_.erase(0, consumed);
  return out;
}

std::string IncrementalDetokenizer::Finish() {
  std::string out;
  utf8::AppendLossy(pending_, &out, /*final=*/true);
  pending_.clear();
  return out;
}

}  // namespace dsv3
