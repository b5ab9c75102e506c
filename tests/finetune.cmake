# Fine-tuning end to end (tests/finetune_*.sh).
add_test(NAME finetune_mpi COMMAND bash ${SRC}/tests/finetune_mpi.sh $<TARGET_FILE:transmla> ${TM_PYTHON}
                                   ${MPIEXEC_EXECUTABLE} ${FIXTURES})
set_tests_properties(finetune_mpi PROPERTIES FIXTURES_REQUIRED golden LABELS mpi TIMEOUT 900 PROCESSORS 2)
if(TRANSMLA_SANITIZE)
  set_tests_properties(finetune_mpi PROPERTIES ENVIRONMENT "ASAN_OPTIONS=detect_leaks=0")
endif()
add_test(NAME finetune_distill COMMAND bash ${SRC}/tests/finetune_distill.sh $<TARGET_FILE:transmla> ${TM_PYTHON}
                                       ${MPIEXEC_EXECUTABLE} ${FIXTURES})
set_tests_properties(finetune_distill PROPERTIES FIXTURES_REQUIRED golden LABELS mpi TIMEOUT 300 PROCESSORS 2)
add_test(NAME finetune_chat COMMAND bash ${SRC}/tests/finetune_chat.sh $<TARGET_FILE:transmla> ${TM_PYTHON}
                                    ${FIXTURES} ${SRC}/../shared)
set_tests_properties(finetune_chat PROPERTIES FIXTURES_REQUIRED golden TIMEOUT 600)
add_test(NAME finetune_bytelm COMMAND bash ${SRC}/tests/finetune_bytelm.sh $<TARGET_FILE:transmla> ${TM_PYTHON})
set_tests_properties(finetune_bytelm PROPERTIES LABELS slow TIMEOUT 900 PROCESSORS 2)
add_test(NAME finetune_gemma2 COMMAND bash ${SRC}/tests/finetune_gemma2.sh $<TARGET_FILE:transmla> ${TM_PYTHON}
                                      ${SRC}/../shared ${FIXTURES})
set_tests_properties(finetune_gemma2 PROPERTIES LABELS e2e FIXTURES_REQUIRED golden TIMEOUT 600 PROCESSORS 2)
if(TRANSMLA_SANITIZE)
  set_tests_properties(finetune_chat finetune_gemma2 finetune_distill PROPERTIES ENVIRONMENT "ASAN_OPTIONS=detect_leaks=0")
endif()
