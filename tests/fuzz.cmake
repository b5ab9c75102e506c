# libFuzzer targets (clang only), one per parser; README "Fuzzing" lists what
# each checks. The parsers and their few dependencies are compiled again with
# coverage and sanitizers into small static libraries, so the fuzzer sees
# inside them. BLAS stays out; MPI and HDF5 only where the format is HDF5.
# Each target has a smoke test fuzz_<name>_smoke of TM_FUZZ_SECONDS.
set(FUZZ_FLAGS -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all)
set(TM_FUZZ_SECONDS 20 CACHE STRING "seconds each fuzz smoke test runs")

function(tm_fuzz_lib name)
  add_library(${name} STATIC ${ARGN})
  target_include_directories(${name} PUBLIC ${SRC})
  target_compile_options(${name} PRIVATE -fsanitize=fuzzer-no-link ${FUZZ_FLAGS})
endfunction()

# JSON and safetensors: config.json, presets, safetensors headers.
tm_fuzz_lib(fuzz_json_lib ${SRC}/io/base/error.c ${SRC}/io/dtype.c ${SRC}/io/base/checked.c ${SRC}/io/json_util.c
            ${SRC}/io/safetensors.c ${SRC}/io/hf_config.c ${SRC}/io/hf_config_limits.c ${SRC}/cli/preset.c)
target_link_libraries(fuzz_json_lib PUBLIC PkgConfig::JANSSON m) # m: hf_config_attn_scale

# Text: tokenizer.json, encode/decode, chat JSONL.
tm_fuzz_lib(fuzz_text_lib
  ${SRC}/io/utf8.c ${SRC}/io/tokenizer/tok_hash.c ${SRC}/io/tokenizer/tok_bytelevel.c ${SRC}/io/base/sha256.c ${SRC}/io/tokenizer/tokenizer_regex.c
  ${SRC}/io/tokenizer/tokenizer_norm.c ${SRC}/io/tokenizer/tokenizer_pretok.c ${SRC}/io/tokenizer/tokenizer_added.c ${SRC}/io/tokenizer/tokenizer_bpe.c
  ${SRC}/io/tokenizer/tokenizer_decode.c ${SRC}/io/tokenizer/tokenizer_special.c ${SRC}/io/tokenizer/tokenizer_load.c ${SRC}/io/tokenizer/tokenizer.c
  ${SRC}/io/base/line_reader.c ${SRC}/train/rows.c ${SRC}/train/chat.c)
target_link_libraries(fuzz_text_lib PUBLIC fuzz_json_lib PkgConfig::PCRE2 PkgConfig::UTF8PROC PkgConfig::ZLIB
                      PkgConfig::CRYPTO)

# HDF5: token sets and checkpoints (checkpoint.c writes with MPI-IO, so MPI links too).
tm_fuzz_lib(fuzz_h5_lib ${SRC}/io/h5_util.c ${SRC}/io/token_set.c ${SRC}/io/base/path.c ${SRC}/io/base/interrupt.c
            ${SRC}/dist/topology.c ${SRC}/train/checkpoint.c)
target_link_libraries(fuzz_h5_lib PUBLIC fuzz_json_lib PkgConfig::HDF5 MPI::MPI_C)

# tm_fuzz_target(NAME LIB MAX_LEN): fuzz_NAME.c, seeds in fuzz_corpus/NAME,
# fuzz_NAME.dict when there is one. New inputs go to a scratch corpus in the
# build tree; the seeds stay untouched.
function(tm_fuzz_target name lib max_len)
  add_executable(fuzz_${name} fuzz_${name}.c)
  target_compile_options(fuzz_${name} PRIVATE -fsanitize=fuzzer ${FUZZ_FLAGS})
  target_link_options(fuzz_${name} PRIVATE -fsanitize=fuzzer ${FUZZ_FLAGS})
  target_link_libraries(fuzz_${name} PRIVATE ${lib})
  target_compile_definitions(fuzz_${name} PRIVATE TM_SHARED_DIR="${SRC}/../shared")
  set(dict "")
  if(EXISTS ${SRC}/tests/fuzz_${name}.dict)
    set(dict -dict=${SRC}/tests/fuzz_${name}.dict)
  endif()
  set(work ${CMAKE_CURRENT_BINARY_DIR}/fuzz_work/${name})
  file(MAKE_DIRECTORY ${work})
  add_test(NAME fuzz_${name}_smoke
           COMMAND fuzz_${name} -max_total_time=${TM_FUZZ_SECONDS} -max_len=${max_len} -timeout=20 ${dict}
                   ${work} ${SRC}/tests/fuzz_corpus/${name})
  set_tests_properties(fuzz_${name}_smoke PROPERTIES LABELS fuzz TIMEOUT 300
                       ENVIRONMENT "LSAN_OPTIONS=suppressions=${SRC}/tests/fuzz_lsan.supp")
endfunction()

tm_fuzz_target(safetensors fuzz_json_lib 4096)
tm_fuzz_target(config fuzz_json_lib 4096)
tm_fuzz_target(preset fuzz_json_lib 2048)
tm_fuzz_target(tokenizer_load fuzz_text_lib 16384)
tm_fuzz_target(tokenizer_roundtrip fuzz_text_lib 1024)
tm_fuzz_target(chat fuzz_text_lib 4096)
tm_fuzz_target(token_set fuzz_h5_lib 8192)
tm_fuzz_target(checkpoint fuzz_h5_lib 8192)

# The HDF5 seeds: `cmake --build build-fuzz --target fuzz_h5_seeds` and
# `build-fuzz/tests/fuzz_h5_seeds tests/fuzz_corpus` (not part of any run).
add_executable(fuzz_h5_seeds EXCLUDE_FROM_ALL fuzz_h5_seeds.c)
target_link_libraries(fuzz_h5_seeds PRIVATE transmla_core)
