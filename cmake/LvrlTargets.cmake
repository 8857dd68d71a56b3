# How every lvrl target is built: one place for warnings, sanitizers, the LibTorch precompiled header.

add_library(lvrl_build_flags INTERFACE)
target_compile_options(lvrl_build_flags INTERFACE -Wall -Wextra $<$<BOOL:${LVRL_WERROR}>:-Werror>)
target_include_directories(lvrl_build_flags INTERFACE ${PROJECT_SOURCE_DIR})
# _FILE_OFFSET_BITS: FFmpeg's pkg-config sets it; defining it everywhere keeps the PCH valid in every target.
target_compile_definitions(lvrl_build_flags INTERFACE LVRL_VERSION="${PROJECT_VERSION}" _FILE_OFFSET_BITS=64
                           $<$<BOOL:${LVRL_WITH_CUDA}>:LVRL_WITH_CUDA=1>)
if(LVRL_SANITIZE)
  if(NOT LVRL_SANITIZE MATCHES "^(address|undefined|thread)$")
    message(FATAL_ERROR "LVRL_SANITIZE='${LVRL_SANITIZE}': expected address, undefined or thread")
  endif()
  target_compile_options(lvrl_build_flags INTERFACE -fsanitize=${LVRL_SANITIZE} -fno-omit-frame-pointer)
  target_link_options(lvrl_build_flags INTERFACE -fsanitize=${LVRL_SANITIZE})
endif()

# One precompiled header for LibTorch and the heavy third-party headers, reused by every target.
add_library(lvrl_pch OBJECT ${PROJECT_SOURCE_DIR}/cmake/pch.cpp)
target_link_libraries(lvrl_pch PUBLIC lvrl_build_flags lvrl::torch nlohmann_json::nlohmann_json
                      spdlog::spdlog fmt::fmt)
target_precompile_headers(lvrl_pch PRIVATE ${PROJECT_SOURCE_DIR}/cmake/pch.h)

function(lvrl_use_pch target)
  target_precompile_headers(${target} REUSE_FROM lvrl_pch)
endfunction()

# lvrl_add_library(NAME SOURCES a.cpp ... DEPS target ...)
# A library folder's one target, `lvrl_<NAME>`. With no sources it is an interface target.
# Subcommands and config sections register themselves from static objects, so executables link the
# libraries whole (lvrl_link_whole).
function(lvrl_add_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  foreach(dep IN LISTS ARG_DEPS)
    if(dep MATCHES "^lvrl_(.*)$" AND NOT TARGET ${dep})
      message(FATAL_ERROR "${name}/ needs ${CMAKE_MATCH_1}/: add it to LVRL_PARTS ('${LVRL_PARTS}')")
    endif()
  endforeach()
  if(ARG_SOURCES)
    add_library(lvrl_${name} STATIC ${ARG_SOURCES})
    target_link_libraries(lvrl_${name} PUBLIC lvrl_build_flags ${ARG_DEPS})
    lvrl_use_pch(lvrl_${name})
  else()
    add_library(lvrl_${name} INTERFACE)
    target_link_libraries(lvrl_${name} INTERFACE lvrl_build_flags ${ARG_DEPS})
  endif()
  set_property(GLOBAL APPEND PROPERTY LVRL_LIBRARIES lvrl_${name})
endfunction()

# Links every lvrl library into `target`, keeping their self-registering objects: the archives go
# whole on the link line first (link options precede libraries), then again as ordinary libraries
# for their usage requirements, where the linker finds nothing left to take.
function(lvrl_link_whole target)
  get_property(libs GLOBAL PROPERTY LVRL_LIBRARIES)
  foreach(lib IN LISTS libs)
    get_target_property(kind ${lib} TYPE)
    if(kind STREQUAL "STATIC_LIBRARY")
      # One SHELL: string per archive: CMake de-duplicates repeated plain options.
      target_link_options(${target} PRIVATE
                          "SHELL:-Wl,--whole-archive $<TARGET_FILE:${lib}> -Wl,--no-whole-archive")
    endif()
    target_link_libraries(${target} PRIVATE ${lib})
  endforeach()
endfunction()
