# spec/tests.cmake: every test CTest runs. Included from CMakeLists.txt; tools/test runs it all.
#   busted specs: one CTest test per spec/*_spec.lua, run by Debian's lua5.4 against build/tide
#   and build/lua/tide/core.so, with the sandbox PostgreSQL from the environment (tools/test).
#   C unit tests: spec/c/test_*.c, one executable each.
find_program(LUA54 lua5.4 REQUIRED)
find_program(BUSTED busted REQUIRED)
find_program(LUACHECK luacheck)

set(TIDE_SPEC_ENV
  "LUA_PATH=${CMAKE_SOURCE_DIR}/lua/?.lua\;${CMAKE_SOURCE_DIR}/?.lua\;;"
  "LUA_CPATH=${CMAKE_BINARY_DIR}/lua/?.so\;;"
  "TIDE_BIN=${CMAKE_BINARY_DIR}/tide"
  "TIDE_SOURCE_DIR=${CMAKE_SOURCE_DIR}")

file(GLOB TIDE_SPECS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/spec/*_spec.lua)
foreach(spec IN LISTS TIDE_SPECS)
  get_filename_component(name "${spec}" NAME_WE)
  add_test(NAME ${name}
    COMMAND ${LUA54} ${BUSTED} --output=TAP --helper=${CMAKE_SOURCE_DIR}/spec/support/init.lua ${spec}
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(${name} PROPERTIES ENVIRONMENT "${TIDE_SPEC_ENV}" LABELS spec TIMEOUT 600)
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
  add_test(NAME luacheck COMMAND ${LUACHECK} --quiet lua spec versions tools
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
