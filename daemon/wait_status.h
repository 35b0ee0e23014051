// A waitpid() status, decoded once (wait(2), ptrace(2) "Stopped states").
//
// The word waitpid() fills in says one of: the thread exited (with a code),
// was killed (by a signal), stopped (with a stop signal) or continued. A
// tracee's stop also carries a ptrace event in bits 16..23 (status >> 16):
// 0 for a signal-delivery stop, PTRACE_EVENT_CLONE/EXEC/... for an event,
// PTRACE_EVENT_STOP for the stops of a PTRACE_SEIZEd thread, which are a
// group stop (job control: SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU) or else an
// interrupt (PTRACE_INTERRUPT, PTRACE_LISTEN, a seize's first stop).
#pragma once

#include <sys/ptrace.h>
#include <sys/wait.h>

#include <csignal>

namespace hwwatch::daemon {

class WaitStatus {
 public:
  constexpr WaitStatus() = default;
  constexpr explicit WaitStatus(int raw) : raw_(raw) {}

  // The word as waitpid() returned it.
  constexpr int raw() const { return raw_; }

  // Exited by itself (exit, _exit, return from main); exit_code() is its
  // status & 0xff. A zero status reads as "exited with 0".
  constexpr bool exited() const { return WIFEXITED(raw_); }
  constexpr int exit_code() const { return exited() ? WEXITSTATUS(raw_) : 0; }

  // Killed by a signal (term_signal()), maybe with a core dump.
  constexpr bool killed() const { return WIFSIGNALED(raw_); }
  constexpr int term_signal() const { return killed() ? WTERMSIG(raw_) : 0; }
  constexpr bool core_dumped() const { return killed() && WCOREDUMP(raw_); }

  // Exited or killed: the thread is gone.
  constexpr bool ended() const { return exited() || killed(); }

  // Stopped (a traced thread, or WUNTRACED) with stop_signal().
  constexpr bool stopped() const { return WIFSTOPPED(raw_); }
  constexpr int stop_signal() const { return stopped() ? WSTOPSIG(raw_) : 0; }

  // Resumed by SIGCONT (only reported with WCONTINUED).
  constexpr bool continued() const { return WIFCONTINUED(raw_); }

  // A tracee's stop: the ptrace event (status >> 16), 0 for none.
  constexpr int ptrace_event() const { return stopped() ? (raw_ >> 16) & 0xff : 0; }
  // A signal-delivery stop: stop_signal() is a signal for the tracee.
  constexpr bool signal_stop() const { return stopped() && ptrace_event() == 0; }
  // PTRACE_EVENT_STOP: a group stop or an interrupt (seized tracees only).
  constexpr bool event_stop() const { return ptrace_event() == PTRACE_EVENT_STOP; }
  // A job-control stop of a seized tracee: it should stay stopped
  // (PTRACE_LISTEN) rather than be continued.
  constexpr bool group_stop() const { return event_stop() && IsJobControlSignal(stop_signal()); }
  // The stop PTRACE_INTERRUPT (or PTRACE_SEIZE, PTRACE_LISTEN) asked for.
  constexpr bool interrupt_stop() const { return event_stop() && !group_stop(); }

  // SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU: the signals that stop a group.
  static constexpr bool IsJobControlSignal(int sig) {
    return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
  }

 private:
  int raw_ = 0;
};

}  // namespace hwwatch::daemon
