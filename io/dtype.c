#include "io/dtype.h"

#include <string.h>

static const struct { TmDType t; const char *name; size_t size; } table[] = {
    {TM_F64, "F64", 8},  {TM_F32, "F32", 4},   {TM_F16, "F16", 2},   {TM_BF16, "BF16", 2},
    {TM_I64, "I64", 8},  {TM_I32, "I32", 4},   {TM_I16, "I16", 2},   {TM_I8, "I8", 1},
    {TM_U64, "U64", 8},  {TM_U32, "U32", 4},   {TM_U16, "U16", 2},   {TM_U8, "U8", 1},
    {TM_BOOL, "BOOL", 1}, {TM_F8_E4M3, "F8_E4M3", 1}, {TM_F8_E5M2, "F8_E5M2", 1},
};
enum { N_TYPES = sizeof table / sizeof table[0] };

TmDType tm_dtype_parse(const char *name) {
    for (int i = 0; i < N_TYPES; i++)
        if (strcmp(table[i].name, name) == 0) return table[i].t;
    return TM_DTYPE_INVALID;
}

const char *tm_dtype_name(TmDType t) {
    for (int i = 0; i < N_TYPES; i++)
        if (table[i].t == t) return table[i].name;
    return "INVALID";
}

size_t tm_dtype_size(TmDType t) {
    for (int i = 0; i < N_TYPES; i++)
        if (table[i].t == t) return table[i].size;
    return 0;
}

int tm_dtype_is_weight_float(TmDType t) { return t == TM_F32 || t == TM_F16 || t == TM_BF16; }
