# grad tests: every backward kernel and the MLA training layer against central
# finite differences of an independent float64 numpy forward (tests/ref/grad_check.py).
add_executable(test_grad test_grad.c)
target_link_libraries(test_grad PRIVATE transmla_core)
add_test(NAME grad_check
         COMMAND ${TM_PYTHON} ${SRC}/tests/ref/grad_check.py $<TARGET_FILE:test_grad> ${CMAKE_CURRENT_BINARY_DIR}/grad_check)
