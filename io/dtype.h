/* Element types as safetensors names them. */
#ifndef TM_IO_DTYPE_H
#define TM_IO_DTYPE_H

#include <stddef.h>

typedef enum {
    TM_DTYPE_INVALID = 0,
    TM_F64, TM_F32, TM_F16, TM_BF16,
    TM_I64, TM_I32, TM_I16, TM_I8, TM_U64, TM_U32, TM_U16, TM_U8, TM_BOOL,
    TM_F8_E4M3, TM_F8_E5M2,
} TmDType;

/* "F32" -> TM_F32; TM_DTYPE_INVALID for names safetensors does not define. */
TmDType tm_dtype_parse(const char *name);
const char *tm_dtype_name(TmDType t);
size_t tm_dtype_size(TmDType t);
/* Float types the engine computes from (weights stay in these in memory). */
int tm_dtype_is_weight_float(TmDType t);

#endif
