#include <gtest/gtest.h>

#include "learndrop/core/text.h"

namespace ld::core {

TEST(Text, EditDistanceOfKnownPairs) {
  EXPECT_EQ(edit_distance("", ""), 0u);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(edit_distance("treshold", "threshold"), 1u);
  EXPECT_EQ(edit_distance("abc", ""), 3u);
}

TEST(Text, SuggestsTheClosePlausibleKeyOnly) {
  std::vector<std::string> keys = {"threshold", "patience", "window", "warmup"};
  EXPECT_EQ(closest_match("treshold", keys), "threshold");
  EXPECT_EQ(closest_match("windw", keys), "window");
  EXPECT_EQ(closest_match("learning_rate", keys), "");
  EXPECT_EQ(did_you_mean("patiense", keys), "; did you mean 'patience'?");
}

TEST(Text, FormatsUnits) {
  EXPECT_EQ(format_flops(1.5e9), "1.50 GFLOP");
  EXPECT_EQ(format_flops(12), "12 FLOP");
  EXPECT_EQ(format_bytes(1024.0 * 1024.0 * 3), "3.00 MiB");
  EXPECT_EQ(format_duration(3725), "1:02:05");
  EXPECT_EQ(format_duration(65), "1:05");
}

TEST(Text, HashIsStableAndSensitive) {
  EXPECT_EQ(fnv1a_hex(""), "cbf29ce484222325");  // the FNV-1a offset basis
  EXPECT_NE(fnv1a_hex("a: 1"), fnv1a_hex("a: 2"));
}

TEST(Text, FirstLineDropsWhatFollowsTheFirstNewline) {
  EXPECT_EQ(first_line("Connection reset by peer\nException raised from ...\nframe #0"), "Connection reset by peer");
  EXPECT_EQ(first_line("one line"), "one line");
  EXPECT_EQ(first_line(""), "");
  EXPECT_EQ(first_line("\nsecond"), "");
}

}  // namespace ld::core
