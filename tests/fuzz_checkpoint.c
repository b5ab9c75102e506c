/* libFuzzer target for reading training checkpoints (train/checkpoint.c):
 * the input is written to a file, whose root attributes are read as the
 * trainer reads them on resume (step, seed and the run's shape as int64,
 * the learning rate as float64, the model type as a string) and whose /params, /adam_m and
 * /adam_v datasets are loaded for two fixed parameters. Every read either
 * fails with a message naming the file or fills exactly its destination
 * (ASan checks the bounds; the guard words after each buffer stay intact),
 * and no HDF5 object stays open. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "fuzz_file.h"
#include "io/base/error.h"
#include "train/checkpoint.h"

static const char *const i64_names[] = {"seq_len",    "global_batch", "total_steps",     "warmup_steps",
                                        "seed",       "train_rows",   "train_labels",    "trained_elements"};

static void failed_with_path(void) { CHECK(strstr(tm_error(), "ckpt.h5") != NULL); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("ckpt.h5", data, size);
    for (size_t i = 0; i < sizeof i64_names / sizeof i64_names[0]; i++) {
        int64_t v;
        tm_clear_error();
        if (ckpt_read_i64(path, i64_names[i], &v)) failed_with_path();
    }
    double lr;
    tm_clear_error();
    if (ckpt_read_f64(path, "learning_rate", &lr)) failed_with_path();
    char *s = NULL;
    tm_clear_error();
    if (ckpt_read_str(path, "model_type", &s)) failed_with_path();
    else CHECK(s != NULL);
    free(s);

    /* [rows * cols] floats each, and one guard word after */
    enum { GUARD = 0x7a5e11 };
    float w[2][13], m[2][13], v[2][13];
    CkptParam p[2] = {{"model.layers.0.mlp.down_proj.weight", 3, 4, w[0], m[0], v[0]},
                      {"model.norm.weight", 12, 0, w[1], m[1], v[1]}};
    for (int i = 0; i < 2; i++) w[i][12] = m[i][12] = v[i][12] = (float)GUARD;
    tm_clear_error();
    if (ckpt_load_params(path, p, 2)) failed_with_path();
    CHECK(H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL) == 0); /* nothing left open */
    for (int i = 0; i < 2; i++) CHECK(w[i][12] == (float)GUARD && m[i][12] == (float)GUARD && v[i][12] == (float)GUARD);
    return 0;
}
