// The perf ring buffer of a sampling event: an mmap of one metadata page
// plus 2^n data pages. The kernel appends records at data_head (a
// free-running byte counter); the reader consumes up to it and publishes
// data_tail, which lets the kernel reuse the space. When the reader falls
// behind, the kernel drops records and later writes a PERF_RECORD_LOST with
// the number dropped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "arch/result.h"

namespace hwwatch::arch {

// PERF_RECORD_SAMPLE with sample_type IP | TID | TIME | ADDR (the layout
// BuildBreakpointAttr asks for; fields appear in this order).
struct PerfSample {
  uint64_t ip = 0;  // instruction pointer of the access (x86: after it)
  uint32_t pid = 0;
  uint32_t tid = 0;
  uint64_t time = 0;  // perf clock, ns
  uint64_t addr = 0;  // breakpoints: the watched address (bp_addr)
};

// PERF_RECORD_LOST.
struct PerfLost {
  uint64_t id = 0;
  uint64_t lost = 0;  // records the kernel dropped
};

// PERF_RECORD_COMM with PERF_RECORD_MISC_COMM_EXEC: the task exec'd.
struct PerfExec {
  uint32_t pid = 0;
  uint32_t tid = 0;
};

struct PerfRecord {
  enum class Kind { kSample, kLost, kExec, kOther };
  Kind kind = Kind::kOther;
  uint32_t type = 0;  // perf_event_header.type
  PerfSample sample;  // when kSample
  PerfLost lost;      // when kLost
  PerfExec exec;      // when kExec
};

struct ParsedRing {
  std::vector<PerfRecord> records;
  uint64_t new_tail = 0;  // what data_tail becomes
  bool corrupt = false;   // a header was impossible: the rest was skipped
};

// Pure parser. `data` is the data area (its size a power of two), `tail`
// and `head` the free-running counters (head - tail <= size). Records may
// wrap from the end of the area to its start. `sample_type` must be a
// subset of IP | TID | TIME | ADDR; other bits make samples kOther. A
// record reaching past `head` is left unconsumed (new_tail stops before it).
ParsedRing ParsePerfRing(std::span<const uint8_t> data, uint64_t tail, uint64_t head,
                         uint64_t sample_type);

class PerfRingBuffer {
 public:
  // mmap()s 1 + data_pages pages of the event `fd` (data_pages a power of
  // two). The fd must stay open as long as the mapping is used.
  static Result<PerfRingBuffer> Map(int fd, size_t data_pages, uint64_t sample_type);

  PerfRingBuffer(PerfRingBuffer&& other) noexcept;
  PerfRingBuffer& operator=(PerfRingBuffer&& other) noexcept;
  PerfRingBuffer(const PerfRingBuffer&) = delete;
  PerfRingBuffer& operator=(const PerfRingBuffer&) = delete;
  ~PerfRingBuffer();

  size_t data_size() const { return data_size_; }
  // Bytes written but not yet consumed.
  uint64_t Pending() const;

  // Parses every record up to data_head and releases the space.
  ParsedRing Read();

 private:
  PerfRingBuffer(void* base, size_t map_size, size_t data_offset, size_t data_size,
                 uint64_t sample_type)
      : base_(base),
        map_size_(map_size),
        data_offset_(data_offset),
        data_size_(data_size),
        sample_type_(sample_type) {}
  void Unmap();

  void* base_ = nullptr;
  size_t map_size_ = 0;
  size_t data_offset_ = 0;
  size_t data_size_ = 0;
  uint64_t sample_type_ = 0;
};

}  // namespace hwwatch::arch
