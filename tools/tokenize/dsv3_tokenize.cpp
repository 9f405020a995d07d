// dsv3-tokenize: command-line access to dsv3's tokenizer and chat template, for people and
// for external checks (its output format is stable).
//
//   dsv3-tokenize --tokenizer DIR --text TEXT | --text-file F     -> [ids...]
//   dsv3-tokenize --tokenizer DIR --decode 1,2,3                   -> "text"
//   dsv3-tokenize --tokenizer DIR --chat-file conversation.json    -> {"rendered":..., "ids":[...]}
//   dsv3-tokenize --tokenizer DIR --jsonl-in F                     -> one JSON result per line
//
// Exit status: 0 ok, 1 bad input or data (message on stderr), 2 bad command line.
#include <charconv>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "common/chat_template/chat_template.h"
#include "common/tokenizer/bpe_tokenizer.h"
#include "nlohmann/json.hpp"

namespace {

constexpr char kUsage[] =
    "usage: dsv3-tokenize --tokenizer DIR (--text TEXT | --text-file F | --decode IDS | --chat-file F |\n"
    "                     --jsonl-in F) [options]\n"
    "  --tokenizer DIR          directory with tokenizer.json (and tokenizer_config.json for chat)\n"
    "  --text TEXT              encode TEXT, print ids as a JSON array\n"
    "  --text-file F            encode the contents of file F\n"
    "  --decode 1,2,3           decode comma-separated ids, print a JSON string\n"
    "  --chat-file F            render the chat template for F (a JSON array of messages, or an object\n"
    "                           {\"messages\": [...], \"add_generation_prompt\": bool, \"tools\": [...],\n"
    "                           \"context\": {...}}), print {\"rendered\": ..., \"ids\": [...]}\n"
    "  --jsonl-in F             batch mode: each line of F is {\"op\": \"encode\"|\"decode\"|\"chat\", ...};\n"
    "                           prints one JSON result (or {\"error\": ...}) per line\n"
    "  --timing                 with --text/--text-file: print encode time and throughput to stderr\n"
    "  --skip-special-tokens    with --decode: drop BOS/EOS/pad/place-holder tokens\n"
    "  --no-parse-special       with --text: added-token strings in the text are plain text\n"
    "  --no-generation-prompt   with --chat-file: add_generation_prompt = false (default true)\n"
    "  --user-special-tokens plain|control\n"
    "                           with --chat-file: how control-token strings inside messages are\n"
    "                           tokenized (default plain; control = Hugging Face reference)\n";

// Output is always valid UTF-8 (decode is lossy, input is validated); `replace` is a guard.
std::string Dump(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream s;
  s << in.rdbuf();
  *out = s.str();
  return !in.bad();
}

dsv3::StatusOr<std::vector<int32_t>> ParseIds(const std::string& text) {
  std::vector<int32_t> ids;
  size_t pos = 0;
  while (pos <= text.size() && !text.empty()) {
    size_t comma = text.find(',', pos);
    if (comma == std::string::npos) comma = text.size();
    std::string item = text.substr(pos, comma - pos);
    while (!item.empty() && item.front() == ' ') item.erase(0, 1);
    while (!item.empty() && item.back() == ' ') item.pop_back();
    int64_t v = 0;
    auto [ptr, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (item.empty() || ec != std::errc() || ptr != item.data() + item.size() || v < INT32_MIN || v > INT32_MAX) {
      return dsv3::InvalidArgument("dsv3-tokenize", "--decode expects comma-separated integers, got '" + item + "'");
    }
    ids.push_back(static_cast<int32_t>(v));
    pos = comma + 1;
  }
  return ids;
}

struct Tools {
  std::unique_ptr<dsv3::BpeTokenizer> tokenizer;
  std::string dir;
  std::unique_ptr<dsv3::ChatTemplate> chat;  // loaded on first use

  dsv3::StatusOr<const dsv3::ChatTemplate*> Chat() {
    if (!chat) {
      DSV3_ASSIGN_OR_RETURN(chat, dsv3::ChatTemplate::FromTokenizerConfigDir(dir));
    }
    return chat.get();
  }
};

dsv3::StatusOr<nlohmann::ordered_json> RunChat(Tools& tools, const nlohmann::ordered_json& request, bool default_generation_prompt,
                                       dsv3::UserSpecialTokens mode) {
  nlohmann::ordered_json messages;
  bool add_generation_prompt = default_generation_prompt;
  const nlohmann::ordered_json* tool_defs = nullptr;
  const nlohmann::ordered_json* context = nullptr;
  std::unique_ptr<dsv3::ChatTemplate> custom;
  const dsv3::ChatTemplate* chat = nullptr;
  if (request.is_array()) {
    messages = request;
  } else if (request.is_object() && request.contains("messages")) {
    messages = request["messages"];
    if (request.contains("add_generation_prompt")) {
      if (!request["add_generation_prompt"].is_boolean()) {
        return dsv3::InvalidArgument("dsv3-tokenize", "add_generation_prompt must be a boolean");
      }
      add_generation_prompt = request["add_generation_prompt"].get<bool>();
    }
    if (request.contains("tools")) tool_defs = &request["tools"];
    if (request.contains("context")) context = &request["context"];
    if (request.contains("user_special_tokens")) {
      const auto& m = request["user_special_tokens"];
      if (m == "control") {
        mode = dsv3::UserSpecialTokens::kControl;
      } else if (m == "plain") {
        mode = dsv3::UserSpecialTokens::kPlainText;
      } else {
        return dsv3::InvalidArgument("dsv3-tokenize", "user_special_tokens must be \"plain\" or \"control\"");
      }
    }
    if (request.contains("template")) {
      // A template given inline (tests of other checkpoints' templates) with this
      // tokenizer_config's bos/eos tokens.
      if (!request["template"].is_string()) return dsv3::InvalidArgument("dsv3-tokenize", "template must be a string");
      DSV3_ASSIGN_OR_RETURN(const dsv3::ChatTemplate* base, tools.Chat());
      DSV3_ASSIGN_OR_RETURN(custom, dsv3::ChatTemplate::FromString(request["template"].get<std::string>(),
                                                                   base->bos_token(), base->eos_token()));
      chat = custom.get();
    }
  } else {
    return dsv3::InvalidArgument("dsv3-tokenize", "a conversation is a JSON array of messages or {\"messages\": [...]}");
  }
  if (chat == nullptr) {
    DSV3_ASSIGN_OR_RETURN(chat, tools.Chat());
  }
  DSV3_ASSIGN_OR_RETURN(dsv3::RenderedPrompt prompt, chat->Render(messages, add_generation_prompt, tool_defs, context));
  DSV3_ASSIGN_OR_RETURN(std::vector<int32_t> ids, dsv3::EncodePrompt(*tools.tokenizer, prompt, mode));
  return nlohmann::ordered_json{{"rendered", prompt.text}, {"ids", ids}};
}

dsv3::StatusOr<nlohmann::ordered_json> RunBatchLine(Tools& tools, const std::string& line) {
  const nlohmann::ordered_json req = nlohmann::ordered_json::parse(line, nullptr, false);
  if (req.is_discarded() || !req.is_object() || !req.contains("op") || !req["op"].is_string()) {
    return dsv3::InvalidArgument("dsv3-tokenize", "each --jsonl-in line must be a JSON object with a string \"op\"");
  }
  const std::string op = req["op"];
  if (op == "encode") {
    if (!req.contains("text") || !req["text"].is_string()) return dsv3::InvalidArgument("dsv3-tokenize", "encode needs \"text\"");
    dsv3::EncodeOptions options;
    if (req.contains("parse_special")) options.parse_special_tokens = req["parse_special"].get<bool>();
    DSV3_ASSIGN_OR_RETURN(auto ids, tools.tokenizer->Encode(req["text"].get<std::string>(), options));
    return nlohmann::ordered_json{{"ids", ids}};
  }
  if (op == "decode") {
    if (!req.contains("ids") || !req["ids"].is_array()) return dsv3::InvalidArgument("dsv3-tokenize", "decode needs \"ids\"");
    std::vector<int32_t> ids;
    for (const auto& id : req["ids"]) {
      if (!id.is_number_integer()) return dsv3::InvalidArgument("dsv3-tokenize", "ids must be integers");
      ids.push_back(id.get<int32_t>());
    }
    DSV3_ASSIGN_OR_RETURN(auto text, tools.tokenizer->Decode(ids, {.skip_special_tokens = req.value("skip_special", false)}));
    return nlohmann::ordered_json{{"text", text}};
  }
  if (op == "chat") return RunChat(tools, req, true, dsv3::UserSpecialTokens::kPlainText);
  return dsv3::InvalidArgument("dsv3-tokenize", "unknown op '" + op + "'");
}

int Fail(const dsv3::Status& status) {
  std::cerr << "dsv3-tokenize: error: " << status.message() << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir, text, text_file, decode, chat_file, jsonl_in, user_special = "plain";
  bool have_text = false, skip_special = false, parse_special = true, generation_prompt = true, timing = false;
  int modes = 0;
  for (int k = 1; k < argc; ++k) {
    const std::string arg = argv[k];
    auto value = [&](std::string* out) {
      if (k + 1 >= argc) {
        std::cerr << "dsv3-tokenize: " << arg << " needs a value\n" << kUsage;
        std::exit(2);
      }
      *out = argv[++k];
    };
    if (arg == "--tokenizer") {
      value(&dir);
    } else if (arg == "--text") {
      value(&text);
      have_text = true;
      ++modes;
    } else if (arg == "--text-file") {
      value(&text_file);
      ++modes;
    } else if (arg == "--decode") {
      value(&decode);
      ++modes;
    } else if (arg == "--chat-file") {
      value(&chat_file);
      ++modes;
    } else if (arg == "--jsonl-in") {
      value(&jsonl_in);
      ++modes;
    } else if (arg == "--timing") {
      timing = true;
    } else if (arg == "--skip-special-tokens") {
      skip_special = true;
    } else if (arg == "--no-parse-special") {
      parse_special = false;
    } else if (arg == "--no-generation-prompt") {
      generation_prompt = false;
    } else if (arg == "--user-special-tokens") {
      value(&user_special);
      if (user_special != "plain" && user_special != "control") {
        std::cerr << "dsv3-tokenize: --user-special-tokens takes plain or control\n";
        return 2;
      }
    } else if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    } else {
      std::cerr << "dsv3-tokenize: unknown argument '" << arg << "'\n" << kUsage;
      return 2;
    }
  }
  if (dir.empty() || modes != 1) {
    std::cerr << "dsv3-tokenize: need --tokenizer and exactly one of --text, --text-file, --decode, --chat-file, --jsonl-in\n"
              << kUsage;
    return 2;
  }

  Tools tools;
  tools.dir = dir;
  auto tokenizer = dsv3::BpeTokenizer::FromDirectory(dir);
  if (!tokenizer.ok()) return Fail(tokenizer.status());
  tools.tokenizer = std::move(*tokenizer);

  if (have_text || !text_file.empty()) {
    if (!text_file.empty() && !ReadFile(text_file, &text)) {
      return Fail(dsv3::NotFound("dsv3-tokenize", "cannot read " + text_file));
    }
    dsv3::EncodeOptions options;
    options.parse_special_tokens = parse_special;
    const auto start = std::chrono::steady_clock::now();
    auto ids = tools.tokenizer->Encode(text, options);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!ids.ok()) return Fail(ids.status());
    if (timing) {
      std::cerr << "{\"bytes\": " << text.size() << ", \"ids\": " << ids->size() << ", \"encode_seconds\": " << seconds
                << ", \"mb_per_s\": " << text.size() / 1e6 / seconds << "}\n";
    }
    std::cout << Dump(nlohmann::ordered_json(*ids)) << "\n";
    return 0;
  }
  if (!decode.empty() || (modes == 1 && chat_file.empty() && jsonl_in.empty())) {
    auto ids = ParseIds(decode);
    if (!ids.ok()) return Fail(ids.status());
    auto out = tools.tokenizer->Decode(*ids, {.skip_special_tokens = skip_special});
    if (!out.ok()) return Fail(out.status());
    std::cout << Dump(nlohmann::ordered_json(*out)) << "\n";
    return 0;
  }
  if (!chat_file.empty()) {
    std::string content;
    if (!ReadFile(chat_file, &content)) return Fail(dsv3::NotFound("dsv3-tokenize", "cannot read " + chat_file));
    const nlohmann::ordered_json request = nlohmann::ordered_json::parse(content, nullptr, false);
    if (request.is_discarded()) return Fail(dsv3::InvalidArgument("dsv3-tokenize", chat_file + " is not valid JSON"));
    auto result = RunChat(tools, request, generation_prompt,
                          user_special == "control" ? dsv3::UserSpecialTokens::kControl : dsv3::UserSpecialTokens::kPlainText);
    if (!result.ok()) return Fail(result.status());
    std::cout << Dump(*result) << "\n";
    return 0;
  }
  // Batch mode: errors are per line so one bad case does not hide the others.
  std::ifstream in(jsonl_in, std::ios::binary);
  if (!in) return Fail(dsv3::NotFound("dsv3-tokenize", "cannot read " + jsonl_in));
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto result = RunBatchLine(tools, line);
    if (result.ok()) {
      std::cout << Dump(*result) << "\n";
    } else {
      std::cout << Dump(nlohmann::ordered_json{{"error", std::string(result.status().message())}}) << "\n";
    }
  }
  return 0;
}
