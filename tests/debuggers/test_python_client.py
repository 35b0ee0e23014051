"""The Python client (client/python/hwwatch) against a real hwwatchd:
connect, capabilities, reserve with real hits streamed back, modify, list,
slots, release, refusal decoding and an unreachable socket."""

import os
import time
import unittest

import grpc

import harness
import hwwatch
from hwwatch import pb


class PythonClientTest(harness.DaemonTestCase):
    def setUp(self):
        self.writer = harness.Writer()
        self.client = hwwatch.Client.connect(self.daemon.socket)

    def tearDown(self):
        self.client.close()
        self.writer.stop()

    def counter_address(self):
        # dbg_target is PIE: the load base from /proc/PID/maps plus the
        # symbol's offset from nm.
        rc, out = harness.run(["nm", harness.TARGET])
        self.assertEqual(0, rc, out)
        offset = next(int(l.split()[0], 16) for l in out.splitlines() if l.endswith(" counter"))
        with open("/proc/%d/maps" % self.writer.proc.pid) as f:
            base = int(f.readline().split("-")[0], 16)
        return base + offset

    def test_reserve_stream_modify_release(self):
        caps = self.client.capabilities()
        self.assertIn(caps.arch, (pb.ARCH_X86_64, pb.ARCH_AARCH64))
        tid = self.writer.proc.pid
        addr = self.counter_address()
        stream = self.client.follow()
        r = self.client.reserve(hwwatch.target(tid=tid), hwwatch.watch(addr, 8, "w"),
                                delivery="samples", capture_value=True, label="py")
        self.assertGreater(r.id, 0)
        self.assertEqual(1, r.weight)
        self.assertEqual("py", r.label)
        values = []
        deadline = time.monotonic() + 20
        for e in stream:
            if e.HasField("hit"):
                self.assertEqual(r.id, e.hit.reservation_id)
                self.assertEqual(tid, e.hit.tid)
                values.append(int.from_bytes(e.hit.value, "little"))
            if len(values) >= 3 or time.monotonic() > deadline:
                break
        stream.cancel()
        self.assertEqual(3, len(values), values)
        # One write per hit: consecutive values.
        self.assertEqual([values[0], values[0] + 1, values[0] + 2], values)
        listed = {x.id: x for x in self.client.list()}
        self.assertIn(r.id, listed)
        self.assertGreaterEqual(listed[r.id].hits, 3)
        # Modify: the watch moves to the 4 bytes of other1 (never written).
        m = self.client.modify(r.id, hwwatch.watch(addr + 0x10, 4, "rw"))
        self.assertEqual(pb.ACCESS_READ_WRITE, m.watch.access)
        self.assertEqual(4, m.watch.length)
        s = self.client.slots(hwwatch.target(tid=tid), hwwatch.watch(addr, 32, "w"))
        self.assertFalse(s.probe.fits)
        self.assertTrue(s.probe.refusal.explanation)
        self.assertEqual(s.probe.refusal.reason, pb.Refusal.TASK_FULL, s.probe.refusal)
        self.client.release(r.id)
        self.assertNotIn(r.id, [x.id for x in self.client.list()])

    def test_refusal_is_decoded(self):
        tid = self.writer.proc.pid
        addr = self.counter_address()
        # 32 bytes take all four x86 registers; one more byte does not fit.
        r = self.client.reserve(hwwatch.target(tid=tid), hwwatch.watch(addr, 32, "w"))
        with self.assertRaises(hwwatch.Error) as cm:
            self.client.reserve(hwwatch.target(tid=tid), hwwatch.watch(addr + 64, 1, "w"))
        e = cm.exception
        self.assertEqual(grpc.StatusCode.RESOURCE_EXHAUSTED, e.code)
        self.assertIsNotNone(e.refusal, str(e))
        self.assertEqual(pb.Refusal.TASK_FULL, e.refusal.reason)
        self.assertEqual(tid, e.refusal.tid)
        self.assertEqual(1, e.refusal.weight)
        self.assertEqual(4, e.refusal.task_pinned)
        self.assertIn(e.refusal.explanation, str(e))
        print("refusal:", e)
        self.client.release(r.id)
        # A bad request is an error without a refusal.
        with self.assertRaises(hwwatch.Error) as cm:
            self.client.release(987654321)
        self.assertIsNone(cm.exception.refusal)

    def test_unreachable(self):
        missing = os.path.join(self.daemon.dir, "nobody.sock")
        t0 = time.monotonic()
        with self.assertRaises(hwwatch.Error) as cm:
            hwwatch.Client.connect(missing)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertTrue(cm.exception.unreachable)
        self.assertIn(missing, str(cm.exception))

    def test_default_socket(self):
        old = os.environ.pop("HWWATCH_SOCKET", None)
        try:
            self.assertEqual(hwwatch.DEFAULT_SOCKET, hwwatch.default_socket_path())
            os.environ["HWWATCH_SOCKET"] = self.daemon.socket
            with hwwatch.Client.connect() as c:
                self.assertEqual(self.daemon.socket, c.socket_path)
                self.assertTrue(c.stats().lock_mode)
        finally:
            os.environ.pop("HWWATCH_SOCKET", None)
            if old is not None:
                os.environ["HWWATCH_SOCKET"] = old


if __name__ == "__main__":
    unittest.main()
