// The binary's contract (docs/architecture.md): --help and --version succeed; unknown commands and flags
// fail with a non-zero exit naming them; config errors name file, key and value.
#include <gtest/gtest.h>

#include <string>

#include "tests/support/files.h"
#include "tests/support/run_process.h"

namespace {
using lvrl::test::ProcessResult;
using lvrl::test::run_lvrl;

// A file in this process's temporary directory, removed after the test.
class TempFile {
 public:
  TempFile(const std::string& name, const std::string& text) : path_(dir_.file(name)) {
    lvrl::test::write_file(path_, text);
  }
  const std::string& path() const { return path_; }

 private:
  lvrl::TempDir dir_{"lvrl-cli-test"};
  std::string path_;
};

TEST(Cli, HelpListsRegisteredCommands) {
  ProcessResult run = run_lvrl({"--help"});
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("config"), std::string::npos) << run.output;
  ProcessResult group = run_lvrl({"config", "--help"});
  EXPECT_EQ(group.exit_code, 0);
  EXPECT_NE(group.output.find("show"), std::string::npos) << group.output;
  EXPECT_NE(group.output.find("keys"), std::string::npos) << group.output;
}

TEST(Cli, Version) {
  ProcessResult run = run_lvrl({"--version"});
  EXPECT_EQ(run.exit_code, 0);
  EXPECT_EQ(run.output, std::string("lvrl ") + LVRL_VERSION + "\n");
}

TEST(Cli, UnknownCommandsAndFlagsFailNamingThem) {
  ProcessResult top = run_lvrl({"frobnicate"});
  EXPECT_NE(top.exit_code, 0);
  EXPECT_NE(top.output.find("'frobnicate'"), std::string::npos) << top.output;
  ProcessResult nested = run_lvrl({"config", "frobnicate"});
  EXPECT_NE(nested.exit_code, 0);
  EXPECT_NE(nested.output.find("'frobnicate' for 'lvrl config'"), std::string::npos) << nested.output;
  ProcessResult flag = run_lvrl({"config", "show", "--frobnicate"});
  EXPECT_NE(flag.exit_code, 0);
  EXPECT_NE(flag.output.find("--frobnicate"), std::string::npos) << flag.output;
  ProcessResult none = run_lvrl({});
  EXPECT_NE(none.exit_code, 0);
}

TEST(Cli, ConfigShowResolvesFileAndOverrides) {
  const TempFile file("cli_show.yaml", "data:\n  max_samples: 5\nrun:\n  seed: 9\n");
  ProcessResult run = run_lvrl({"config", "show", "--config", file.path(), "run.seed=11"});
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("max_samples: 5"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("seed: 11"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("level: \"info\""), std::string::npos) << run.output;  // a default
}

TEST(Cli, ConfigErrorsNameFileKeyAndValue) {
  const TempFile file("cli_bad.yaml", "run:\n  sead: 3\n");
  const std::string& path = file.path();
  ProcessResult unknown = run_lvrl({"config", "show", "--config", path});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.output.find(path + ":2: 'run.sead'"), std::string::npos) << unknown.output;
  EXPECT_NE(unknown.output.find("did you mean 'run.seed'"), std::string::npos) << unknown.output;
  const TempFile section_file("cli_section.yaml", "rollot:\n  group: 8\n");
  ProcessResult section = run_lvrl({"config", "show", "--config", section_file.path()});
  EXPECT_EQ(section.exit_code, 2);
  EXPECT_NE(section.output.find("'rollot': no config section of this name has a schema"), std::string::npos)
      << section.output;
  EXPECT_NE(section.output.find("known sections are: "), std::string::npos) << section.output;
  EXPECT_NE(section.output.find(", run"), std::string::npos) << section.output;  // one the cli binary links
  ProcessResult bad_value = run_lvrl({"config", "show", "run.seed=-1"});
  EXPECT_EQ(bad_value.exit_code, 2);
  EXPECT_NE(bad_value.output.find("'run.seed' = '-1'"), std::string::npos) << bad_value.output;
  ProcessResult missing = run_lvrl({"config", "show", "--config", "/nonexistent.yaml"});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.output.find("/nonexistent.yaml"), std::string::npos) << missing.output;
}
}  // namespace
