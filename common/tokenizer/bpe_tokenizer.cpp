#include "common/tokenizer/bpe_tokenizer.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "common/tokenizer/utf8.h"
#include "nlohmann/json.hpp"

namespace dsv3 {
namespace {

constexpr std::string_view kSubsystem = "tokenizer";

bool IsWhiteSpace(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

// Offset just past the whitespace run starting at `pos`.
size_t SkipWhiteSpaceForward(std::string_view text, size_t pos) {
  while (pos < text.size()) {
    size_t next = pos;
    if (!IsWhiteSpace(utf8::DecodeAt(text, &next))) break;
    pos = next;
  }
  return pos;
}

// Offset of the start of the whitespace run ending at `end`.
size_t SkipWhiteSpaceBackward(std::string_view text, size_t begin, size_t end) {
  while (end > begin) {
    size_t start = end - 1;
    while (start > begin && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
    size_t probe = start;
    if (!IsWhiteSpace(utf8::DecodeAt(text, &probe))) break;
    end = start;
  }
  return end;
}

StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(kSubsystem, absl::StrCat("cannot open ", path));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return DataLoss(kSubsystem, absl::StrCat("cannot read ", path));
  return buffer.str();
}

Status ParsePostProcessor(const nlohmann::json& config,
                          const absl::flat_hash_map<std::string, int32_t>& added_by_content,
                          std::vector<int32_t>* prefix, std::vector<int32_t>* suffix) {
  if (config.is_null()) return absl::OkStatus();
  const std::string type = config.value("type", "");
  if (type == "ByteLevel") return absl::OkStatus();  // offsets only; ids untouched
  if (type == "Sequence") {
    for (const auto& item : config.at("processors")) {
      DSV3_RETURN_IF_ERROR(ParsePostProcessor(item, added_by_content, prefix, suffix));
    }
    return absl::OkStatus();
  }
  if (type == "TemplateProcessing") {
    bool seen_sequence = false;
    for (const auto& piece : config.at("single")) {
      if (piece.contains("Sequence")) {
        seen_sequence = true;
        continue;
      }
      const std::string name = piece.at("SpecialToken").at("id").get<std::string>();
      const auto& special = config.at("special_tokens").at(name);
      for (const auto& id : special.at("ids")) {
        (seen_sequence ? suffix : prefix)->push_back(id.get<int32_t>());
      }
    }
    return absl::OkStatus();
  }
  return Unimplemented(kSubsystem, absl::StrCat("post_processor type '", type, "'"));
}

}  // namespace

StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::FromDirectory(const std::string& dir,
                                                                   const TokenizerOptions& options) {
  return FromFile(dir + "/tokenizer.json", options);
}

StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::FromFile(const std::string& path,
                                                              const TokenizerOptions& options) {
  DSV3_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  auto tokenizer = FromJsonString(text, options);
  if (!tokenizer.ok()) {
    return absl::Status(tokenizer.status().code(), absl::StrCat(tokenizer.status().message(), " (in ", path, ")"));
  }
  return tokenizer;
}

StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::FromJsonString(std::string_view tokenizer_json,
                                                                     const TokenizerOptions& options) {
  const nlohmann::json root = nlohmann::json::parse(tokenizer_json, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    return InvalidArgument(kSubsystem, "tokenizer.json is not a JSON object");
  }
  auto tok = std::unique_ptr<BpeTokenizer>(new BpeTokenizer());
  tok->options_ = options;
  // nlohmann::json reports type mismatches by throwing; keep that inside the loader.
  try {
    const auto& normalizer = root.value("normalizer", nlohmann::json());
    const bool empty_normalizer =
        normalizer.is_null() ||
        (normalizer.value("type", "") == "Sequence" && normalizer.value("normalizers", nlohmann::json::array()).empty());
    if (!empty_normalizer) {
      return Unimplemented(kSubsystem, absl::StrCat("normalizer ", normalizer.dump()));
    }
    DSV3_ASSIGN_OR_RETURN(tok->model_, BpeModel::FromJson(root.at("model"), tok->alphabet_));
    DSV3_ASSIGN_OR_RETURN(tok->pre_tokenizer_, PreTokenizer::FromJson(root.value("pre_tokenizer", nlohmann::json())));
    const auto& decoder = root.value("decoder", nlohmann::json());
    if (!decoder.is_null() && decoder.value("type", "") != "ByteLevel") {
      return Unimplemented(kSubsystem, absl::StrCat("decoder type '", decoder.value("type", ""), "'"));
    }

    size_t id_space = tok->model_->id_space();
    for (const auto& item : root.value("added_tokens", nlohmann::json::array())) {
      AddedToken token;
      token.id = item.at("id").get<int32_t>();
      token.content = item.at("content").get<std::string>();
      token.special = item.value("special", false);
      token.lstrip = item.value("lstrip", false);
      token.rstrip = item.value("rstrip", false);
      if (item.value("single_word", false)) {
        return Unimplemented(kSubsystem, absl::StrCat("added token '", token.content, "' with single_word=true"));
      }
      if (token.id < 0 || token.id > (1 << 30) || token.content.empty() || !utf8::IsValid(token.content)) {
        return InvalidArgument(kSubsystem, absl::StrCat("malformed added token id ", token.id));
      }
      id_space = std::max(id_space, static_cast<size_t>(token.id) + 1);
      tok->added_.push_back(std::move(token));
    }
    tok->pieces_.resize(id_space);
    tok->added_text_.resize(id_space);
    for (size_t i = 0; i < tok->model_->id_space(); ++i) {
      tok->pieces_[i].valid = tok->model_->id_known(static_cast<int32_t>(i));
    }
    for (size_t i = 0; i < tok->added_.size(); ++i) {
      const AddedToken& t = tok->added_[i];
      tok->pieces_[t.id] = PieceInfo{true, true, t.special};
      tok->added_text_[t.id] = t.content;
      tok->added_matcher_.Add(t.content, i);
      tok->added_by_content_.try_emplace(t.content, t.id);
    }
    DSV3_RETURN_IF_ERROR(ParsePostProcessor(root.value("post_processor", nlohmann::json()), tok->added_by_content_,
                                            &tok->post_prefix_, &tok->post_suffix_));
  } catch (const nlohmann::json::exception& e) {
    return InvalidArgument(kSubsystem, absl::StrCat("malformed tokenizer.json: ", e.what()));
  }
  return tok;
}

Status BpeTokenizer::EncodeOrdinary(std::string_view section, std::vector<int32_t>* ids) const {
  std::vector<std::string_view> pieces;
  DSV3_RETURN_IF_ERROR(pre_tokenizer_->Split(section, &pieces));
  for (std::string_view piece : pieces) model_->Encode(piece, ids);
  return absl::OkStatus();
}

StatusOr<std::vector<int32_t>> BpeTokenizer::Encode(std::string_view text, const EncodeOptions& options) const {
  if (text.size() > options_.max_input_bytes) {
    return InvalidArgument(kSubsystem, absl::StrCat("input of ", text.size(), " bytes exceeds the limit of ",
                                                    options_.max_input_bytes, " bytes"));
  }
  size_t bad = 0;
  if (!utf8::IsValid(text, &bad)) {
    return InvalidArgument(kSubsystem, absl::StrCat("input is not valid UTF-8 (first bad byte at offset ", bad, ")"));
  }
  for (const auto& [begin, end] : options.plain_text_ranges) {
    if (begin > end || end > text.size()) {
      return InvalidArgument(kSubsystem, "plain_text_ranges out of bounds");
    }
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + post_prefix_.size() + post_suffix_.size());
  if (options.add_special_tokens) ids.insert(ids.end(), post_prefix_.begin(), post_prefix_.end());

  // A match may not overlap any plain-text range (those hold untrusted message text).
  auto overlaps_plain = [&](size_t begin, size_t end) {
    for (const auto& [pb, pe] : options.plain_text_ranges) {
      if (begin < pe && pb < end) return true;
    }
    return false;
  };

  size_t section_start = 0;
  size_t search = 0;
  // Start of the text not yet consumed by a previous added token's rstrip.
  while (options.parse_special_tokens && search < text.size()) {
    auto match = added_matcher_.FindNext(text, search);
    if (!match) break;
    if (overlaps_plain(match->begin, match->end)) {
      search = match->begin + 1;
      continue;
    }
    const AddedToken& token = added_[match->index];
    size_t ordinary_end = match->begin;
    if (token.lstrip) ordinary_end = SkipWhiteSpaceBackward(text, section_start, ordinary_end);
    DSV3_RETURN_IF_ERROR(EncodeOrdinary(text.substr(section_start, ordinary_end - section_start), &ids));
    ids.push_back(token.id);
    section_start = match->end;
    if (token.rstrip) section_start = SkipWhiteSpaceForward(text, section_start);
    search = section_start;
  }
  DSV3_RETURN_IF_ERROR(EncodeOrdinary(text.substr(section_start), &ids));
  if (options.add_special_tokens) ids.insert(ids.end(), post_suffix_.begin(), post_suffix_.end());
  return ids;
}

StatusOr<BpeTokenizer::Piece> BpeTokenizer::GetPiece(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= pieces_.size() || !pieces_[id].valid) {
    return InvalidArgument(kSubsystem, absl::StrCat("unknown token id ", id, " (id space is 0..",
                                                    static_cast<int64_t>(pieces_.size()) - 1, ")"));
  }
  const PieceInfo& info = pieces_[id];
  if (info.added) return Piece{added_text_[id], true, info.special};
  return Piece{model_->id_bytes(id), false, false};
}

StatusOr<std::string> BpeTokenizer::Decode(std::span<const int32_t> ids, const DecodeOptions& options) const {
  std::string out;
  std::string pending;  // vocabulary bytes not yet converted (may end mid-character)
  for (int32_t id : ids) {
    DSV3_ASSIGN_OR_RETURN(Piece piece, GetPiece(id));
    if (piece.added) {
      // Skipped tokens vanish entirely: bytes on both sides join, as in the reference.
      if (piece.special && options.skip_special_tokens) continue;
      utf8::AppendLossy(pending, &out, /*final=*/true);
      pending.clear();
      out.append(piece.bytes);
    } else {
      pending.append(piece.bytes);
    }
  }
  utf8::AppendLossy(pending, &out, /*final=*/true);
  return out;
}

std::optional<int32_t> BpeTokenizer::TokenToId(std::string_view text) const {
  auto it = added_by_content_.find(absl::string_view(text.data(), text.size()));
  if (it != added_by_content_.end()) return it->second;
  const int32_t id = model_->Find(text);
  if (id >= 0) return id;
  return std::nullopt;
}

}  // namespace dsv3
