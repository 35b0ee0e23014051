// EventHub: who gets which event, bounded queues that report what they
// dropped, and no notification after unsubscribing.
#include "daemon/event_hub.h"

#include <gtest/gtest.h>

#include "daemon/events.h"

#include <atomic>
#include <thread>

namespace hwwatch::daemon {
namespace {

Event HitOf(uint64_t reservation, uint64_t ip) {
  RawHit h;
  h.group = reservation;
  h.ip = ip;
  return HitEvent(h);
}

Event ReleasedOf(uint64_t reservation) { return ReleasedEvent(reservation, "released", {}); }

const Event::Hit* HitIn(const Event& e) { return std::get_if<Event::Hit>(&e.kind); }
const Event::Lost* LostIn(const Event& e) { return std::get_if<Event::Lost>(&e.kind); }

std::vector<uint64_t> Drain(EventStream& s) {
  std::vector<uint64_t> ips;
  while (auto e = s.Pop()) ips.push_back(HitIn(*e) != nullptr ? HitIn(*e)->ip : 0);
  return ips;
}

// A hub with the membership that routes its events.
struct Hub {
  explicit Hub(size_t capacity = EventHub::kDefaultCapacity) : hub(members, capacity) {}
  // `reservation` is owned by `session` (a group of its own).
  void SetOwner(uint64_t reservation, uint64_t session) {
    members.Join(reservation, reservation, session);
  }
  Membership members;
  EventHub hub;
};

TEST(EventHub, HitsGoToTheOwningSessionOrToStreamsNamingTheReservation) {
  Hub h;
  EventHub& hub = h.hub;
  h.SetOwner(10, /*session=*/1);
  h.SetOwner(20, /*session=*/2);
  auto session1 = hub.Subscribe(1, {}, false, nullptr);
  auto session2 = hub.Subscribe(2, {}, false, nullptr);
  auto only20 = hub.Subscribe(3, {20}, false, nullptr);
  hub.Publish(10, HitOf(10, 0x100), false);
  hub.Publish(20, HitOf(20, 0x200), false);
  hub.Publish(30, HitOf(30, 0x300), false);  // nobody owns or names it
  EXPECT_EQ(Drain(*session1), (std::vector<uint64_t>{0x100}));
  EXPECT_EQ(Drain(*session2), (std::vector<uint64_t>{0x200}));
  EXPECT_EQ(Drain(*only20), (std::vector<uint64_t>{0x200}));
  EXPECT_EQ(hub.sent(), 3u);
}

TEST(EventHub, LifecycleEventsOnlyForStreamsThatAskedForThem) {
  Hub h;
  EventHub& hub = h.hub;
  h.SetOwner(10, 1);
  auto quiet = hub.Subscribe(1, {}, false, nullptr);
  auto told = hub.Subscribe(1, {}, true, nullptr);
  hub.Publish(10, ReleasedOf(10), true);
  EXPECT_FALSE(quiet->Pop().has_value());
  auto e = told->Pop();
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(std::holds_alternative<Event::Released>(e->kind));
}

TEST(EventHub, WantedIsTrueExactlyWhenPublishWouldQueue) {
  Hub h;
  EventHub& hub = h.hub;
  h.SetOwner(10, 1);
  h.SetOwner(11, 2);
  EXPECT_FALSE(hub.Wanted(10, true));  // no stream at all
  auto hits_only = hub.Subscribe(1, {}, false, nullptr);
  EXPECT_TRUE(hub.Wanted(10, false));
  EXPECT_FALSE(hub.Wanted(10, true));   // it did not ask for lifecycle events
  EXPECT_FALSE(hub.Wanted(11, false));  // another session's
  auto named = hub.Subscribe(3, {11}, true, nullptr);
  EXPECT_TRUE(hub.Wanted(11, true));
  hub.Unsubscribe(named);
  EXPECT_FALSE(hub.Wanted(11, true));
  hub.Publish(10, ReleasedOf(10), true);
  EXPECT_EQ(hub.sent(), 0u);  // what Wanted said
}

TEST(EventHub, AFullQueueDropsAndReportsTheCountBeforeTheNextEvent) {
  Hub h(/*capacity=*/3);
  EventHub& hub = h.hub;
  h.SetOwner(10, 1);
  auto s = hub.Subscribe(1, {}, false, nullptr);
  for (uint64_t i = 1; i <= 10; ++i) hub.Publish(10, HitOf(10, i), false);
  EXPECT_EQ(hub.sent(), 3u);
  EXPECT_EQ(hub.lost(), 7u);
  // The lost count comes first, then the events that fit, numbered in order.
  auto first = s->Pop();
  ASSERT_TRUE(first.has_value());
  ASSERT_NE(LostIn(*first), nullptr);
  EXPECT_EQ(LostIn(*first)->count, 7u);
  EXPECT_EQ(first->sequence, 1u);
  std::vector<uint64_t> seq;
  while (auto e = s->Pop()) {
    ASSERT_NE(HitIn(*e), nullptr);
    EXPECT_EQ(HitIn(*e)->ip, e->sequence - 1);
    seq.push_back(e->sequence);
  }
  EXPECT_EQ(seq, (std::vector<uint64_t>{2, 3, 4}));
  // Room again: nothing more is lost.
  hub.Publish(10, HitOf(10, 11), false);
  EXPECT_EQ(hub.lost(), 7u);
}

TEST(EventHub, NotifiesOnlyWhenTheQueueBecomesNonEmptyAndNeverAfterUnsubscribe) {
  Hub h;
  EventHub& hub = h.hub;
  h.SetOwner(10, 1);
  std::atomic<int> notified{0};
  auto s = hub.Subscribe(1, {}, false, [&] { ++notified; });
  hub.Publish(10, HitOf(10, 1), false);
  hub.Publish(10, HitOf(10, 2), false);
  EXPECT_EQ(notified.load(), 1);
  Drain(*s);
  hub.Publish(10, HitOf(10, 3), false);
  EXPECT_EQ(notified.load(), 2);
  hub.Unsubscribe(s);
  Drain(*s);
  hub.Publish(10, HitOf(10, 4), false);
  s->Kick();
  EXPECT_EQ(notified.load(), 2);
  EXPECT_EQ(hub.streams(), 0u);
}

TEST(EventHub, ForgottenReservationsReachOnlyStreamsThatNamedThem) {
  Hub h;
  EventHub& hub = h.hub;
  h.SetOwner(10, 1);
  auto session = hub.Subscribe(1, {}, false, nullptr);
  auto named = hub.Subscribe(2, {10}, false, nullptr);
  h.members.Leave(10);
  hub.Publish(10, HitOf(10, 1), false);
  EXPECT_TRUE(Drain(*session).empty());
  EXPECT_EQ(Drain(*named).size(), 1u);
}

// Producers on several threads, one consumer, a small queue: every event is
// either delivered or counted lost, none twice (run under TSan too).
TEST(EventHub, ConcurrentProducersLoseNothingUncounted) {
  Hub h(/*capacity=*/64);
  EventHub& hub = h.hub;
  h.SetOwner(10, 1);
  std::atomic<uint64_t> received{0}, lost{0};
  auto s = hub.Subscribe(1, {}, false, nullptr);
  std::atomic<bool> stop{false};
  std::thread consumer([&] {
    for (;;) {
      const bool last = stop.load();
      while (auto e = s->Pop()) {
        if (LostIn(*e) != nullptr) {
          lost += LostIn(*e)->count;
        } else {
          ++received;
        }
      }
      if (last) return;
      std::this_thread::yield();
    }
  });
  constexpr int kThreads = 4, kEach = 20000;
  std::vector<std::thread> producers;
  for (int t = 0; t < kThreads; ++t) {
    producers.emplace_back([&] {
      for (int i = 0; i < kEach; ++i) hub.Publish(10, HitOf(10, i), false);
    });
  }
  for (auto& p : producers) p.join();
  stop = true;
  consumer.join();
  EXPECT_EQ(received.load() + lost.load(), uint64_t{kThreads} * kEach);
  EXPECT_EQ(received.load(), hub.sent());
  EXPECT_EQ(lost.load(), hub.lost());
}

// Sharers of one group of registers: each gets the group's events under
// its own reservation id, on its own session's streams.
TEST(EventHub, GroupEventsReachEveryMemberUnderItsOwnId) {
  Hub h;
  h.members.Join(10, 10, /*session=*/1);
  h.members.Join(10, 11, /*session=*/2);
  auto first = h.hub.Subscribe(1, {}, false, nullptr);
  auto second = h.hub.Subscribe(2, {}, false, nullptr);
  h.hub.PublishGroup(10, HitOf(10, 0x100), false);
  auto a = first->Pop();
  auto b = second->Pop();
  ASSERT_TRUE(a && b);
  ASSERT_NE(HitIn(*a), nullptr);
  ASSERT_NE(HitIn(*b), nullptr);
  EXPECT_EQ(HitIn(*a)->reservation_id, 10u);
  EXPECT_EQ(HitIn(*b)->reservation_id, 11u);
  // The first member leaves; the group keeps its id for the one left.
  EXPECT_EQ(h.members.Leave(10), 1u);
  h.hub.PublishGroup(10, HitOf(10, 0x200), false);
  EXPECT_TRUE(Drain(*first).empty());
  EXPECT_EQ(Drain(*second), (std::vector<uint64_t>{0x200}));
}

}  // namespace
}  // namespace hwwatch::daemon
