/* finetune's --recompute: as given, or auto (the default): keep every
 * layer's activations (off: a quarter fewer layer FLOPs, 1.3-1.4x the
 * tokens/s) when they fit the memory each node lets the job use, else
 * recompute each layer. */
#ifndef TM_TRAIN_RECOMPUTE_AUTO_H
#define TM_TRAIN_RECOMPUTE_AUTO_H

#include <stddef.h>

#include "dist/topology.h"
#include "model/model.h"
#include "train/params.h"
#include "train/teacher.h"

#define RECOMPUTE_AUTO (-1) /* a --recompute setting beside 1 (on) and 0 (off) */

/* --recompute's text (auto, on or off) into *setting; 0, or -1 with tm_error(). */
int recompute_parse(const char *text, int *setting);

/* The setting made a choice, 1 (recompute) or 0, after the model part, its
 * ParamSet and any distillation teacher (NULL: none) are loaded: on and
 * off as given; auto on the GPU (whose step always recomputes) on; auto on
 * the CPU collective over the world, the same on every rank (off only if every node fits; the rule in
 * recompute_auto.c). `note` (n bytes) says which and why for the start line,
 * with the figures of the node that decided. */
int recompute_resolve(int setting, int gpu, const Topology *t, const Model *m, const ParamSet *ps,
                      const Teacher *teacher, int B, int T, int K, char *note, size_t n);

#endif
