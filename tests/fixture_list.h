/* The fixture names make_fixtures.py wrote (TM_FIXTURES_DIR/fixtures.json),
 * shared by the tests that walk every fixture. Include after cmocka.h. */
#ifndef TM_TESTS_FIXTURE_LIST_H
#define TM_TESTS_FIXTURE_LIST_H

#include <jansson.h>
#include <stdio.h>

/* The JSON array of names; fails the test when it is missing. json_decref() it. */
static json_t *fixture_list(void) {
    char path[1100];
    snprintf(path, sizeof path, "%s/fixtures.json", TM_FIXTURES_DIR);
    json_error_t je;
    json_t *list = json_load_file(path, 0, &je);
    if (!list) fail_msg("%s: %s (run the make_fixtures test first)", path, je.text);
    assert_true(json_is_array(list));
    return list;
}

#endif
