# grad tests: every backward kernel and the MLA training layer against central
# finite differences of an independent float64 numpy forward (tests/ref/grad_check.py).
add_executable(test_grad test_grad.c)
target_link_libraries(test_grad PRIVATE transmla_core)
add_test(NAME grad_check
         COMMAND ${TM_PYTHON} ${SRC}/tests/ref/grad_check.py $<TARGET_FILE:test_grad> ${CMAKE_CURRENT_BINARY_DIR}/grad_check)

# RoRoPE's rotation fit (convert/rorope_fit.c): objective and gradient against
# an independent float64 numpy oracle, orthogonality of the fitted rotation.
add_executable(test_rorope_fit test_rorope_fit.c)
target_link_libraries(test_rorope_fit PRIVATE transmla_core)
add_test(NAME rorope_fit_check
         COMMAND ${TM_PYTHON} ${SRC}/tests/ref/rorope_fit_check.py $<TARGET_FILE:test_rorope_fit>
                 ${CMAKE_CURRENT_BINARY_DIR}/rorope_fit_check)
