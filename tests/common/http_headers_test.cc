// Tests for the response-header parsers: each must take what a server sends
// literally and answer std::nullopt for anything it cannot read exactly.
#include "common/http/headers.h"

#include <optional>
#include <string>

#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mm::http {
namespace {

using ::testing::Eq;
using ::testing::Optional;

TEST(ContentDispositionFileNameTest, QuotedAndTokenForms) {
  EXPECT_THAT(ContentDispositionFileName("attachment; filename=\"model.bin\""),
              Optional(Eq("model.bin")));
  EXPECT_THAT(ContentDispositionFileName("attachment; filename=model.bin"),
              Optional(Eq("model.bin")));
  EXPECT_THAT(
      ContentDispositionFileName("attachment;filename=model.bin;size=10"),
      Optional(Eq("model.bin")));
  // Parameter names are case-insensitive; the spaces around '=' are not
  // part of the value.
  EXPECT_THAT(ContentDispositionFileName("inline; FileName = \"a b.bin\" "),
              Optional(Eq("a b.bin")));
}

TEST(ContentDispositionFileNameTest, ExtendedUtf8IsDecodedAndPreferred) {
  const std::string expected = "na\xc3\xafve file.bin";  // "naïve file.bin"
  EXPECT_THAT(ContentDispositionFileName(
                  "attachment; filename*=UTF-8''na%C3%AFve%20file.bin"),
              Optional(Eq(expected)));
  // Preferred over the plain form whichever comes first.
  EXPECT_THAT(
      ContentDispositionFileName("attachment; filename=\"fallback.bin\"; "
                                 "filename*=utf-8''na%c3%afve%20file.bin"),
      Optional(Eq(expected)));
  EXPECT_THAT(ContentDispositionFileName(
                  "attachment; filename*=UTF-8'en'na%C3%AFve%20file.bin; "
                  "filename=\"fallback.bin\""),
              Optional(Eq(expected)));
}

TEST(ContentDispositionFileNameTest, ExtendedLatin1IsConvertedToUtf8) {
  EXPECT_THAT(ContentDispositionFileName(
                  "attachment; filename*=ISO-8859-1'fr'caf%E9.bin"),
              Optional(Eq("caf\xc3\xa9.bin")));  // "café.bin"
}

TEST(ContentDispositionFileNameTest, BadExtendedFormFallsBackToPlain) {
  // Bad percent-encoding, missing quotes and unknown charsets are ignored.
  for (const char* value :
       {"attachment; filename*=UTF-8''bad%zz.bin; filename=plain.bin",
        "attachment; filename*=UTF-8''cut%4; filename=plain.bin",
        "attachment; filename*=no-quotes.bin; filename=plain.bin",
        "attachment; filename*=KOI8-R''x.bin; filename=plain.bin"}) {
    EXPECT_THAT(ContentDispositionFileName(value), Optional(Eq("plain.bin")))
        << value;
  }
}

TEST(ContentDispositionFileNameTest, QuotedSemicolonsAndEscapes) {
  EXPECT_THAT(
      ContentDispositionFileName("attachment; filename=\"a;b.bin\"; size=3"),
      Optional(Eq("a;b.bin")));
  EXPECT_THAT(
      ContentDispositionFileName(R"(attachment; filename="say \"hi\".bin")"),
      Optional(Eq("say \"hi\".bin")));
  EXPECT_THAT(
      ContentDispositionFileName(R"(attachment; filename="back\\slash.bin")"),
      Optional(Eq("back\\slash.bin")));
}

TEST(ContentDispositionFileNameTest, MalformedOrMissingIsNullopt) {
  for (const char* value : {
           "attachment; filename=\"unterminated.bin",
           "attachment; filename=\"\"",
           "attachment; filename=",
           "attachment; filename*=UTF-8''",
           "attachment; filename*=UTF-8''bad%zz.bin",
           "attachment",
           "inline",
           "",
           "attachment; name=\"field\"",
           "filename=\"first-token-is-the-type.bin\"",
       }) {
    EXPECT_EQ(ContentDispositionFileName(value), std::nullopt) << value;
  }
}

TEST(ContentDispositionFileNameTest, HostileNamesAreReturnedAsSent) {
  // Judging the name is the caller's job (ValidateFileName); the parser
  // must neither drop nor "fix" it, or the caller could not refuse it.
  EXPECT_THAT(
      ContentDispositionFileName("attachment; filename=\"../../etc/passwd\""),
      Optional(Eq("../../etc/passwd")));
  EXPECT_THAT(ContentDispositionFileName(
                  "attachment; filename*=UTF-8''..%2F..%2F.bashrc"),
              Optional(Eq("../../.bashrc")));
  EXPECT_THAT(ContentDispositionFileName("attachment; filename=/etc/shadow"),
              Optional(Eq("/etc/shadow")));
  EXPECT_THAT(
      ContentDispositionFileName("attachment; filename*=UTF-8''a%00b%0A.bin"),
      Optional(Eq(std::string("a\0b\n.bin", 8))));
}

void ExpectRange(std::string_view value, int64_t first, int64_t last,
                 int64_t total) {
  std::optional<ContentRange> range = ParseContentRange(value);
  ASSERT_TRUE(range.has_value()) << value;
  EXPECT_EQ(range->first, first) << value;
  EXPECT_EQ(range->last, last) << value;
  EXPECT_EQ(range->total, total) << value;
}

TEST(ParseContentRangeTest, TheThreeForms) {
  ExpectRange("bytes 0-99/1000", 0, 99, 1000);
  ExpectRange("bytes 900-999/1000", 900, 999, 1000);
  ExpectRange("bytes 0-99/*", 0, 99, -1);
  ExpectRange("bytes */1000", -1, -1, 1000);
  ExpectRange("  bytes 5-5/6  ", 5, 5, 6);
  ExpectRange("bytes 0-0/1", 0, 0, 1);
  ExpectRange("bytes 0-8589934591/8589934592", 0, 8589934591LL, 8589934592LL);
}

TEST(ParseContentRangeTest, MalformedIsNullopt) {
  for (const char* value : {
           "bytes 10-5/100",   // last < first
           "bytes 0-100/100",  // last >= total
           "bytes 99-99/99",   // last >= total
           "0-99/100",         // missing "bytes "
           "items 0-99/100",   // another unit
           "bytes0-99/100",    // no space
           "bytes 0-99",       // no total
           "bytes */*",        // nothing known
           "bytes 5/10",       // no dash
           "bytes -5/10",      // no first
           "bytes 5-/10",      // no last
           "bytes a-b/10",     // not numbers
           "bytes 0-1/-5",     // negative total
           "bytes 0-1/ten",    // total not a number
           "bytes -3-1/10",    // negative first
           "",
       }) {
    EXPECT_EQ(ParseContentRange(value), std::nullopt) << value;
  }
}

// Fixed "now" so HTTP dates are compared against a known instant.
absl::Time Now() {
  return absl::FromCivil(absl::CivilSecond(2024, 1, 1, 0, 0, 0),
                         absl::UTCTimeZone());
}

TEST(ParseRetryAfterTest, DelaySeconds) {
  EXPECT_THAT(ParseRetryAfter("120", Now()), Optional(absl::Seconds(120)));
  EXPECT_THAT(ParseRetryAfter("0", Now()), Optional(absl::ZeroDuration()));
  EXPECT_THAT(ParseRetryAfter(" 7 ", Now()), Optional(absl::Seconds(7)));
}

TEST(ParseRetryAfterTest, HttpDates) {
  EXPECT_THAT(ParseRetryAfter("Mon, 01 Jan 2024 00:01:30 GMT", Now()),
              Optional(absl::Seconds(90)));
  EXPECT_THAT(ParseRetryAfter("Tue, 02 Jan 2024 00:00:00 GMT", Now()),
              Optional(absl::Hours(24)));
  // In the past: retry now, never a negative delay.
  EXPECT_THAT(ParseRetryAfter("Sun, 31 Dec 2023 23:00:00 GMT", Now()),
              Optional(absl::ZeroDuration()));
  EXPECT_THAT(ParseRetryAfter("Thu, 01 Jan 1970 00:00:00 GMT", Now()),
              Optional(absl::ZeroDuration()));
}

TEST(ParseRetryAfterTest, GarbageIsNullopt) {
  for (const char* value :
       {"", "soon", "-5", "1.5", "12 seconds", "Mon, 99 Foo 2024 00:00:00 GMT",
        "2024-01-01T00:00:00Z"}) {
    EXPECT_EQ(ParseRetryAfter(value, Now()), std::nullopt) << value;
  }
}

TEST(HttpErrorTypeTest, UsesTheUppercasedReasonPhrase) {
  EXPECT_EQ(HttpErrorType(404), "HTTPError(NOT FOUND)");
  EXPECT_EQ(HttpErrorType(503), "HTTPError(SERVICE UNAVAILABLE)");
  EXPECT_EQ(HttpErrorType(401), "HTTPError(UNAUTHORIZED)");
  EXPECT_EQ(HttpErrorType(416), "HTTPError(RANGE NOT SATISFIABLE)");
}

TEST(HttpErrorTypeTest, UnknownCodesShowTheNumber) {
  EXPECT_EQ(HttpErrorType(599), "HTTPError(STATUS 599)");
  EXPECT_EQ(HttpErrorType(418), "HTTPError(STATUS 418)");
  EXPECT_EQ(ReasonPhrase(599), "Unknown");
  EXPECT_EQ(ReasonPhrase(404), "Not Found");
  EXPECT_EQ(ReasonPhrase(200), "OK");
}

TEST(MediaTypeTest, LowercasesAndDropsParameters) {
  EXPECT_EQ(MediaType("Text/HTML; charset=utf-8"), "text/html");
  EXPECT_EQ(MediaType("application/octet-stream"), "application/octet-stream");
  EXPECT_EQ(MediaType("  Application/JSON  ;q=1"), "application/json");
  EXPECT_EQ(MediaType(""), "");
  EXPECT_EQ(MediaType(";charset=utf-8"), "");
}

}  // namespace
}  // namespace mm::http
