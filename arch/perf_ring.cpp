#include "arch/perf_ring.h"

#include <linux/perf_event.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace hwwatch::arch {
namespace {

constexpr uint64_t kSupported =
    PERF_SAMPLE_IP | PERF_SAMPLE_TID | PERF_SAMPLE_TIME | PERF_SAMPLE_ADDR;

// Copies `n` bytes starting at free-running position `pos`, wrapping.
void CopyOut(std::span<const uint8_t> data, uint64_t pos, void* out, size_t n) {
  if (n == 0) return;
  const size_t size = data.size();
  const size_t off = static_cast<size_t>(pos & (size - 1));
  const size_t first = std::min(n, size - off);
  std::memcpy(out, data.data() + off, first);
  if (first < n) std::memcpy(static_cast<uint8_t*>(out) + first, data.data(), n - first);
}

uint64_t U64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

uint32_t U32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

PerfRecord Decode(const perf_event_header& h, const uint8_t* body, size_t body_size,
                  uint64_t sample_type) {
  PerfRecord r;
  r.type = h.type;
  if (h.type == PERF_RECORD_SAMPLE && (sample_type & ~kSupported) == 0) {
    size_t need = 0;
    for (uint64_t bit : {uint64_t{PERF_SAMPLE_IP}, uint64_t{PERF_SAMPLE_TID},
                         uint64_t{PERF_SAMPLE_TIME}, uint64_t{PERF_SAMPLE_ADDR}}) {
      if (sample_type & bit) need += 8;
    }
    if (body_size < need) return r;
    const uint8_t* p = body;
    if (sample_type & PERF_SAMPLE_IP) {
      r.sample.ip = U64(p);
      p += 8;
    }
    if (sample_type & PERF_SAMPLE_TID) {
      r.sample.pid = U32(p);
      r.sample.tid = U32(p + 4);
      p += 8;
    }
    if (sample_type & PERF_SAMPLE_TIME) {
      r.sample.time = U64(p);
      p += 8;
    }
    if (sample_type & PERF_SAMPLE_ADDR) r.sample.addr = U64(p);
    r.kind = PerfRecord::Kind::kSample;
  } else if (h.type == PERF_RECORD_LOST && body_size >= 16) {
    r.lost.id = U64(body);
    r.lost.lost = U64(body + 8);
    r.kind = PerfRecord::Kind::kLost;
  } else if (h.type == PERF_RECORD_COMM && (h.misc & PERF_RECORD_MISC_COMM_EXEC) != 0 &&
             body_size >= 8) {
    r.exec.pid = U32(body);
    r.exec.tid = U32(body + 4);
    r.kind = PerfRecord::Kind::kExec;
  }
  return r;
}

}  // namespace

ParsedRing ParsePerfRing(std::span<const uint8_t> data, uint64_t tail, uint64_t head,
                         uint64_t sample_type) {
  ParsedRing out;
  out.new_tail = tail;
  const size_t size = data.size();
  if (size == 0 || (size & (size - 1)) != 0 || head < tail || head - tail > size) {
    out.corrupt = true;
    out.new_tail = head;
    return out;
  }
  std::vector<uint8_t> body;
  uint64_t pos = tail;
  while (head - pos >= sizeof(perf_event_header)) {
    perf_event_header h;
    CopyOut(data, pos, &h, sizeof h);
    if (h.size < sizeof h || h.size > size) {
      out.corrupt = true;
      pos = head;  // cannot resynchronise inside the stream
      break;
    }
    // The kernel publishes whole records only; a record reaching past head
    // is left for the next read rather than read beyond what is published.
    if (h.size > head - pos) break;
    body.resize(h.size - sizeof h);
    CopyOut(data, pos + sizeof h, body.data(), body.size());
    out.records.push_back(Decode(h, body.data(), body.size(), sample_type));
    pos += h.size;
  }
  out.new_tail = pos;
  return out;
}

Result<PerfRingBuffer> PerfRingBuffer::Map(int fd, size_t data_pages, uint64_t sample_type) {
  if (data_pages == 0 || (data_pages & (data_pages - 1)) != 0) {
    return Error{EINVAL, "perf ring: data pages must be a power of two"};
  }
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t map_size = (1 + data_pages) * page;
  // PROT_WRITE makes the mapping writable for data_tail, which tells the
  // kernel not to overwrite unread records.
  void* base = mmap(nullptr, map_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) return ErrnoError("mmap(perf ring)");
  auto* meta = static_cast<perf_event_mmap_page*>(base);
  size_t offset = meta->data_offset ? static_cast<size_t>(meta->data_offset) : page;
  size_t size = meta->data_size ? static_cast<size_t>(meta->data_size) : data_pages * page;
  return PerfRingBuffer(base, map_size, offset, size, sample_type);
}

PerfRingBuffer::PerfRingBuffer(PerfRingBuffer&& o) noexcept
    : base_(std::exchange(o.base_, nullptr)),
      map_size_(o.map_size_),
      data_offset_(o.data_offset_),
      data_size_(o.data_size_),
      sample_type_(o.sample_type_) {}

PerfRingBuffer& PerfRingBuffer::operator=(PerfRingBuffer&& o) noexcept {
  if (this != &o) {
    Unmap();
    base_ = std::exchange(o.base_, nullptr);
    map_size_ = o.map_size_;
    data_offset_ = o.data_offset_;
    data_size_ = o.data_size_;
    sample_type_ = o.sample_type_;
  }
  return *this;
}

PerfRingBuffer::~PerfRingBuffer() { Unmap(); }

void PerfRingBuffer::Unmap() {
  if (base_) munmap(base_, map_size_);
  base_ = nullptr;
}

uint64_t PerfRingBuffer::Pending() const {
  auto* meta = static_cast<perf_event_mmap_page*>(base_);
  return __atomic_load_n(&meta->data_head, __ATOMIC_ACQUIRE) - meta->data_tail;
}

ParsedRing PerfRingBuffer::Read() {
  auto* meta = static_cast<perf_event_mmap_page*>(base_);
  // Acquire pairs with the kernel's store of data_head after writing the
  // records; release on data_tail keeps our reads before the kernel reuses
  // the space.
  const uint64_t head = __atomic_load_n(&meta->data_head, __ATOMIC_ACQUIRE);
  const uint64_t tail = meta->data_tail;
  std::span<const uint8_t> data(static_cast<const uint8_t*>(base_) + data_offset_, data_size_);
  ParsedRing parsed = ParsePerfRing(data, tail, head, sample_type_);
  __atomic_store_n(&meta->data_tail, parsed.new_tail, __ATOMIC_RELEASE);
  return parsed;
}

}  // namespace hwwatch::arch
