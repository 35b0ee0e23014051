"""Real LLDB (Debian 12's lldb-16, commands from a pipe, synchronous) with
hwwatch_lldb.py on dbg_target, against a real hwwatchd: exact old/new
values of real hits, a conditional watch, a thread started after hw-watch,
and LLDB's own watchpoints beside it with hwwatchd's refusal."""

import os
import shutil
import unittest

import harness

LLDB = shutil.which("lldb-16") or shutil.which("lldb")
SCRIPT = os.path.join(harness.PYDIR, "hwwatch_lldb.py")


def hit(number, what, old, new):
    return "hw-watch %d hit: %s (thread " % (number, what), "old value: %s\nnew value: %s\n" % (
        old, new)


class LldbTest(harness.DaemonTestCase):
    def lldb(self, commands, args=("loop",)):
        # -b stops at the first stop for a signal, so the commands come on
        # stdin with the debugger made synchronous.
        lines = ["script lldb.debugger.SetAsync(False)",
                 "command script import " + SCRIPT] + list(commands) + ["quit"]
        rc, out = harness.run([LLDB, "--no-use-colors", "--", harness.TARGET] + list(args),
                              stdin="\n".join(lines) + "\n", timeout=120, env=self.env)
        print(out)
        return rc, out

    def setUp(self):
        self.assertTrue(LLDB, "lldb is not installed (tests/install-deps.sh installs lldb-16)")

    def tearDown(self):
        self.assertNoReservations()

    def test_three_hits_exact_values(self):
        rc, out = self.lldb(["b ready", "run", "hw-watch counter", "c", "c", "c", "hw-watches",
                             "process kill"])
        self.assertEqual(0, rc)
        for old in range(3):
            head, values = hit(1, "counter", old, old + 1)
            self.assertIn(head, out)
            self.assertIn(values, out)
        self.assertEqual(3, out.count("hw-watch 1 hit"))
        self.assertRegex(out, r"\n1 +hw watchpoint +write .* 3 +3 +1 +counter\n")

    def test_conditional(self):
        rc, out = self.lldb(["b ready", "run", "hw-watch counter --if counter == 3", "c", "c"])
        self.assertEqual(0, rc)
        self.assertEqual(1, out.count("hw-watch 1 hit"))
        self.assertIn(hit(1, "counter", 2, 3)[1], out)
        self.assertRegex(out, r"counter 5\r?\n")
        self.assertRegex(out, r"exited with status = 0")

    def test_thread_started_after_hw_watch(self):
        rc, out = self.lldb(["b ready", "run", "hw-watch counter", "c", "c", "c"],
                            args=("thread",))
        self.assertEqual(0, rc)
        self.assertIn("on 1 thread(s)", out)
        self.assertEqual(2, out.count("hw-watch 1 hit"))
        self.assertIn(hit(1, "counter", 0, 1)[1], out)
        self.assertIn(hit(1, "counter", 1, 2)[1], out)
        self.assertRegex(out, r"counter 2\r?\n")

    def test_lldb_watch_beside_and_refusal(self):
        rc, out = self.lldb(["b ready", "run", "watchpoint set variable other1",
                             "watchpoint set variable other2", "hw-watch -l buf",
                             "hw-watch counter", "c", "c", "c", "c"], args=("outside",))
        self.assertEqual(0, rc)
        self.assertRegex(out, r"hwwatchd refused: .*held outside hwwatchd")
        self.assertIn("the watch needs 3 register(s)", out)
        self.assertRegex(out, r"Watchpoint 1 hit:\nold value: 0\nnew value: 1")
        self.assertIn(hit(1, "counter", 0, 1)[1], out)


if __name__ == "__main__":
    unittest.main()
