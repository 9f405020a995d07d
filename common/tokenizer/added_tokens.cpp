#include "common/tokenizer/added_tokens.h"

namespace dsv3 {

int32_t AddedTokenMatcher::Child(int32_t node, unsigned char b) const {
  for (const auto& [byte, child] : nodes_[node].children) {
    if (byte == b) return child;
  }
  return -1;
}

void AddedTokenMatcher::Add(std::string_view content, size_t index) {
  if (content.empty()) return;
  first_bytes_.set(static_cast<unsigned char>(content[0]));
  int32_t node = 0;
  for (char c : content) {
    const auto b = static_cast<unsigned char>(c);
    int32_t child = Child(node, b);
    if (child < 0) {
      child = static_cast<int32_t>(nodes_.size());
      nodes_.push_back(Node{});
      nodes_[node].children.emplace_back(b, child);
    }
    node = child;
  }
  // Duplicate contents: the first registration keeps the match (stable ids).
  if (nodes_[node].index < 0) nodes_[node].index = static_cast<int64_t>(index);
}

std::optional<AddedTokenMatcher::Match> AddedTokenMatcher::FindNext(std::string_view text, size_t from) const {
  if (empty()) return std::nullopt;
  for (size_t i = from; i < text.size(); ++i) {
    if (!first_bytes_.test(static_cast<unsigned char>(text[i]))) continue;
    int32_t node = 0;
    int64_t best_index = -1;
    size_t best_end = 0;
    for (size_t j = i; j < text.size(); ++j) {
      node = Child(node, static_cast<unsigned char>(text[j]));
      if (node < 0) break;
      if (nodes_[node].index >= 0) {
        best_index = nodes_[node].index;
        best_end = j + 1;
      }
    }
    if (best_index >= 0) return Match{i, best_end, static_cast<size_t>(best_index)};
  }
  return std::nullopt;
}

}  // namespace dsv3
