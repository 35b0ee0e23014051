"""Test support for the debugger tests: a real hwwatchd on a temporary
socket, the self-test gate, and bounded runs of real programs.

Every process started here is ended (SIGTERM, then SIGKILL) and every
temporary directory removed; every wait has a time limit."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import hwwatch

BIN = os.environ.get("HWWATCH_BIN_DIR", "")
TESTS = os.environ.get("HWWATCH_TEST_DIR", "")
PYDIR = os.environ.get("HWWATCH_PYTHON_DIR", "")
TARGET = os.path.join(TESTS, "dbg_target")
NOT_RUN = 77  # ctest SKIP_RETURN_CODE: reported as not run, never as passed


class Daemon:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="hwwatch-dbg-")
        os.chmod(self.dir, 0o755)
        self.socket = os.path.join(self.dir, "hwwatchd.sock")
        self.log_path = os.path.join(self.dir, "hwwatchd.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "hwwatchd"), "--socket", self.socket, "--log-level", "info"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("hwwatchd exited: " + self.read_log())
            try:
                hwwatch.Client.connect(self.socket, timeout=2).close()
                break
            except hwwatch.Error:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("hwwatchd did not answer in 30 s")
                time.sleep(0.05)

    def read_log(self):
        with open(self.log_path) as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def require_fires(daemon):
    """Exits NOT_RUN, loudly, where this host's registers do not fire."""
    with hwwatch.Client.connect(daemon.socket) as c:
        fires, detail = c.self_test_fires()
    if not fires:
        sys.stderr.write("NOT RUN: this host's debug registers do not fire (hwwatch caps "
                         "self-test: %s); run these tests where they do\n" % detail)
        sys.stderr.flush()
        daemon.stop()
        os._exit(NOT_RUN)


def run(argv, timeout=60, stdin=None, env=None):
    """Runs argv in its own process group, killed whole at `timeout`;
    returns (exit code, stdout+stderr)."""
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        out, _ = p.communicate(stdin.encode() if stdin else None, timeout=timeout)
    except subprocess.TimeoutExpired:
        if p.pid > 0:
            os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        raise AssertionError("timed out after %d s: %s\n%s" % (timeout, argv, out.decode()))
    return p.returncode, out.decode(errors="replace")


class Writer:
    """dbg_target writer: counter += 1 every millisecond, until stopped."""

    def __init__(self):
        self.proc = subprocess.Popen([TARGET, "writer"], stdout=subprocess.PIPE)
        line = self.proc.stdout.readline()
        assert line.startswith(b"writer ready"), line

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.proc.stdout.close()
        return self.proc.returncode


class DaemonTestCase(unittest.TestCase):
    """One daemon for the whole class; the gate runs before any test."""

    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon()
        require_fires(cls.daemon)
        cls.env = dict(os.environ, HWWATCH_SOCKET=cls.daemon.socket)

    @classmethod
    def tearDownClass(cls):
        cls.daemon.stop()

    def assertNoReservations(self):
        with hwwatch.Client.connect(self.daemon.socket) as c:
            left = c.list(all=True)
        self.assertEqual([], [(r.id, r.label) for r in left])


def source_line(marker):
    """The line number of the first line of dbg_target.c holding `marker`."""
    with open(os.path.join(os.path.dirname(__file__), "dbg_target.c")) as f:
        for n, line in enumerate(f, 1):
            if marker in line:
                return n
    raise AssertionError("no %r in dbg_target.c" % marker)
