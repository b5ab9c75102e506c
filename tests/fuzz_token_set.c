/* libFuzzer target for HDF5 token sets (io/token_set.c): the input is
 * written to a file and read as a token set (HDF5's own error printing
 * stays off, as token_set_read keeps it). Any input leaves no HDF5 object
 * open, and either fails with a message naming the file, or gives a set
 * whose document offsets run from 0 to n without going back, whose samples
 * all have seqlen ids, and whose ids are below vocab_size. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <hdf5.h>

#include "fuzz_file.h"
#include "io/base/error.h"
#include "io/token_set.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("set.h5", data, size);
    TokenSet ts;
    tm_clear_error();
    int rc = token_set_read(path, &ts);
    CHECK(H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL) == 0); /* nothing left open */
    if (rc != 0) {
        CHECK(strstr(tm_error(), "set.h5") != NULL);
        CHECK(ts.ids == NULL && ts.doc_offsets == NULL);
        return 0;
    }
    CHECK(ts.doc_offsets[0] == 0 && ts.doc_offsets[ts.n_docs] == ts.n);
    for (size_t i = 0; i < ts.n_docs; i++) {
        CHECK(ts.doc_offsets[i] <= ts.doc_offsets[i + 1]);
        if (!strcmp(ts.kind, "samples")) CHECK(ts.doc_offsets[i + 1] - ts.doc_offsets[i] == (uint64_t)ts.seqlen);
    }
    for (size_t i = 0; i < ts.n; i++) CHECK(ts.ids[i] >= 0 && ts.ids[i] < ts.vocab_size);
    CHECK(strlen(ts.tokenizer_sha256) == 64 && ts.tokenizer && ts.sources);
    CHECK(ts.add_special_tokens == 0 || ts.add_special_tokens == 1);
    token_set_free(&ts);
    return 0;
}
