# spec/tests.cmake: every test CTest runs. Included from CMakeLists.txt; tools/test runs it all.
#   busted specs: one CTest test per spec/*_spec.lua, run by Debian's lua5.4 against build/tide
#   and build/lua/tide/core.so, with the sandbox PostgreSQL from the environment (tools/test).
#   C unit tests: spec/c/test_*.c, one executable each.
find_program(LUA54 lua5.4 REQUIRED)
find_program(BUSTED busted REQUIRED)
find_program(LUACHECK luacheck)

# Where the specs' in-process tide.core comes from: a sanitized build points this at a plain
# build, because Debian's lua5.4 cannot load an ASan module.
set(TIDE_SPEC_CPATH ${CMAKE_BINARY_DIR}/lua CACHE PATH "Folder holding tide/core.so for the specs")
set(TIDE_SPEC_ENV
  "LUA_PATH=${CMAKE_SOURCE_DIR}/lua/?.lua\;${CMAKE_SOURCE_DIR}/?.lua\;\;"
  "LUA_CPATH=${TIDE_SPEC_CPATH}/?.so\;\;"
  "TIDE_BIN=${CMAKE_BINARY_DIR}/tide"
  "TIDE_SOURCE_DIR=${CMAKE_SOURCE_DIR}")

file(GLOB TIDE_SPECS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/spec/*_spec.lua)
foreach(spec IN LISTS TIDE_SPECS)
  get_filename_component(name "${spec}" NAME_WE)
  add_test(NAME ${name}
    COMMAND ${LUA54} ${BUSTED} --run=ctest --output=TAP --helper=${CMAKE_SOURCE_DIR}/spec/support/init.lua ${spec}
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set(labels spec)
  if(name STREQUAL "valgrind_spec")
    # valgrind cannot run a sanitized binary: the ASan run leaves this one out (-LE valgrind)
    list(APPEND labels valgrind)
  endif()
  set_tests_properties(${name} PROPERTIES ENVIRONMENT "${TIDE_SPEC_ENV}" LABELS "${labels}" TIMEOUT 600)
endforeach()

file(GLOB TIDE_C_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/spec/c/test_*.c)
foreach(src IN LISTS TIDE_C_TESTS)
  get_filename_component(name "${src}" NAME_WE)
  add_executable(${name} ${src} $<TARGET_OBJECTS:tide_engine>)
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/engine ${CMAKE_SOURCE_DIR}/spec/c)
  target_link_libraries(${name} PRIVATE PkgConfig::LUA PkgConfig::PQ PkgConfig::CURL PkgConfig::CRYPTO m)
  add_test(NAME c_${name} COMMAND ${name} WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(c_${name} PROPERTIES LABELS c TIMEOUT 300)
endforeach()

if(LUACHECK)
  add_test(NAME luacheck COMMAND ${LUACHECK} --quiet lua spec versions tests tools tide.lua
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(luacheck PROPERTIES LABELS lint)
endif()

find_program(CLANG_FORMAT clang-format)
if(CLANG_FORMAT)
  file(GLOB TIDE_C_FILES ${CMAKE_SOURCE_DIR}/engine/*.c ${CMAKE_SOURCE_DIR}/engine/*.h
       ${CMAKE_SOURCE_DIR}/spec/c/*.c ${CMAKE_SOURCE_DIR}/spec/c/*.h)
  add_test(NAME clang_format COMMAND ${CLANG_FORMAT} --dry-run -Werror ${TIDE_C_FILES}
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(clang_format PROPERTIES LABELS lint)
endif()

# libFuzzer targets (spec/fuzz/fuzz_*.c): configure a separate build with
#   CC=clang cmake -S . -B build-fuzz -DTIDE_FUZZ=ON
# Each target is a CTest test labelled `fuzz`, started from the corpus kept in
# spec/fuzz/corpus/<name>/ (read only). By default a run is reproducible, as a test in CI must
# be: a fixed seed, a fixed number of inputs, and new finds kept in a scratch folder emptied
# first, so the same commit gives the same verdict on every machine. TIDE_FUZZ_SEED=0 explores
# instead (a random seed, the corpus in the build folder kept between runs, TIDE_FUZZ_RUNS=-1
# for no limit): tools/torture/fuzz does that for TIDE_FUZZ_SECONDS per target.
set(TIDE_FUZZ_SEED 1 CACHE STRING "libFuzzer -seed (0: a random seed, corpus kept)")
set(TIDE_FUZZ_RUNS 20000 CACHE STRING "libFuzzer -runs per target (-1: until TIDE_FUZZ_SECONDS)")
set(TIDE_FUZZ_SECONDS 300 CACHE STRING "libFuzzer -max_total_time per target")
if(TIDE_FUZZ)
  file(GLOB TIDE_FUZZERS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/spec/fuzz/fuzz_*.c)
  foreach(src IN LISTS TIDE_FUZZERS)
    get_filename_component(name "${src}" NAME_WE)
    string(REGEX REPLACE "^fuzz_" "" short "${name}")
    add_executable(${name} ${src} $<TARGET_OBJECTS:tide_engine>)
    target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/engine)
    target_compile_definitions(${name} PRIVATE TIDE_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_libraries(${name} PRIVATE PkgConfig::LUA PkgConfig::PQ PkgConfig::CURL PkgConfig::CRYPTO m)
    set(finds ${CMAKE_BINARY_DIR}/fuzz-corpus/${short})
    if(NOT TIDE_FUZZ_SEED EQUAL 0)
      set(finds ${CMAKE_BINARY_DIR}/fuzz-scratch/${short})
    endif()
    file(MAKE_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz-artifacts)
    add_test(NAME ${name}
      COMMAND sh -c "if [ ${TIDE_FUZZ_SEED} -ne 0 ]; then rm -rf '${finds}'; fi; mkdir -p '${finds}' && exec \"$0\" \"$@\""
              $<TARGET_FILE:${name}> -seed=${TIDE_FUZZ_SEED} -runs=${TIDE_FUZZ_RUNS}
              -max_total_time=${TIDE_FUZZ_SECONDS} -timeout=10 -rss_limit_mb=2048
              -use_value_profile=1 -print_final_stats=1
              -artifact_prefix=${CMAKE_BINARY_DIR}/fuzz-artifacts/${short}-
              ${finds} ${CMAKE_SOURCE_DIR}/spec/fuzz/corpus/${short})
    math(EXPR limit "${TIDE_FUZZ_SECONDS} + 120")
    set_tests_properties(${name} PROPERTIES LABELS fuzz TIMEOUT ${limit})
  endforeach()
endif()
