// sp/plan: hand-computed cases. Volumes are written out from docs/sp.md's closed forms (even
// heads) rather than taken from sp/volume.h, per local token l: Ulysses (U−1)/U·(2d + 2d_kv)·l·eb each
// way; ring (R−1) hops of K and V (2·l·d_kv·eb each) each way plus R hops of fp32 dK/dV in backward;
// with recompute the forward counts twice per step.
#include "sp/plan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"
#include "model/qwen_config.h"
#include "tests/support/run_process.h"

namespace lvrl::sp {
namespace {

// 7B text: 28 layers, d = 3584, 28 query heads, 4 KV heads (d_kv = 512), intermediate 18944.
constexpr int64_t k7bTextParameters = 7615616512;  // 28 layers × 233057792 + norm 3584 + 2 × 544997376

PlanInput seven_b(int64_t frames, int64_t tokens_per_frame, int gpus_per_node, int world_size) {
  PlanInput in;
  in.config = model::QwenConfig::preset("7b");
  in.model_name = "7b";
  in.frames = frames;
  in.tokens_per_frame = tokens_per_frame;
  in.text_tokens = 512;
  in.gpus_per_node = gpus_per_node;
  in.world_size = world_size;
  in.memory_per_gpu_gib = 80;
  return in;
}

std::string all_reasons(const Plan& plan) {
  std::string text;
  for (const std::string& reason : plan.reasons) text += reason + "\n";
  return text;
}

bool mentions(const Plan& plan, const std::string& needle) {
  return all_reasons(plan).find(needle) != std::string::npos;
}

// 30 minutes at 2 fps = 3600 frames; 224×448 frames give (224/28)·(448/28)/2 = 64 tokens per frame.
TEST(Plan, SevenBOnOneNodeTakesTheSmallestSpThatFits) {
  const PlanInput in = seven_b(3600, 64, 8, 8);
  const Plan plan = make_plan(in);
  SCOPED_TRACE(all_reasons(plan));
  EXPECT_EQ(plan.sequence_tokens, 3600 * 64 + 512);
  // SP = 1 needs ~99 GiB (> 72 GiB = 80 less 10%), SP = 2 fits.
  EXPECT_EQ(plan.sp, 2);
  EXPECT_EQ(plan.dp, 4);
  EXPECT_TRUE(plan.fits);
  EXPECT_TRUE(mentions(plan, "SP = 1: needs"));
  EXPECT_EQ(plan.memory_budget_bytes, static_cast<int64_t>(80 * 0.9 * (int64_t{1} << 30)));
  // Ring beats Ulysses at SP = 2 for this GQA model: per local token, Ulysses sends
  // ½·(2·3584 + 2·512)·2 = 8192 B each way, the ring 2·512·2 = 2048 B forward and 2048 + 2·2·512·4 =
  // 10240 B backward.
  EXPECT_EQ(plan.ulysses, 1);
  EXPECT_EQ(plan.ring, 2);
  EXPECT_EQ(plan.mode_name, "zigzag");
  const int64_t l = (3600 * 64 + 512) / 2;  // 230912 is a multiple of 2R = 4: no padding
  EXPECT_EQ(plan.local_tokens, l);
  EXPECT_EQ(plan.comm_forward_bytes_per_layer, 2 * l * 512 * 2);
  EXPECT_EQ(plan.comm_backward_bytes_per_layer, 2 * l * 512 * 2 + 2 * 2 * l * 512 * 4);
  EXPECT_EQ(plan.comm_bytes_per_step, 28 * (2 * 2 * l * 512 * 2 + 2 * 2 * l * 512 * 4 + 2 * l * 512 * 2));
  EXPECT_EQ(plan.inter_node_bytes_per_step, 0);
  // Memory: state sharded over the 8 ranks, two gathered embedding-sized units, video rows, activations
  // with recompute (28 layer inputs + one layer's saved tensors per token).
  EXPECT_EQ(plan.memory.model_state, (k7bTextParameters * 12 + 7) / 8);
  EXPECT_EQ(plan.memory.gathered_weights, 2 * 544997376LL * 2);
  EXPECT_EQ(plan.memory.video_rows, 3600LL * 64 * 3584 * 2);
  EXPECT_EQ(plan.memory.activations, 28 * l * 3584 * 2 + l * (6 * 3584 + 2 * 512 + 3 * 18944) * 2);
  EXPECT_LE(plan.memory.total(), plan.memory_budget_bytes);
  // The Ulysses alternative was allowed and considered, just more bytes.
  ASSERT_EQ(plan.candidates.size(), 2u);
  EXPECT_TRUE(plan.candidates[1].allowed);
  EXPECT_GT(plan.candidates[1].comm_bytes_per_step, plan.comm_bytes_per_step);
}

// A head layout that splits evenly (32 query heads, 8 KV heads, d = 4096) on one node of 8: when memory
// needs SP = 8, pure Ulysses moves the fewest bytes ((7/8)·(2d + 2d_kv) per token each way against the
// ring's growing hops).
TEST(Plan, OneNodeOfEightIsPureUlyssesWhenHeadsSplitEvenly) {
  PlanInput in = seven_b(3600, 128, 8, 8);
  model::TextConfig& text = in.config.text;
  text.hidden_size = 4096;
  text.num_attention_heads = 32;
  text.num_key_value_heads = 8;
  text.intermediate_size = 11008;
  text.num_hidden_layers = 32;
  in.config.vision.out_hidden_size = 4096;
  in.memory_per_gpu_gib = 64;
  const Plan plan = make_plan(in);
  SCOPED_TRACE(all_reasons(plan));
  EXPECT_EQ(plan.sp, 8);
  EXPECT_TRUE(plan.fits);
  EXPECT_TRUE(mentions(plan, "SP = 4: needs"));
  EXPECT_EQ(plan.ulysses, 8);
  EXPECT_EQ(plan.ring, 1);
  EXPECT_EQ(plan.mode_name, "ulysses");
  EXPECT_EQ(plan.mode, SpMode::Ulysses);
  const int64_t n = 3600 * 128 + 512, l = (n + 7) / 8 * 8 / 8;
  EXPECT_EQ(plan.local_tokens, l);
  const int64_t one_way = 7 * (2 * 4096 + 2 * 1024) * l * 2 / 8;
  const int64_t delta = 7 * 32 * l * 4 / 8;  // Δ: one fp32 per query head and token, (U−1)/U of them
  EXPECT_EQ(plan.comm_forward_bytes_per_layer, one_way);
  EXPECT_EQ(plan.comm_backward_bytes_per_layer, one_way + delta);
  EXPECT_EQ(plan.comm_bytes_per_step, 32 * (3 * one_way + delta));
  EXPECT_TRUE(mentions(plan, "pure Ulysses"));
  EXPECT_FALSE(mentions(plan, "replicated"));
  EXPECT_FALSE(mentions(plan, "uneven"));
}

// 28 heads, SP = 16 over two nodes of 8: U = 16 would span nodes, so hybrid with U ≤ 8; U = 4, R = 4 sends
// least (per local token, recompute included: 4×4 71680 B, 2×8 100352 B, 8×2 179200 B on the rank that
// holds 4 replicated KV heads, 1×16 157696 B).
TEST(Plan, TwentyEightHeadsOnSixteenRanksOverTwoNodesIsHybrid) {
  PlanInput in = seven_b(3600, 128, 8, 16);
  in.sp = 16;
  const Plan plan = make_plan(in);
  SCOPED_TRACE(all_reasons(plan));
  EXPECT_EQ(plan.sp, 16);
  EXPECT_EQ(plan.dp, 1);
  EXPECT_LE(plan.ulysses, 8);
  EXPECT_EQ(plan.ulysses * plan.ring, 16);
  EXPECT_EQ(plan.mode_name, "hybrid");
  EXPECT_EQ(plan.ulysses, 4);
  EXPECT_EQ(plan.ring, 4);
  const auto u16 = std::find_if(plan.candidates.begin(), plan.candidates.end(),
                                [](const PlanCandidate& c) { return c.ulysses == 16; });
  ASSERT_NE(u16, plan.candidates.end());
  EXPECT_FALSE(u16->allowed);
  EXPECT_NE(u16->why_not.find("two nodes"), std::string::npos) << u16->why_not;
  // 461312 tokens, a multiple of 2R·U = 32: l = N / 16.
  const int64_t l = (3600 * 128 + 512) / 16;
  EXPECT_EQ(plan.local_tokens, l);
  const int64_t ulysses_one_way = 3 * (2 * 3584 + 2 * 512) * l * 2 / 4;  // 7 query heads, 1 KV head per rank
  const int64_t ring_kv = 3 * 2 * l * 512 * 2;                           // R − 1 = 3 hops of K and V
  const int64_t ring_dkv = 4 * 2 * l * 512 * 4;                          // R = 4 hops of fp32 dK, dV
  EXPECT_EQ(plan.comm_forward_bytes_per_layer, ulysses_one_way + ring_kv);
  EXPECT_EQ(plan.comm_backward_bytes_per_layer, ulysses_one_way + ring_kv + ring_dkv);
  EXPECT_EQ(plan.comm_bytes_per_step,
            28 * (2 * (ulysses_one_way + ring_kv) + ulysses_one_way + ring_kv + ring_dkv));
  // Ring ranks u, u+4, u+8, u+12: the hops 4→8 and 12→0 leave the node; what those ranks send on the
  // ring (the forward twice) crosses it.
  EXPECT_EQ(plan.inter_node_bytes_per_step, 28 * (3 * ring_kv + ring_dkv));
  EXPECT_TRUE(mentions(plan, "zigzag ring of R = 4"));
  EXPECT_TRUE(mentions(plan, "crosses nodes"));
}

// 3B (16 heads, 2 KV heads) at SP = 8 without recompute: pure Ulysses wins and replicates KV heads (each
// rank gets the one its 2 query heads read), so d_kv counts as U·d_h = 1024 in the closed form.
TEST(Plan, FewerKvHeadsThanUlyssesRanksAreReplicatedAndSaid) {
  PlanInput in;
  in.config = model::QwenConfig::preset("3b");
  in.model_name = "3b";
  in.frames = 1800;
  in.tokens_per_frame = 64;
  in.gpus_per_node = 8;
  in.world_size = 8;
  in.sp = 8;
  in.recompute = false;
  const model::TextConfig& text = in.config.text;
  ASSERT_EQ(text.num_attention_heads, 16);
  ASSERT_EQ(text.num_key_value_heads, 2);
  ASSERT_EQ(text.head_dim(), 128);
  const Plan plan = make_plan(in);
  SCOPED_TRACE(all_reasons(plan));
  EXPECT_EQ(plan.ulysses, 8);
  EXPECT_TRUE(mentions(plan, "fewer KV heads than ranks"));
  EXPECT_TRUE(mentions(plan, "8 KV-head copies"));
  const int64_t l = plan.local_tokens;
  EXPECT_EQ(l, (1800 * 64 + 512) / 8);
  const int64_t one_way = 7 * (2 * 2048 + 2 * 8 * 128) * l * 2 / 8;
  const int64_t delta = 7 * 16 * l * 4 / 8;  // Δ: one fp32 per query head and token, (U−1)/U of them
  EXPECT_EQ(plan.comm_forward_bytes_per_layer, one_way);
  EXPECT_EQ(plan.comm_bytes_per_step, text.num_hidden_layers * (2 * one_way + delta));
}

// 7B forced to SP = 8 on one node: 28 heads over 8 ranks are uneven (4/3) and straddle KV groups, which
// makes pure Ulysses dearer than 4 × 2 (per local token with recompute: 8×1 64608 B on its busiest rank,
// 4×2 51200 B).
TEST(Plan, UnevenHeadsMakeHybridCheaperForSevenB) {
  PlanInput in = seven_b(3600, 128, 8, 8);
  in.sp = 8;
  const Plan plan = make_plan(in);
  SCOPED_TRACE(all_reasons(plan));
  EXPECT_EQ(plan.ulysses, 4);
  EXPECT_EQ(plan.ring, 2);
  const auto u8 = std::find_if(plan.candidates.begin(), plan.candidates.end(),
                               [](const PlanCandidate& c) { return c.ulysses == 8; });
  ASSERT_NE(u8, plan.candidates.end());
  EXPECT_TRUE(u8->allowed);
  const int64_t l = plan.local_tokens;
  EXPECT_EQ(u8->comm_bytes_per_step, 28 * (64512 + 24 * 4) * l);  // + Δ: 24 other ranks' query heads, fp32
  EXPECT_EQ(plan.comm_bytes_per_step, 28 * 51200 * l);
}

TEST(Plan, WorldSizeTheSpCannotDivideIsAnErrorNamingIt) {
  PlanInput in = seven_b(3600, 64, 8, 8);
  in.sp = 3;
  try {
    make_plan(in);
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(e.key(), "--sp");
    EXPECT_EQ(e.value(), "3");
    EXPECT_NE(std::string(e.what()).find("--world-size 8"), std::string::npos) << e.what();
  }
  in.sp = 0;
  in.world_size = 12;  // a node and a half
  try {
    make_plan(in);
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(e.key(), "--world-size");
    EXPECT_EQ(e.value(), "12");
  }
}

TEST(Plan, NothingFitsTakesTheLargestSpAndSaysSo) {
  PlanInput in = seven_b(3600, 128, 8, 8);
  in.memory_per_gpu_gib = 16;
  const Plan plan = make_plan(in);
  EXPECT_FALSE(plan.fits);
  EXPECT_EQ(plan.sp, 8);
  EXPECT_TRUE(mentions(plan, "DOES NOT FIT"));
}

TEST(Plan, SmallEnoughNeedsNoSequenceParallelism) {
  PlanInput in = seven_b(64, 64, 8, 8);
  const Plan plan = make_plan(in);
  EXPECT_TRUE(plan.fits);
  EXPECT_EQ(plan.sp, 1);
  EXPECT_EQ(plan.dp, 8);
  EXPECT_EQ(plan.mode_name, "none");
  EXPECT_EQ(plan.comm_bytes_per_step, 0);
}

TEST(PlanCommand, PrintsTheExplanationAndOneJsonLine) {
  const auto run = test::run_lvrl({"sp", "plan", "--preset", "7b", "--frames", "3600", "--tokens-per-frame",
                                   "64", "--gpus-per-node", "8", "--world-size", "8"});
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("plan: SP = 2 (U × R = 1 × 2, zigzag), DP = 4"), std::string::npos) << run.output;
  const size_t line = run.output.rfind("\n{");  // the JSON line is the last one starting with '{'
  ASSERT_NE(line, std::string::npos) << run.output;
  const std::string json_line = run.output.substr(line + 1, run.output.find('\n', line + 1) - line - 1);
  const auto json = nlohmann::json::parse(json_line);
  EXPECT_EQ(json["sp"], 2);
  EXPECT_EQ(json["mode"], "zigzag");
  EXPECT_FALSE(json["reasons"].empty());

  const auto bad = test::run_lvrl({"sp", "plan", "--preset", "7b", "--frames", "3600", "--tokens-per-frame",
                                   "64", "--gpus-per-node", "8", "--world-size", "8", "--sp", "3"});
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("--sp"), std::string::npos) << bad.output;
}

}  // namespace
}  // namespace lvrl::sp
