/* Writes the seed inputs of fuzz_token_set and fuzz_checkpoint: small valid
 * files as transmla writes them, plus variants with an attribute of the
 * wrong type or value, so the fuzzer starts from every branch of the
 * readers. usage: fuzz_h5_seeds CORPUS_DIR (makes token_set/, checkpoint/). */
#include <hdf5.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/base/error.h"
#include "io/token_set.h"
#include "train/checkpoint.h"

static void must(int rc, const char *what) {
    if (rc) {
        fprintf(stderr, "fuzz_h5_seeds: %s: %s\n", what, tm_error());
        exit(1);
    }
}

static void token_sets(const char *dir) {
    int32_t ids[10] = {1, 5, 7, 2, 0, 3, 3, 9, 4, 8};
    uint64_t docs[4] = {0, 3, 5, 10}, samples[3] = {0, 5, 10};
    TokenSet ts = {.ids = ids, .n = 10, .doc_offsets = docs, .n_docs = 3, .vocab_size = 10, .tokenizer = "tok.json",
                   .sources = "a.txt\nb.txt", .kind = "documents", .seed = 7};
    memset(ts.tokenizer_sha256, 'a', 64);
    char path[4200];
    snprintf(path, sizeof path, "%s/documents.h5", dir);
    must(token_set_write(path, &ts), path);
    ts.kind = "samples", ts.seqlen = 5, ts.doc_offsets = samples, ts.n_docs = 2;
    snprintf(path, sizeof path, "%s/samples.h5", dir);
    must(token_set_write(path, &ts), path);
    ts.kind = "joined", ts.seqlen = 0, ts.doc_offsets = docs, ts.n_docs = 1, ts.vocab_size = 70000, docs[1] = 10;
    snprintf(path, sizeof path, "%s/joined_u32.h5", dir);
    must(token_set_write(path, &ts), path);
    ts.n = 0, ts.n_docs = 0, docs[0] = 0;
    snprintf(path, sizeof path, "%s/empty.h5", dir);
    must(token_set_write(path, &ts), path);
}

/* ckpt_save writes SUB/checkpoint-STEP.h5; the seed is DIR/NAME.h5. */
static void save(const char *dir, const char *name, int64_t step, const CkptParam *p, int np, const CkptAttr *a, int na) {
    char sub[4200], from[4300], to[4300];
    snprintf(sub, sizeof sub, "%s/%s", dir, name);
    mkdir(sub, 0755);
    must(ckpt_save(sub, step, p, np, 1, a, na, 0, MPI_COMM_WORLD), sub);
    snprintf(from, sizeof from, "%s/checkpoint-%lld.h5", sub, (long long)step);
    snprintf(to, sizeof to, "%s/%s.h5", dir, name);
    if (rename(from, to) || rmdir(sub)) must(tm_fail("cannot move %s to %s", from, to), name);
}

static void checkpoints(const char *dir) {
    float w[12], m[12], v[12];
    for (int i = 0; i < 12; i++) w[i] = (float)i, m[i] = 0.5f * i, v[i] = 0.25f;
    CkptParam p[2] = {{"model.layers.0.mlp.down_proj.weight", 3, 4, w, m, v}, {"model.norm.weight", 12, 0, w, m, v}};
    CkptAttr a[] = {{.name = "seq_len", .kind = CKPT_I64, .i = 64}, {.name = "seed", .kind = CKPT_I64, .i = -3},
                    {.name = "learning_rate", .kind = CKPT_F64, .f = 1e-4},
                    {.name = "model_type", .kind = CKPT_STR, .s = "llama"},
                    {.name = "total_steps", .kind = CKPT_F64, .f = 3e84}, /* wrong type */
                    {.name = "train_rows", .kind = CKPT_STR, .s = "12"}};
    int na = (int)(sizeof a / sizeof a[0]);
    save(dir, "full", 7, p, 2, a, na);
    save(dir, "partial", 1, p + 1, 1, a, 2); /* only the vector: the matrix is missing */
    p[0].rows = 4, p[0].cols = 3;
    save(dir, "shape", 2, p, 2, a, 4); /* the matrix transposed */
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_h5_seeds CORPUS_DIR\n");
        return 2;
    }
    MPI_Init(&argc, &argv);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/token_set", argv[1]);
    mkdir(dir, 0755);
    token_sets(dir);
    snprintf(dir, sizeof dir, "%s/checkpoint", argv[1]);
    mkdir(dir, 0755);
    checkpoints(dir);
    MPI_Finalize();
    return 0;
}
