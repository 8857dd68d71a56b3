# Every dependency becomes an imported target; nothing below refers to raw paths or flags.
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
find_package(Torch REQUIRED)
# LibTorch from 2.12 on refuses to compile below C++20 (its headers #error); Debian's 1.13 is C++17.
if(Torch_VERSION VERSION_GREATER_EQUAL 2.12)
  set(CMAKE_CXX_STANDARD 20)
endif()
find_package(yaml-cpp REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(CLI11 REQUIRED)
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)

if("video" IN_LIST LVRL_PARTS)
  pkg_check_modules(FFMPEG REQUIRED IMPORTED_TARGET libavformat libavcodec libavutil libswscale)
endif()
if("cache" IN_LIST LVRL_PARTS)
  pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET hiredis)
endif()
pkg_check_modules(UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)

find_path(XXHASH_INCLUDE_DIR xxhash.h REQUIRED)
find_library(XXHASH_LIBRARY xxhash REQUIRED)
add_library(lvrl::xxhash UNKNOWN IMPORTED)
set_target_properties(lvrl::xxhash PROPERTIES IMPORTED_LOCATION ${XXHASH_LIBRARY}
                      INTERFACE_INCLUDE_DIRECTORIES ${XXHASH_INCLUDE_DIR})

# Torch's imported target carries its ABI flag; wrap it with the include path its config forgets.
add_library(lvrl::torch INTERFACE IMPORTED)
target_link_libraries(lvrl::torch INTERFACE ${TORCH_LIBRARIES})
target_include_directories(lvrl::torch SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS})

# CUDA builds come from a PyTorch 2.x install whose Torch config sets CAFFE2_USE_CUDA / TORCH_CUDA_LIBRARIES.
if(LVRL_CUDA STREQUAL "auto")
  if(TORCH_CUDA_LIBRARIES OR CAFFE2_USE_CUDA)
    set(LVRL_WITH_CUDA ON)
  else()
    set(LVRL_WITH_CUDA OFF)
  endif()
else()
  set(LVRL_WITH_CUDA ${LVRL_CUDA})
endif()
if(LVRL_WITH_CUDA)
  find_package(CUDAToolkit REQUIRED)
  find_library(NCCL_LIBRARY nccl REQUIRED)
  find_path(NCCL_INCLUDE_DIR nccl.h REQUIRED)
  add_library(lvrl::nccl UNKNOWN IMPORTED)
  set_target_properties(lvrl::nccl PROPERTIES IMPORTED_LOCATION ${NCCL_LIBRARY}
                        INTERFACE_INCLUDE_DIRECTORIES ${NCCL_INCLUDE_DIR})
endif()
message(STATUS "lvrl: Torch ${Torch_VERSION}, CUDA paths ${LVRL_WITH_CUDA}, sanitizer '${LVRL_SANITIZE}'")
