# checkpoint tests: train/checkpoint.c under mpirun at 1, 2 and 4 ranks (2
# stages x 2 replicas at 4), and a rank killed in the middle of a save.
tm_mpi_test(test_checkpoint 1 2 4)
set(TM_CKPT_ENV "OMP_NUM_THREADS=1;OPENBLAS_NUM_THREADS=1;TRANSMLA_CKPT_BLOCK_BYTES=200")
add_test(NAME checkpoint_crash
         COMMAND bash ${SRC}/tests/checkpoint_crash.sh $<TARGET_FILE:test_checkpoint> ${MPIEXEC_EXECUTABLE})
set_tests_properties(checkpoint_crash PROPERTIES LABELS mpi PROCESSORS 2 TIMEOUT 120)
if(TRANSMLA_SANITIZE)
  # as for the other MPI tests (tests/CMakeLists.txt): no leak checking under Open MPI
  set(TM_CKPT_ENV "${TM_CKPT_ENV};ASAN_OPTIONS=detect_leaks=0")
endif()
set_tests_properties(test_checkpoint_np1 test_checkpoint_np2 test_checkpoint_np4 checkpoint_crash PROPERTIES
                     ENVIRONMENT "${TM_CKPT_ENV}")
