# Runs hwwatch-bench engine with small sizes in both modes and checks that
# each prints one JSON object with the fields the contract names.
foreach(args "engine;--cpus;8;--tasks;2;--threads;4;--bps;2;--rounds;2;--repeat;1;--json"
             "engine;--mode;ops;--lock;global;--threads;2;--iterations;100;--repeat;1;--json")
  execute_process(COMMAND ${BENCH} ${args} OUTPUT_VARIABLE out RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "hwwatch-bench ${args} exited ${rc}")
  endif()
  foreach(field us_per_op ops_per_s lock cpus bps)
    string(JSON value ERROR_VARIABLE err GET "${out}" ${field})
    if(err)
      message(FATAL_ERROR "no '${field}' in: ${out}")
    endif()
  endforeach()
  string(JSON us GET "${out}" us_per_op)
  if(us LESS_EQUAL 0)
    message(FATAL_ERROR "us_per_op is ${us}")
  endif()
endforeach()
