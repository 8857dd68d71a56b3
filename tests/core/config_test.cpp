// Config: defaults, YAML file, overrides, and every kind of bad input naming key, value and line.
#include "core/config.h"

#include <gtest/gtest.h>

#include "core/error.h"
#include "tests/support/expect_error.h"

namespace {
using lvrl::Config;
using lvrl::ConfigKey;
using lvrl::ConfigSchema;
using lvrl::InputError;

ConfigSchema test_schema() {
  ConfigSchema schema;
  schema.add({"data",
              "test data",
              {
                  ConfigKey::string("path", "", "jsonl"),
                  ConfigKey::string("video_dir", "videos", "dir"),
                  ConfigKey::integer("max_frames", 64, "frames").range(1, 4096),
                  ConfigKey::number("fps", 2.0, "fps").range(0.01, 60),
                  ConfigKey::boolean("shuffle", true, "shuffle"),
                  ConfigKey::string("accuracy", "exact", "mode").choices({"exact", "keyframe"}),
                  ConfigKey::int_list("sizes", {1, 2}, "sizes").range(0, 10),
                  ConfigKey::number_list("weights", {0.9, 0.1}, "weights"),
                  ConfigKey::string_list("tags", {}, "tags"),
              }});
  schema.add({"model.vision", "nested section", {ConfigKey::integer("depth", 32, "blocks").range(1, 128)}});
  return schema;
}

using lvrl::test::expect_input_error;

TEST(Config, DefaultsWhenNothingGiven) {
  ConfigSchema schema = test_schema();
  Config config = Config::parse("", "empty.yaml", {}, schema);
  EXPECT_EQ(config.get<int64_t>("data.max_frames"), 64);
  EXPECT_DOUBLE_EQ(config.get<double>("data.fps"), 2.0);
  EXPECT_TRUE(config.get<bool>("data.shuffle"));
  EXPECT_EQ(config.get<std::string>("data.video_dir"), "videos");
  EXPECT_EQ(config.get<std::vector<int64_t>>("data.sizes"), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(config.origin("data.fps"), "default");
}

TEST(Config, FileThenOverridesInOrder) {
  ConfigSchema schema = test_schema();
  std::string yaml = "data:\n  max_frames: 128\n  fps: 1\n  tags: [a, b]\nmodel:\n  vision:\n    depth: 8\n";
  Config config = Config::parse(yaml, "run.yaml",
                                {"data.max_frames=256", "data.shuffle=false", "data.max_frames=512",
                                 "data.sizes=[3, 4, 5]", "data.weights=0.5,0.25", "data.path=a=b.jsonl"},
                                schema);
  EXPECT_EQ(config.get<int64_t>("data.max_frames"), 512);  // last override wins
  EXPECT_DOUBLE_EQ(config.get<double>("data.fps"), 1.0);   // an integer is a valid float
  EXPECT_FALSE(config.get<bool>("data.shuffle"));
  EXPECT_EQ(config.get<int64_t>("model.vision.depth"), 8);
  EXPECT_EQ(config.get<std::vector<std::string>>("data.tags"), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(config.get<std::vector<int64_t>>("data.sizes"), (std::vector<int64_t>{3, 4, 5}));
  EXPECT_EQ(config.get<std::vector<double>>("data.weights"), (std::vector<double>{0.5, 0.25}));
  EXPECT_EQ(config.get<std::string>("data.path"), "a=b.jsonl");  // split at the first '=' only
  EXPECT_EQ(config.origin("data.fps"), "run.yaml:3");
  EXPECT_EQ(config.origin("data.max_frames"), "override");
}

TEST(Config, UnknownKeyNamesClosest) {
  ConfigSchema schema = test_schema();
  InputError in_file =
      expect_input_error([&] { Config::parse("data:\n  vido_dir: x\n", "run.yaml", {}, schema); });
  EXPECT_EQ(in_file.file(), "run.yaml");
  EXPECT_EQ(in_file.line(), 2);
  EXPECT_EQ(in_file.key(), "data.vido_dir");
  EXPECT_NE(std::string(in_file.what()).find("did you mean 'data.video_dir'"), std::string::npos)
      << in_file.what();

  InputError in_override =
      expect_input_error([&] { Config::parse("", "run.yaml", {"model.vision.dept=3"}, schema); });
  EXPECT_EQ(in_override.key(), "model.vision.dept");
  EXPECT_NE(std::string(in_override.what()).find("'model.vision.depth'"), std::string::npos)
      << in_override.what();

  InputError unknown_section =
      expect_input_error([&] { Config::parse("trainer:\n  lr: 1\n", "run.yaml", {}, schema); });
  EXPECT_EQ(unknown_section.key(), "trainer");
}

TEST(Config, SectionWithoutSchemaListsTheKnownOnes) {
  ConfigSchema schema = test_schema();
  InputError top = expect_input_error(
      [&] { Config::parse("data:\n  fps: 1\ntrainer:\n  lr: 1\n", "run.yaml", {}, schema); });
  EXPECT_EQ(top.line(), 3);
  EXPECT_EQ(top.key(), "trainer");
  EXPECT_NE(std::string(top.what())
                .find("no config section of this name has a schema; the known sections are: "
                      "data, model"),
            std::string::npos)
      << top.what();
  InputError nested =
      expect_input_error([&] { Config::parse("model:\n  visoin:\n    depth: 3\n", "run.yaml", {}, schema); });
  EXPECT_EQ(nested.key(), "model.visoin");
  EXPECT_NE(std::string(nested.what()).find("the known sections of 'model' are: model.vision"),
            std::string::npos)
      << nested.what();
}

TEST(Config, WrongTypeOrRangeNamesKeyValueAndExpectation) {
  ConfigSchema schema = test_schema();
  struct Case {
    std::string yaml;
    std::string key;
    std::string value;
    std::string expects;
  };
  std::vector<Case> cases = {
      {"data:\n  max_frames: abc\n", "data.max_frames", "abc", "an integer in [1, 4096]"},
      {"data:\n  max_frames: 1.5\n", "data.max_frames", "1.5", "an integer"},
      {"data:\n  max_frames: 0\n", "data.max_frames", "0", "in [1, 4096]"},
      {"data:\n  max_frames: 99999999999999999999999\n", "data.max_frames", "99999999999999999999999",
       "an integer"},
      {"data:\n  fps: 61\n", "data.fps", "61", "a finite number in [0.01, 60]"},
      {"data:\n  fps: .nan\n", "data.fps", ".nan", "a finite number"},
      {"data:\n  shuffle: maybe\n", "data.shuffle", "maybe", "true or false"},
      {"data:\n  accuracy: fast\n", "data.accuracy", "fast", "one of: exact, keyframe"},
      {"data:\n  sizes: [1, 11]\n", "data.sizes", "11", "an integer in [0, 10]"},
      {"data:\n  sizes: 3\n", "data.sizes", "3", "a list of"},
      {"data:\n  path: [a]\n", "data.path", "[a]", "a string"},
      {"data:\n  max_frames: {a: 1}\n", "data.max_frames", "{a: 1}", "an integer"},
      {"data: 3\n", "data", "3", "a mapping"},
  };
  for (const Case& c : cases) {
    InputError e = expect_input_error([&] { Config::parse(c.yaml, "bad.yaml", {}, schema); });
    std::string message = e.what();
    EXPECT_EQ(e.file(), "bad.yaml") << c.yaml;
    EXPECT_EQ(e.key(), c.key) << c.yaml;
    EXPECT_NE(message.find("'" + c.value + "'"), std::string::npos) << c.yaml << " → " << message;
    EXPECT_NE(message.find(c.expects), std::string::npos) << c.yaml << " → " << message;
  }
  InputError bad_override = expect_input_error([&] { Config::parse("", "x", {"data.fps=fast"}, schema); });
  EXPECT_EQ(bad_override.value(), "fast");
  InputError no_equals = expect_input_error([&] { Config::parse("", "x", {"data.fps"}, schema); });
  EXPECT_NE(std::string(no_equals.what()).find("a.b.c=value"), std::string::npos);
  InputError bad_yaml = expect_input_error([&] { Config::parse("data: [1\n", "broken.yaml", {}, schema); });
  EXPECT_NE(std::string(bad_yaml.what()).find("not valid YAML"), std::string::npos);
}

TEST(Config, ToYamlRoundTrips) {
  ConfigSchema schema = test_schema();
  Config config = Config::parse(
      "", "x",
      {"data.path=has \"quotes\": and colons", "data.fps=0.1", "data.tags=[x y, z]", "model.vision.depth=3"},
      schema);
  Config again = Config::parse(config.to_yaml(), "again", {}, schema);
  for (const auto& [name, key] : schema.keys()) {
    EXPECT_TRUE(config.value_of(name) == again.value_of(name)) << name << "\n" << config.to_yaml();
  }
}

TEST(Config, MissingFileIsNamed) {
  InputError e = expect_input_error([] { Config::load("/nonexistent/run.yaml", {}); });
  EXPECT_EQ(e.file(), "/nonexistent/run.yaml");
}

TEST(Config, GlobalSchemaHoldsCoreSections) {
  const ConfigSchema& schema = ConfigSchema::global();
  ASSERT_NE(schema.find("data.video_dir"), nullptr);
  ASSERT_NE(schema.find("log.level"), nullptr);
  EXPECT_EQ(schema.closest_key("data.vidoe_dir"), "data.video_dir");
}
}  // namespace
