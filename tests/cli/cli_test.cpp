// The binary's contract (ARCHITECTURE.md): --help and --version succeed; unknown commands and flags
// fail with a non-zero exit naming them; config errors name file, key and value.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <string>

namespace {
struct Invocation {
  int exit_code;
  std::string output;  // stdout and stderr together
};

Invocation lvrl(const std::string& args) {
  std::string command = std::string(LVRL_BINARY) + " " + args + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  EXPECT_NE(pipe, nullptr);
  std::string output;
  std::array<char, 4096> buffer;
  while (size_t n = fread(buffer.data(), 1, buffer.size(), pipe)) output.append(buffer.data(), n);
  int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

std::string temp_file(const std::string& name, const std::string& text) {
  std::string path = ::testing::TempDir() + name;
  std::ofstream(path) << text;
  return path;
}

TEST(Cli, HelpListsRegisteredCommands) {
  Invocation run = lvrl("--help");
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("config"), std::string::npos) << run.output;
  Invocation group = lvrl("config --help");
  EXPECT_EQ(group.exit_code, 0);
  EXPECT_NE(group.output.find("show"), std::string::npos) << group.output;
  EXPECT_NE(group.output.find("keys"), std::string::npos) << group.output;
}

TEST(Cli, Version) {
  Invocation run = lvrl("--version");
  EXPECT_EQ(run.exit_code, 0);
  EXPECT_EQ(run.output, std::string("lvrl ") + LVRL_VERSION + "\n");
}

TEST(Cli, UnknownCommandsAndFlagsFailNamingThem) {
  Invocation top = lvrl("frobnicate");
  EXPECT_NE(top.exit_code, 0);
  EXPECT_NE(top.output.find("'frobnicate'"), std::string::npos) << top.output;
  Invocation nested = lvrl("config frobnicate");
  EXPECT_NE(nested.exit_code, 0);
  EXPECT_NE(nested.output.find("'frobnicate' for 'lvrl config'"), std::string::npos) << nested.output;
  Invocation flag = lvrl("config show --frobnicate");
  EXPECT_NE(flag.exit_code, 0);
  EXPECT_NE(flag.output.find("--frobnicate"), std::string::npos) << flag.output;
  Invocation none = lvrl("");
  EXPECT_NE(none.exit_code, 0);
}

TEST(Cli, ConfigShowResolvesFileAndOverrides) {
  std::string path = temp_file("cli_show.yaml", "data:\n  max_samples: 5\nrun:\n  seed: 9\n");
  Invocation run = lvrl("config show --config " + path + " run.seed=11");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("max_samples: 5"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("seed: 11"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("level: \"info\""), std::string::npos) << run.output;  // a default
}

TEST(Cli, ConfigErrorsNameFileKeyAndValue) {
  std::string path = temp_file("cli_bad.yaml", "run:\n  sead: 3\n");
  Invocation unknown = lvrl("config show --config " + path);
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.output.find(path + ":2: 'run.sead'"), std::string::npos) << unknown.output;
  EXPECT_NE(unknown.output.find("did you mean 'run.seed'"), std::string::npos) << unknown.output;
  Invocation section = lvrl("config show --config " + temp_file("cli_section.yaml", "rollot:\n  group: 8\n"));
  EXPECT_EQ(section.exit_code, 2);
  EXPECT_NE(section.output.find("'rollot': no config section of this name has a schema"), std::string::npos)
      << section.output;
  EXPECT_NE(section.output.find("known sections are: "), std::string::npos) << section.output;
  EXPECT_NE(section.output.find(", run"), std::string::npos) << section.output;  // one the cli binary links
  Invocation bad_value = lvrl("config show run.seed=-1");
  EXPECT_EQ(bad_value.exit_code, 2);
  EXPECT_NE(bad_value.output.find("'run.seed' = '-1'"), std::string::npos) << bad_value.output;
  Invocation missing = lvrl("config show --config /nonexistent.yaml");
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.output.find("/nonexistent.yaml"), std::string::npos) << missing.output;
}
}  // namespace
