// Capture at the trap (BPF), through the real daemon and real hits: every
// value exact and in order, --changed and --if filtered in the kernel,
// 1,000 short-lived threads of a process all seen (inherited events), a
// client that never reads still accounted to the hit, pthread_create
// working while CPU watches fill every slot the process's threads leave,
// and the perf-ring fallback saying what it is.
//
// On arm64 the trap comes before the access: the daemon pairs each trap's
// record with the next one (exact old and new bytes, filters on the pair)
// and completes the last one by reading the bytes a few milliseconds
// later (VALUE_AT_DELIVERY), which is when the counts add up too. The
// same cases run there (tests/vm: vm_aarch64_capture).
//
// Hits need debug exceptions: on a host whose self-test says they never
// fire, the hit cases report "not run" (skipped, with the reason) unless
// HWWATCH_REQUIRE_FIRES=1, as in the emulated machines, where they always
// run (tests/vm: vm_x86_64_capture).
#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <future>
#include <map>
#include <set>
#include <string>
#include <thread>

#include "arch/arch.h"
#include "client/client.h"
#include "tests/support/daemon_fixture.h"
#include "tests/support/requests.h"

namespace hwwatch {
namespace {

using testing::Request;
namespace v1 = ::hwwatch::v1;

// The watched variable: the same address in the forked writer.
volatile uint64_t counter = 0;
// A region of two registers: the program reads all 16 bytes at each trap.
alignas(16) volatile uint64_t pair[2] = {0, 0};

// A child that writes `counter` when told to (forked before the client's
// threads start). Commands: {op, n, repeat}; the answer is one uint32.
class Writer {
 public:
  Writer() {
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      close(in[1]);
      close(out[0]);
      Serve(in[0], out[1]);
      _exit(0);
    }
    close(in[0]);
    close(out[1]);
    to_ = in[1];
    from_ = out[0];
  }
  ~Writer() {
    if (to_ >= 0) close(to_);
    if (from_ >= 0) close(from_);
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  static uint64_t address() { return reinterpret_cast<uintptr_t>(&counter); }
  static uint64_t pair_address() { return reinterpret_cast<uintptr_t>(&pair[0]); }

  // Writes 1..n, each value `repeat` times in a row (value = i / repeat + 1).
  uint32_t Write(uint32_t n, uint32_t repeat = 1) { return Ask({'w', n, repeat}); }
  // Writes 1..n into the second word of `pair`.
  uint32_t WritePair(uint32_t n) { return Ask({'p', n, 1}); }
  // Starts n threads one after another; thread i writes i + 1 once.
  uint32_t ShortThreads(uint32_t n) { return Ask({'t', n, 0}); }
  // Same, answering how many pthread_create calls failed.
  uint32_t CreateFailures(uint32_t n) { return Ask({'t', n, 0}); }

 private:
  struct Command {
    char op;
    uint32_t n, repeat;
  };
  uint32_t Ask(Command c) {
    uint32_t answer = UINT32_MAX;
    if (write(to_, &c, sizeof c) != sizeof c) return answer;
    if (read(from_, &answer, sizeof answer) != sizeof answer) return UINT32_MAX;
    return answer;
  }
  static void* WriteOnce(void* v) {
    counter = reinterpret_cast<uintptr_t>(v);
    return nullptr;
  }
  static void Serve(int in, int out) {
    for (Command c; read(in, &c, sizeof c) == sizeof c;) {
      uint32_t answer = 0;
      if (c.op == 'w') {
        for (uint32_t i = 0; i < c.n; ++i) counter = i / c.repeat + 1;
      } else if (c.op == 'p') {
        for (uint32_t i = 0; i < c.n; ++i) pair[1] = i + 1;
      } else if (c.op == 't') {
        for (uint32_t i = 0; i < c.n; ++i) {
          pthread_t t;
          if (pthread_create(&t, nullptr, WriteOnce, reinterpret_cast<void*>(uintptr_t{i} + 1)) !=
              0) {
            ++answer;
            continue;
          }
          pthread_join(t, nullptr);
        }
      }
      (void)!write(out, &answer, sizeof answer);
    }
  }
  pid_t pid_ = -1;
  int to_ = -1, from_ = -1;
};

uint64_t Value(const std::string& bytes) {
  uint64_t v = 0;
  std::memcpy(&v, bytes.data(), std::min(bytes.size(), sizeof v));
  return v;
}

// Hits until `want` of them came or were reported lost, the stream
// ended, or 60 s went by.
std::vector<v1::Hit> Hits(client::EventStream& s, size_t want, uint64_t* lost = nullptr) {
  auto got = std::async(std::launch::async, [&] {
    std::vector<v1::Hit> hits;
    v1::Event e;
    uint64_t gone = 0;  // events the stream said it lost count toward `want`
    while (hits.size() + gone < want && s.Next(&e)) {
      if (e.has_hit()) hits.push_back(e.hit());
      if (e.has_lost()) gone += e.lost().count();
    }
    if (lost != nullptr) *lost = gone;
    return hits;
  });
  if (got.wait_for(std::chrono::seconds(60)) != std::future_status::ready) s.Cancel();
  return got.get();
}

class Capture : public testing::DaemonTest {
 protected:
  void SetUp() override {
    DaemonTest::SetUp();
    auto caps = client().GetCapabilities();
    ASSERT_TRUE(caps) << caps.error().ToString();
    ASSERT_EQ(caps->capture().path(), v1::Capture::PATH_BPF)
        << "BPF capture is not in use: " << caps->capture().detail();
    bool fires = false;
    for (const auto& t : caps->self_test()) {
      fires |= t.backend() == v1::BACKEND_PERF && t.outcome() == v1::SelfTestResult::FIRES;
    }
    const char* require = std::getenv("HWWATCH_REQUIRE_FIRES");
    if (!fires) {
      ASSERT_FALSE(require != nullptr && std::string(require) == "1")
          << "the registers must fire here";
      GTEST_SKIP() << "not run: this host's debug registers never fire (the emulated machines "
                      "run this case)";
    }
  }
  v1::Reservation Reserve(v1::ReserveRequest req) {
    req.set_capture_value(true);
    auto r = client().Reserve(req);
    EXPECT_TRUE(r) << r.error().ToString();
    return r ? r.value() : v1::Reservation();
  }
  // The reservation as listed once its counts add up: every trap the
  // kernel counted delivered, filtered or lost (at once where the trap
  // comes after the access; on arm64 once the last one is completed).
  v1::Reservation Listed(uint64_t id) {
    v1::Reservation found;
    for (int i = 0; i < 500; ++i) {
      auto l = client().List();
      EXPECT_TRUE(l) << l.error().ToString();
      if (!l) return {};
      bool listed = false;
      for (const auto& r : l.value().reservations()) {
        if (r.id() == id) {
          found = r;
          listed = true;
        }
      }
      if (!listed) {
        ADD_FAILURE() << "reservation " << id << " not listed";
        return {};
      }
      if (found.delivered() + found.filtered() + found.lost() == found.hits()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return found;
  }
  Writer writer;
};

TEST_F(Capture, EveryValueIsExactAndInOrder) {
  constexpr uint32_t kWrites = 20000;
  auto stream = client().Follow({}, false);
  auto r = Reserve(Request().Tid(writer.pid()).At(Writer::address(), 8));
  ASSERT_EQ(writer.Write(kWrites), 0u);
  uint64_t lost = 0;
  auto hits = Hits(*stream, kWrites, &lost);
  ASSERT_EQ(hits.size(), kWrites) << lost << " lost";
  size_t wrong = 0;
  for (size_t i = 0; i < hits.size(); ++i) {
    const v1::Hit& h = hits[i];
    // arm64: a hit with no trap after it for a while (the last one, or
    // one before the writer was preempted) has its new bytes read later.
    const bool read_later =
        arch::kDataTrapBeforeAccess && h.value_source() == v1::VALUE_AT_DELIVERY;
    if ((h.value_source() != v1::VALUE_AT_TRAP && !read_later) || Value(h.value()) != i + 1 ||
        Value(h.old_value()) != i || h.tid() != writer.pid()) {
      if (wrong++ < 3) ADD_FAILURE() << "hit " << i << ": " << h.DebugString();
    }
  }
  EXPECT_EQ(wrong, 0u);
  EXPECT_EQ(lost, 0u);
  const v1::Reservation l = Listed(r.id());
  EXPECT_EQ(l.hits(), kWrites) << "the kernel's count of the event";
  EXPECT_EQ(l.delivered(), kWrites);
  EXPECT_EQ(l.filtered() + l.lost(), 0u);
  stream->Cancel();
}

// Longer than one word: the record carries all 16 bytes, old and new.
TEST_F(Capture, ARegionOfTwoRegistersCarriesAllItsBytes) {
  constexpr uint32_t kWrites = 5000;
  auto stream = client().Follow({}, false);
  auto r = Reserve(Request().Tid(writer.pid()).At(Writer::pair_address(), 16));
  ASSERT_EQ(r.registers_size(), 2);
  ASSERT_EQ(writer.WritePair(kWrites), 0u);
  uint64_t lost = 0;
  auto hits = Hits(*stream, kWrites, &lost);
  ASSERT_EQ(hits.size(), kWrites) << lost << " lost";
  size_t wrong = 0;
  for (size_t i = 0; i < hits.size(); ++i) {
    const v1::Hit& h = hits[i];
    if (h.value().size() != 16 || h.old_value().size() != 16 || Value(h.value()) != 0 ||
        Value(h.value().substr(8)) != i + 1 || Value(h.old_value().substr(8)) != i ||
        h.address() != Writer::pair_address() + 8) {
      if (wrong++ < 3) ADD_FAILURE() << "hit " << i << ": " << h.DebugString();
    }
  }
  EXPECT_EQ(wrong, 0u);
  const v1::Reservation l = Listed(r.id());
  EXPECT_EQ(l.hits(), kWrites);
  EXPECT_EQ(l.delivered(), kWrites);
  stream->Cancel();
}

TEST_F(Capture, ChangedSkipsWritesOfTheSameValue) {
  auto stream = client().Follow({}, true);  // and its release
  v1::ReserveRequest req = Request().Tid(writer.pid()).At(Writer::address(), 8);
  req.mutable_watch()->set_changed(true);
  auto r = Reserve(req);
  ASSERT_EQ(writer.Write(3000, 3), 0u);  // 1,1,1,2,2,2,...: 1000 changes
  auto hits = Hits(*stream, 1000);
  ASSERT_EQ(hits.size(), 1000u);
  for (size_t i = 0; i < hits.size(); ++i) {
    ASSERT_EQ(Value(hits[i].value()), i + 1) << hits[i].DebugString();
    ASSERT_EQ(Value(hits[i].old_value()), i) << hits[i].DebugString();
  }
  const v1::Reservation l = Listed(r.id());
  EXPECT_EQ(l.hits(), 3000u);
  EXPECT_EQ(l.delivered(), 1000u);
  EXPECT_EQ(l.filtered(), 2000u);
  EXPECT_EQ(l.lost(), 0u);
  // Its end says its totals.
  ASSERT_TRUE(client().Release(r.id()));
  v1::Event e;
  while (stream->Next(&e) && !e.has_released()) {
  }
  ASSERT_TRUE(e.has_released()) << e.DebugString();
  EXPECT_EQ(e.released().hits(), 3000u);
  EXPECT_EQ(e.released().delivered(), 1000u);
  EXPECT_EQ(e.released().filtered(), 2000u);
  EXPECT_EQ(e.released().lost(), 0u);
  stream->Cancel();
}

TEST_F(Capture, ConditionsFilterInTheKernel) {
  auto stream = client().Follow({}, false);
  v1::ReserveRequest req = Request().Tid(writer.pid()).At(Writer::address(), 8);
  req.mutable_watch()->set_condition("value & 0x3 == 0");
  auto r = Reserve(req);
  ASSERT_EQ(writer.Write(4000), 0u);
  auto hits = Hits(*stream, 1000);
  ASSERT_EQ(hits.size(), 1000u);
  for (size_t i = 0; i < hits.size(); ++i) {
    ASSERT_EQ(Value(hits[i].value()), 4 * (i + 1)) << hits[i].DebugString();
  }
  const v1::Reservation l = Listed(r.id());
  EXPECT_EQ(l.hits(), 4000u);
  EXPECT_EQ(l.delivered(), 1000u);
  EXPECT_EQ(l.filtered(), 3000u);
  ASSERT_TRUE(client().Release(r.id()));

  // Signed: -2 as 4 bytes; nothing below it among 1..4000.
  v1::ReserveRequest neg = Request().Tid(writer.pid()).At(Writer::address(), 4);
  neg.mutable_watch()->set_condition("value > -2");
  auto r2 = Reserve(neg);
  ASSERT_EQ(writer.Write(10), 0u);
  EXPECT_EQ(Hits(*stream, 10).size(), 10u);
  stream->Cancel();

  // Malformed: the status names what is wrong.
  for (const auto& [cond, what] : std::map<std::string, std::string>{
           {"value =< 3", "expected one of"},
           {"value & 0x1ffffffff == 1", "beyond the watch's 4 byte(s)"},
           {"valu == 3", "expected 'value'"},
           {"value == 3 junk", "unexpected"},
           {"value == 99999999999", "does not fit"}}) {
    v1::ReserveRequest bad = Request().Tid(writer.pid()).At(Writer::address() + 8, 4);
    bad.mutable_watch()->set_condition(cond);
    auto no = client().Reserve(bad);
    ASSERT_FALSE(no) << cond;
    EXPECT_EQ(no.error().code, grpc::StatusCode::INVALID_ARGUMENT) << cond;
    EXPECT_NE(no.error().message.find(what), std::string::npos) << no.error().message;
  }
}

TEST_F(Capture, AThousandShortLivedThreadsAreAllSeen) {
  auto stream = client().Follow({}, false);
  auto r = Reserve(Request().Pid(writer.pid()).At(Writer::address(), 8));
  ASSERT_EQ(writer.ShortThreads(1000), 0u);
  auto hits = Hits(*stream, 1000);
  ASSERT_EQ(hits.size(), 1000u);
  std::set<uint64_t> values;
  std::set<int32_t> tids;
  for (const auto& h : hits) {
    values.insert(Value(h.value()));
    tids.insert(h.tid());
  }
  EXPECT_EQ(values.size(), 1000u);
  EXPECT_EQ(*values.begin(), 1u);
  EXPECT_EQ(*values.rbegin(), 1000u);
  EXPECT_EQ(tids.count(writer.pid()), 0u) << "the main thread never wrote";
  const v1::Reservation l = Listed(r.id());
  EXPECT_EQ(l.hits(), 1000u) << "the kernel's count, children included";
  EXPECT_EQ(l.delivered(), 1000u);
  stream->Cancel();
}

TEST_F(Capture, AClientThatNeverReadsIsAccountedExactly) {
  constexpr uint32_t kWrites = 100000;
  // A stream that is not read until the writes are done.
  auto stream = client().Follow({}, false);
  auto r = Reserve(Request().Tid(writer.pid()).At(Writer::address(), 8));
  ASSERT_EQ(writer.Write(kWrites), 0u);
  // Every trap is over: the program's counts (records written, filtered,
  // dropped on a full ring) add up to the kernel's count of the event.
  const v1::Reservation l = Listed(r.id());
  EXPECT_EQ(l.hits(), kWrites);
  EXPECT_EQ(l.delivered() + l.filtered() + l.lost(), l.hits())
      << "delivered " << l.delivered() << " lost " << l.lost();
  // Now read it all: every one reaches this stream as a hit or is counted
  // in an EventsLost (the ring's drops too). How many are lost depends on
  // how much gRPC's transport held besides the stream's 65536 (its window
  // grows with the traffic): none, at times. The stream's bound and its
  // count of drops are event_hub_test's.
  uint64_t lost = 0;
  auto hits = Hits(*stream, kWrites, &lost);
  EXPECT_EQ(hits.size() + lost, kWrites);
  // In order, by the old bytes (exact at every trap) and by the new ones
  // where known (arm64 learns them from the next record, which the full
  // ring may have dropped).
  uint64_t last_new = 0;
  for (size_t i = 0; i < hits.size(); ++i) {
    if (i > 0) {
      ASSERT_LT(Value(hits[i - 1].old_value()), Value(hits[i].old_value())) << "out of order";
    }
    if (hits[i].has_value()) {
      ASSERT_LT(last_new, Value(hits[i].value())) << "out of order: " << hits[i].DebugString();
      last_new = Value(hits[i].value());
    }
  }
  ASSERT_TRUE(client().Release(r.id()));
  stream->Cancel();
}

// A process watch's events carry the program without a cookie (it finds
// the group by process and register address): a thread that existed at
// Reserve is captured, and after a modify that moves the register and adds
// one, the hits come from the new addresses.
TEST_F(Capture, AProcessWatchCapturesItsThreadsBeforeAndAfterAModify) {
  constexpr uint32_t kWrites = 200;
  auto stream = client().Follow({}, false);
  auto r = Reserve(Request().Pid(writer.pid()).At(Writer::address(), 8));
  ASSERT_EQ(writer.Write(kWrites), 0u);
  auto hits = Hits(*stream, kWrites);
  ASSERT_EQ(hits.size(), kWrites);
  for (size_t i = 0; i < hits.size(); ++i) {
    ASSERT_EQ(Value(hits[i].value()), i + 1) << hits[i].DebugString();
    ASSERT_EQ(hits[i].tid(), writer.pid());
  }
  auto moved = client().Modify(r.id(), testing::Watch(Writer::pair_address(), 16));
  ASSERT_TRUE(moved) << moved.error().ToString();
  ASSERT_EQ(moved->registers_size(), 2);
  ASSERT_EQ(writer.WritePair(kWrites), 0u);
  hits = Hits(*stream, kWrites);
  ASSERT_EQ(hits.size(), kWrites);
  for (size_t i = 0; i < hits.size(); ++i) {
    ASSERT_EQ(hits[i].address(), Writer::pair_address() + 8) << hits[i].DebugString();
    ASSERT_EQ(Value(hits[i].value().substr(8)), i + 1) << hits[i].DebugString();
  }
  const v1::Reservation l = Listed(r.id());
  EXPECT_EQ(l.delivered(), 2 * kWrites);
  stream->Cancel();
}

// Inherited events and CPU targets: the engine never lets CPU watches take
// the slot new threads of a watched process need, so the kernel never
// fails their clone; both agree on the refusal beyond.
TEST_F(Capture, PthreadCreateKeepsWorkingWhileCpuWatchesFillTheRest) {
  auto caps = client().GetCapabilities();
  ASSERT_TRUE(caps);
  const uint32_t slots = caps->pools(0).slots();
  auto r = Reserve(Request().Pid(writer.pid()).At(Writer::address(), 8));
  std::vector<uint64_t> held;
  for (uint32_t cpu = 0; cpu < caps->cpus(); ++cpu) {
    for (uint32_t i = 0; i + 1 < slots; ++i) {
      auto c = client().Reserve(Request()
                                    .Cpu(cpu)
                                    .At(0x10000 + 0x100 * (cpu * slots + i), 8)
                                    .Delivery(v1::DELIVERY_COUNT));
      ASSERT_TRUE(c) << "cpu " << cpu << " watch " << i << ": " << c.error().ToString();
      held.push_back(c->id());
    }
    auto full = client().Reserve(Request().Cpu(cpu).At(0x20000, 8).Delivery(v1::DELIVERY_COUNT));
    ASSERT_FALSE(full) << "cpu " << cpu << " has no slot left";
    EXPECT_EQ(full.error().code, grpc::StatusCode::RESOURCE_EXHAUSTED);
    ASSERT_TRUE(full.error().refusal.has_value());
    EXPECT_EQ(full.error().refusal->reason(), v1::Refusal::CPU_FULL)
        << "the engine refused it, as the kernel would: " << full.error().ToString();
  }
  auto stream = client().Follow({r.id()}, false);
  EXPECT_EQ(writer.CreateFailures(200), 0u) << "the kernel failed a clone";
  EXPECT_EQ(Hits(*stream, 200).size(), 200u);
  EXPECT_EQ(Listed(r.id()).hits(), 200u);
  stream->Cancel();
}

// A daemon started with `flags`, and a writer to watch.
class WriterDaemon : public testing::DaemonTest {
 protected:
  explicit WriterDaemon(std::vector<std::string> flags) : DaemonTest(std::move(flags)) {}
  Writer writer;
};

// The program's tables are bounded: a flood of samples reservations gets
// RESOURCE_EXHAUSTED naming the bound, the others keep theirs, and a
// released one makes room. (Needs no hits.)
class SmallTable : public WriterDaemon {
 protected:
  SmallTable() : WriterDaemon({"--bpf-max-watches", "2"}) {}
};

TEST_F(SmallTable, AFullTableIsRefusedAndReleaseMakesRoom) {
  auto caps = client().GetCapabilities();
  ASSERT_TRUE(caps);
  ASSERT_EQ(caps->capture().path(), v1::Capture::PATH_BPF) << caps->capture().detail();
  auto at = [&](uint64_t offset) {
    return Request().Tid(writer.pid()).At(Writer::address() + offset, 1);
  };
  auto a = client().Reserve(at(0));
  auto b = client().Reserve(at(1));
  ASSERT_TRUE(a) << a.error().ToString();
  ASSERT_TRUE(b) << b.error().ToString();
  auto c = client().Reserve(at(2));
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, grpc::StatusCode::RESOURCE_EXHAUSTED) << c.error().ToString();
  EXPECT_NE(c.error().message.find("capture program's table is full: it holds 2"),
            std::string::npos)
      << c.error().message;
  // Counting needs no table entry.
  auto counting = client().Reserve(at(2).Delivery(v1::DELIVERY_COUNT));
  EXPECT_TRUE(counting) << counting.error().ToString();
  auto l = client().List();
  ASSERT_TRUE(l);
  EXPECT_EQ(l->reservations_size(), 3);
  ASSERT_TRUE(client().Release(a->id()));
  auto again = client().Reserve(at(3));
  EXPECT_TRUE(again) << again.error().ToString();
}

// BPF turned off (as where it cannot load): perf rings, said out loud.
class RingFallback : public WriterDaemon {
 protected:
  RingFallback() : WriterDaemon({"--capture", "ring"}) {}
};

TEST_F(RingFallback, CapabilitiesHitsAndFiltersSaySo) {
  auto caps = client().GetCapabilities();
  ASSERT_TRUE(caps);
  EXPECT_EQ(caps->capture().path(), v1::Capture::PATH_PERF_RING);
  EXPECT_NE(caps->capture().detail().find("--capture ring"), std::string::npos)
      << caps->capture().detail();
  // Filters need the program: refused, with the reason.
  v1::ReserveRequest req = Request().Tid(writer.pid()).At(Writer::address(), 8);
  req.mutable_watch()->set_changed(true);
  auto no = client().Reserve(req);
  ASSERT_FALSE(no);
  EXPECT_EQ(no.error().code, grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(no.error().message.find("BPF"), std::string::npos) << no.error().message;

  bool fires = false;
  for (const auto& t : caps->self_test()) {
    fires |= t.backend() == v1::BACKEND_PERF && t.outcome() == v1::SelfTestResult::FIRES;
  }
  if (!fires) {
    const char* require = std::getenv("HWWATCH_REQUIRE_FIRES");
    ASSERT_FALSE(require != nullptr && std::string(require) == "1");
    GTEST_SKIP() << "not run (hits): this host's debug registers never fire";
  }
  auto stream = client().Follow({}, false);
  v1::ReserveRequest plain = Request().Tid(writer.pid()).At(Writer::address(), 8);
  plain.set_capture_value(true);
  auto r = client().Reserve(plain);
  ASSERT_TRUE(r) << r.error().ToString();
  ASSERT_EQ(writer.Write(3), 0u);
  auto hits = Hits(*stream, 3);
  ASSERT_EQ(hits.size(), 3u);
  for (const auto& h : hits) {
    EXPECT_EQ(h.value_source(), v1::VALUE_AT_DELIVERY) << h.DebugString();
    EXPECT_FALSE(h.has_old_value());
  }
  stream->Cancel();
}

}  // namespace
}  // namespace hwwatch
