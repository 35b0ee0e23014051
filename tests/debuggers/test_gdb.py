"""Real GDB (batch mode) with hwwatch-gdb.py on dbg_target, against a real
hwwatchd: exact Old/New values of real hits, a conditional watch, a thread
started after hw-watch, non-stop mode, a hit during `next`, GDB's own
watchpoints beside it and hwwatchd's refusal when they leave too few
registers, and a target that lives on after detach and quit."""

import os
import re
import shutil
import time
import unittest

import harness

GDB = shutil.which("gdb")
SCRIPT = os.path.join(harness.PYDIR, "hwwatch-gdb.py")


def hit(number, what, old, new, thread=""):
    return "\n%sHardware watchpoint %d: %s\n\nOld value = %s\nNew value = %s\n" % (
        thread, number, what, old, new)


class GdbTest(harness.DaemonTestCase):
    def gdb(self, commands, args=("loop",), attach=None, pre=()):
        argv = [GDB, "-nx", "-batch", "-ex", "source " + SCRIPT]
        for c in list(pre) + list(commands):
            argv += ["-ex", c]
        if attach is not None:
            argv += ["-p", str(attach)]
        else:
            argv += ["--args", harness.TARGET] + list(args)
        rc, out = harness.run(argv, timeout=120, env=self.env)
        print(out)
        return rc, out

    def setUp(self):
        self.assertTrue(GDB, "gdb is not installed (tests/install-deps.sh installs it)")

    def tearDown(self):
        # Every run releases what it took: at exit, kill, detach or quit.
        self.assertNoReservations()

    def test_three_hits_exact_values(self):
        rc, out = self.gdb(["break ready", "run", "hw-watch counter", "continue", "continue",
                            "continue", "info hw-watches", "kill"])
        self.assertEqual(0, rc)
        self.assertIn("Hardware watchpoint 1: counter (hwwatchd: ", out)
        for old in range(3):
            self.assertIn(hit(1, "counter", old, old + 1) + "count_to (n=5) at ", out)
        self.assertEqual(3, out.count("Old value"))
        self.assertNotIn("SIGTRAP", out)  # GDB never saw a random signal
        # info hw-watches: 3 reported, the kernel counted 3.
        self.assertRegex(out, r"\n1 +hw watchpoint +write .* 3 +3 +1 +counter\n")

    def test_location_and_non_stop(self):
        rc, out = self.gdb(["break ready", "run", "hw-watch -l counter", "continue", "continue",
                            "continue", "kill"], pre=["set non-stop on"])
        self.assertEqual(0, rc)
        for old in range(3):
            self.assertIn(hit(1, "-location counter", old, old + 1), out)

    def test_conditional(self):
        rc, out = self.gdb(["break ready", "run", "hw-watch counter --if counter == 3",
                            "continue", "continue"])
        self.assertEqual(0, rc)
        # Only the write that makes it 3 stops, with its exact old value.
        self.assertEqual(1, out.count("Old value"))
        self.assertIn(hit(1, "counter", 2, 3), out)
        self.assertIn("counter 5\n", out)
        self.assertIn("exited normally", out)
        self.assertNotIn("SIGTRAP", out)

    def test_changed(self):
        rc, out = self.gdb(["break ready", "run", "hw-watch counter --changed", "continue",
                            "kill"])
        self.assertEqual(0, rc)
        self.assertIn(hit(1, "counter", 0, 1), out)

    def test_thread_started_after_hw_watch(self):
        rc, out = self.gdb(["break ready", "run", "hw-watch counter", "continue", "continue",
                            "continue"], args=("thread",))
        self.assertEqual(0, rc)
        self.assertIn("on 1 thread(s)", out)
        # The new thread's two writes, reported in that thread.
        self.assertIn(hit(1, "counter", 0, 1, 'Thread 2 "dbg_target" hit ') +
                      "count_to (n=2) at ", out)
        self.assertIn(hit(1, "counter", 1, 2, 'Thread 2 "dbg_target" hit '), out)
        self.assertIn("counter 2\n", out)
        self.assertIn("exited normally", out)

    def test_hit_during_next_is_reported(self):
        line = harness.source_line("/* the write */")
        rc, out = self.gdb(["break %d" % line, "run", "hw-watch counter", "next", "next",
                            "info hw-watches", "kill"])
        self.assertEqual(0, rc)
        # The write stepped over by `next`: as a stop, or as a hit GDB took for
        # its step's own trap; never lost.
        self.assertRegex(out, r"Old value = 0\nNew value = 1\n")
        self.assertRegex(out, r"\n1 +hw watchpoint +write .* 1 +1 +1 +counter\n")

    def test_gdb_watch_beside_and_refusal(self):
        # GDB's own two watchpoints take two of the thread's four registers
        # (written at the resume after `watch`); buf (24 bytes) needs three.
        rc, out = self.gdb(["break ready", "run", "watch other1", "watch other2", "continue",
                            "hw-watch -l buf", "info hw-watches", "hw-watch counter",
                            "continue", "continue", "continue"], args=("outside",))
        self.assertEqual(0, rc)
        self.assertRegex(out, r"hwwatchd refused: .*held outside hwwatchd")
        self.assertIn("the watch needs 3 register(s)", out)
        self.assertIn("\nHardware watchpoint 2: other1\n\nOld value = 0\nNew value = 1\n", out)
        self.assertIn("\nHardware watchpoint 3: other2\n\nOld value = 0\nNew value = 2\n", out)
        self.assertIn(hit(1, "counter", 0, 1), out)
        self.assertIn("exited normally", out)

    def attached(self, last):
        w = harness.Writer()
        try:
            rc, out = self.gdb(["hw-watch counter", "continue", "continue"] + last,
                               attach=w.proc.pid)
            self.assertEqual(0, rc)
            self.assertEqual(2, out.count("Old value"), out)
            time.sleep(0.5)  # 500 writes
            self.assertTrue(w.alive(), "the target died after GDB let it go")
            with open("/proc/%d/status" % w.proc.pid) as f:
                self.assertIn("TracerPid:\t0\n", f.read())
        finally:
            status = w.stop()
        self.assertEqual(-9, status)  # ended by our SIGKILL, not by a SIGTRAP

    def test_detach_releases(self):
        self.attached(["detach"])

    def test_quit_releases(self):
        self.attached([])  # the batch's end quits, which detaches


if __name__ == "__main__":
    unittest.main()
