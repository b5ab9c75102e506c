/* The flags that name a command's tokens, resolved into a TokenSource:
 * --PREFIX-tokens FILE (raw ids or HDF5 token set), or
 * --PREFIX-dataset NAME --PREFIX-data-path PATH [--PREFIX-split S]. */
#ifndef TM_CLI_TOKEN_FLAGS_H
#define TM_CLI_TOKEN_FLAGS_H

#include "io/token_source.h"

typedef struct {
    const char *tokens, *dataset, *data_path, *split;
} TokenFlags;

/* Fills out from f; flag names in errors are "--" prefix "-tokens" etc. (prefix
 * "" gives "--tokens", "--dataset"). dataset "tokens" means the file. Returns
 * 0 with *present = 0 when nothing was named. */
int token_flags_resolve(const char *prefix, const TokenFlags *f, const char *text_field, TmTokenDType dt,
                        TokenSource *out, int *present);

#endif
