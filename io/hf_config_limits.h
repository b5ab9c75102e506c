/* Sanity limits of a parsed config.json: each size field and the products
 * the program allocates by, so that a corrupt or hostile config is refused
 * with one line naming the field instead of an allocation of terabytes. */
#ifndef TM_IO_HF_CONFIG_LIMITS_H
#define TM_IO_HF_CONFIG_LIMITS_H

#include "io/hf_config.h"

/* Largest model accepted: 2^42 parameters (4.4e12; real models are far below). */
#define TM_CONFIG_MAX_PARAMS 0x1p42

/* 0, or -1 with "FILE: field 'KEY' ..." recorded. */
int hf_config_check_limits(const char *file, const ModelConfig *c);

#endif
