// The ring-buffer parser on synthetic buffers: samples, lost records,
// records wrapping around the end of the data area, and corrupt headers.
#include "arch/perf_ring.h"

#include <gtest/gtest.h>
#include <linux/perf_event.h>

#include <cstring>
#include <vector>

namespace hwwatch::arch {
namespace {

constexpr uint64_t kType = PERF_SAMPLE_IP | PERF_SAMPLE_TID | PERF_SAMPLE_TIME | PERF_SAMPLE_ADDR;

// A data area written the way the kernel does: at free-running positions,
// wrapping modulo its size.
class FakeRing {
 public:
  explicit FakeRing(size_t size, uint64_t start = 0) : data_(size, 0xee), head_(start) {}

  void Put(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) data_[(head_ + i) % data_.size()] = b[i];
    head_ += n;
  }
  void Sample(uint64_t ip, uint32_t pid, uint32_t tid, uint64_t time, uint64_t addr) {
    perf_event_header h{PERF_RECORD_SAMPLE, 0, sizeof(perf_event_header) + 32};
    Put(&h, sizeof h);
    Put(&ip, 8);
    Put(&pid, 4);
    Put(&tid, 4);
    Put(&time, 8);
    Put(&addr, 8);
  }
  void Lost(uint64_t id, uint64_t lost) {
    perf_event_header h{PERF_RECORD_LOST, 0, sizeof(perf_event_header) + 16};
    Put(&h, sizeof h);
    Put(&id, 8);
    Put(&lost, 8);
  }
  void Other(uint32_t type, uint16_t body) {
    perf_event_header h{type, 0, static_cast<uint16_t>(sizeof(perf_event_header) + body)};
    Put(&h, sizeof h);
    std::vector<uint8_t> zeros(body, 0);
    Put(zeros.data(), zeros.size());
  }
  void Comm(uint32_t pid, uint32_t tid, bool exec) {
    perf_event_header h{PERF_RECORD_COMM,
                        static_cast<uint16_t>(exec ? PERF_RECORD_MISC_COMM_EXEC : 0),
                        sizeof(perf_event_header) + 16};
    Put(&h, sizeof h);
    Put(&pid, 4);
    Put(&tid, 4);
    Put("sleep\0\0\0", 8);
  }
  std::span<const uint8_t> data() const { return data_; }
  uint64_t head() const { return head_; }

 private:
  std::vector<uint8_t> data_;
  uint64_t head_;
};

TEST(PerfRingParserTest, ParsesSamplesAndLostRecords) {
  FakeRing ring(256);
  ring.Sample(0x401000, 10, 11, 1000, 0x7ff000);
  ring.Lost(5, 17);
  ring.Other(PERF_RECORD_THROTTLE, 24);
  ring.Sample(0x401004, 10, 12, 2000, 0x7ff008);
  ParsedRing p = ParsePerfRing(ring.data(), 0, ring.head(), kType);
  EXPECT_FALSE(p.corrupt);
  EXPECT_EQ(p.new_tail, ring.head());
  ASSERT_EQ(p.records.size(), 4u);
  EXPECT_EQ(p.records[0].kind, PerfRecord::Kind::kSample);
  EXPECT_EQ(p.records[0].sample.ip, 0x401000u);
  EXPECT_EQ(p.records[0].sample.pid, 10u);
  EXPECT_EQ(p.records[0].sample.tid, 11u);
  EXPECT_EQ(p.records[0].sample.time, 1000u);
  EXPECT_EQ(p.records[0].sample.addr, 0x7ff000u);
  EXPECT_EQ(p.records[1].kind, PerfRecord::Kind::kLost);
  EXPECT_EQ(p.records[1].lost.id, 5u);
  EXPECT_EQ(p.records[1].lost.lost, 17u);
  EXPECT_EQ(p.records[2].kind, PerfRecord::Kind::kOther);
  EXPECT_EQ(p.records[2].type, static_cast<uint32_t>(PERF_RECORD_THROTTLE));
  EXPECT_EQ(p.records[3].sample.tid, 12u);
  EXPECT_EQ(p.records[3].sample.addr, 0x7ff008u);
}

TEST(PerfRingParserTest, ACommRecordOfAnExecIsAnExec) {
  FakeRing ring(128);
  ring.Comm(40, 41, false);  // a rename (prctl): not an exec
  ring.Comm(40, 40, true);
  ParsedRing p = ParsePerfRing(ring.data(), 0, ring.head(), kType);
  ASSERT_EQ(p.records.size(), 2u);
  EXPECT_EQ(p.records[0].kind, PerfRecord::Kind::kOther);
  EXPECT_EQ(p.records[1].kind, PerfRecord::Kind::kExec);
  EXPECT_EQ(p.records[1].exec.pid, 40u);
  EXPECT_EQ(p.records[1].exec.tid, 40u);
}

// Every start position within the area, so records (40 bytes) and headers
// (8 bytes) are split by the wrap at every possible byte.
TEST(PerfRingParserTest, HandlesWrapAroundAtEveryOffset) {
  for (uint64_t start = 0; start < 128; ++start) {
    SCOPED_TRACE(start);
    FakeRing ring(64, 1000 * 64 + start);  // large free-running counters
    const uint64_t tail = ring.head();
    ring.Sample(0xaaaa, 1, 2, 3, 0xbbbb);
    ring.Lost(9, 4);
    ParsedRing p = ParsePerfRing(ring.data(), tail, ring.head(), kType);
    ASSERT_FALSE(p.corrupt);
    ASSERT_EQ(p.records.size(), 2u);
    EXPECT_EQ(p.records[0].sample.ip, 0xaaaau);
    EXPECT_EQ(p.records[0].sample.tid, 2u);
    EXPECT_EQ(p.records[0].sample.addr, 0xbbbbu);
    EXPECT_EQ(p.records[1].lost.lost, 4u);
    EXPECT_EQ(p.new_tail, ring.head());
  }
}

TEST(PerfRingParserTest, LeavesAPartialRecordForLater) {
  FakeRing ring(256);
  ring.Sample(1, 2, 3, 4, 5);
  const uint64_t first_end = ring.head();
  ring.Sample(6, 7, 8, 9, 10);
  // head points into the middle of the second record (the kernel only
  // publishes whole records, but a reader must never run past head).
  ParsedRing p = ParsePerfRing(ring.data(), 0, first_end + 12, kType);
  EXPECT_FALSE(p.corrupt);
  ASSERT_EQ(p.records.size(), 1u);
  EXPECT_EQ(p.new_tail, first_end);
  ParsedRing rest = ParsePerfRing(ring.data(), p.new_tail, ring.head(), kType);
  ASSERT_EQ(rest.records.size(), 1u);
  EXPECT_EQ(rest.records[0].sample.ip, 6u);
}

TEST(PerfRingParserTest, CorruptHeaderSkipsToHead) {
  FakeRing ring(256);
  ring.Sample(1, 2, 3, 4, 5);
  perf_event_header bad{PERF_RECORD_SAMPLE, 0, 4};  // smaller than a header
  ring.Put(&bad, sizeof bad);
  ring.Sample(6, 7, 8, 9, 10);
  ParsedRing p = ParsePerfRing(ring.data(), 0, ring.head(), kType);
  EXPECT_TRUE(p.corrupt);
  EXPECT_EQ(p.records.size(), 1u);
  EXPECT_EQ(p.new_tail, ring.head());
}

TEST(PerfRingParserTest, RefusesImpossibleCounters) {
  FakeRing ring(64);
  EXPECT_TRUE(ParsePerfRing(ring.data(), 10, 5, kType).corrupt);   // head behind tail
  EXPECT_TRUE(ParsePerfRing(ring.data(), 0, 100, kType).corrupt);  // more than the area
  std::vector<uint8_t> odd(48);
  EXPECT_TRUE(ParsePerfRing(odd, 0, 8, kType).corrupt);  // not a power of two
  ParsedRing empty = ParsePerfRing(ring.data(), 7, 7, kType);
  EXPECT_FALSE(empty.corrupt);
  EXPECT_TRUE(empty.records.empty());
  EXPECT_EQ(empty.new_tail, 7u);
}

TEST(PerfRingParserTest, SubsetSampleTypesAndUnknownBits) {
  FakeRing ring(128);
  perf_event_header h{PERF_RECORD_SAMPLE, 0, sizeof(perf_event_header) + 16};
  uint64_t ip = 0x1234, addr = 0x5678;
  ring.Put(&h, sizeof h);
  ring.Put(&ip, 8);
  ring.Put(&addr, 8);
  ParsedRing p = ParsePerfRing(ring.data(), 0, ring.head(), PERF_SAMPLE_IP | PERF_SAMPLE_ADDR);
  ASSERT_EQ(p.records.size(), 1u);
  EXPECT_EQ(p.records[0].kind, PerfRecord::Kind::kSample);
  EXPECT_EQ(p.records[0].sample.ip, 0x1234u);
  EXPECT_EQ(p.records[0].sample.addr, 0x5678u);
  // A layout this parser does not know stays unparsed rather than misread.
  ParsedRing q = ParsePerfRing(ring.data(), 0, ring.head(), PERF_SAMPLE_IP | PERF_SAMPLE_CPU);
  ASSERT_EQ(q.records.size(), 1u);
  EXPECT_EQ(q.records[0].kind, PerfRecord::Kind::kOther);
}

}  // namespace
}  // namespace hwwatch::arch
