// RUN/metrics.jsonl: one line per step, and a resume drops the steps it will train again.
#include "trainer/metrics_log.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "../support/files.h"

namespace lvrl::trainer {
namespace {

TEST(MetricsLog, AppendsOneLinePerStep) {
  TempDir dir("metrics");
  const std::string run = dir.file("run");  // made on open
  {
    MetricsLog log(run, 0);
    log.append({{"step", 1}, {"actor/lr", 1e-6}});
    log.append({{"step", 2}, {"reward/overall", 0.5}});
  }
  EXPECT_EQ(test::read_file(run + "/metrics.jsonl"),
            "{\"actor/lr\":1e-06,\"step\":1}\n{\"reward/overall\":0.5,\"step\":2}\n");
}

TEST(MetricsLog, AResumeDropsTheStepsAfterItsCheckpointAndATornLine) {
  TempDir run("metrics");
  test::write_file(run.file("metrics.jsonl"),
                   "{\"step\":1,\"a\":1}\n{\"step\":2,\"a\":2}\n{\"step\":3,\"a\":3}\n{\"step\":4,\"a\":4}\n{"
                   "\"step\":5,\"a");
  {
    MetricsLog log(run.path(), 2);  // resumed from step-2: steps 3.. run again
    log.append({{"step", 3}, {"a", 30}});
  }
  EXPECT_EQ(test::read_file(run.file("metrics.jsonl")),
            "{\"step\":1,\"a\":1}\n{\"step\":2,\"a\":2}\n{\"a\":30,\"step\":3}\n");
  {
    MetricsLog log(run.path(), 3);  // nothing after step 3: the file stays as it is
    log.append({{"step", 4}, {"a", 40}});
  }
  EXPECT_EQ(test::read_file(run.file("metrics.jsonl")),
            "{\"step\":1,\"a\":1}\n{\"step\":2,\"a\":2}\n{\"a\":30,\"step\":3}\n{\"a\":40,\"step\":4}\n");
}

}  // namespace
}  // namespace lvrl::trainer
