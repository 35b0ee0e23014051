// The thread lister's skeleton, generated at build time by `bpftool gen
// skeleton` from threads.bpf.o (it embeds the object). Included as a
// system header: the generated code is not held to the project's warnings.
#pragma once
#pragma GCC system_header

// clang-format off
#include "daemon/bpf/threads_abi.h"
#include "threads.skel.h"
// clang-format on
