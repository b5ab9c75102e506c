/* The trained model as a Hugging Face folder: every tensor of the model in
 * its source dtype (trained ones rounded from the fp32 masters), the source's
 * config.json and tokenizer files. Replica 0 of each stage writes its
 * stage's shards; world rank 0 the index and the files, config.json last. */
#ifndef TM_TRAIN_SAVE_MODEL_H
#define TM_TRAIN_SAVE_MODEL_H

#include "dist/topology.h"
#include "model/model.h"

/* Collective over the world; 0 or -1 on every rank. */
int train_export(const Topology *t, Model *m, const char *dir, const char *src_dir);

#endif
