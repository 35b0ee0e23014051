// The capture program's skeleton, generated at build time by `bpftool gen
// skeleton` from capture.bpf.o (it embeds the object). Included as a
// system header: the generated code is not held to the project's warnings.
#pragma once
#pragma GCC system_header

// The skeleton uses the ABI's types: the ABI comes first.
// clang-format off
#include "daemon/bpf/capture_abi.h"
#include "capture.skel.h"
// clang-format on
