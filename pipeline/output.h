/* The output folder and the run's report: a temporary folder renamed into
 * place only when complete, and the summary printed at the end. */
#ifndef TM_PIPELINE_OUTPUT_H
#define TM_PIPELINE_OUTPUT_H

#include <stdint.h>

#include <jansson.h>

/* mkdir -p of the folder that will hold `path`, so a bad location fails now. */
int output_make_parents(const char *path);
/* Create `tmp` afresh (removing a leftover of the same name). */
int output_make_temp(const char *tmp);
void output_remove_tree(const char *path);
/* Rename tmp to final, replacing an existing final folder. */
int output_finish(const char *tmp, const char *final);

/* Peak resident set of this process so far. */
uint64_t output_peak_rss(void);
/* The perplexity table (and the freqfold search) of a report's "ppl". */
void output_print_ppl(json_t *ppl, int freqfold);

#endif
