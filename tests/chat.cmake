# chat tests: training rows and chat data (train/rows.c, train/chat.c).
# test_chat: rows edge cases, template names, error lines, gzip input.
tm_unit_test(test_chat)

# The fixture through each tokenizer and template, dumped by chat_dump and
# checked by the independent Python reference (tests/ref/chat_expected.py),
# from the plain file and from a gzip copy made at test time.
add_executable(chat_dump chat_dump.c)
target_link_libraries(chat_dump PRIVATE transmla_core)
foreach(triple "qwen3;auto;chatml" "llama3;auto;llama3" "mistral;mistral;inst")
  list(GET triple 0 tok)
  list(GET triple 1 tmpl)
  list(GET triple 2 expect)
  add_test(NAME chat_ref_${tok}
           COMMAND bash ${SRC}/tests/chat_ref.sh $<TARGET_FILE:chat_dump> ${TM_PYTHON} ${SRC}/../shared/tokenizers/${tok}
                   ${tmpl} ${expect} ${SRC}/tests/data/chat/smoltalk_tiny.jsonl ${CMAKE_CURRENT_BINARY_DIR}/chat_ref_${tok})
  set_tests_properties(chat_ref_${tok} PROPERTIES LABELS unit)
endforeach()
