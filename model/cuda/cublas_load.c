/* cuBLAS opened at run time (cublas_load.h). */
#include "model/cuda/cublas_load.h"

#include <dlfcn.h>

#include "io/base/error.h"

#define STR_(x) #x
#define STR(x) STR_(x)
#define CUBLAS_SONAME "libcublas.so." STR(CUBLAS_VER_MAJOR)

static CublasApi api;
static int loaded; /* 1: api filled; -1: the open failed */

static int fill(void *lib) {
    struct {
        void **slot;
        const char *name;
    } syms[] = {{(void **)&api.create, "cublasCreate_v2"},       {(void **)&api.destroy, "cublasDestroy_v2"},
                {(void **)&api.set_stream, "cublasSetStream_v2"}, {(void **)&api.gemm_ex, "cublasGemmEx"},
                {(void **)&api.dsyrk, "cublasDsyrk_v2"},
                {(void **)&api.status_string, "cublasGetStatusString"}};
    for (size_t i = 0; i < sizeof syms / sizeof *syms; i++)
        if (!(*syms[i].slot = dlsym(lib, syms[i].name)))
            return tm_fail("--device cuda: %s has no %s", CUBLAS_SONAME, syms[i].name);
    return 0;
}

const CublasApi *cublas_api(void) {
    if (loaded == 0) {
        void *lib = dlopen(CUBLAS_SONAME, RTLD_NOW | RTLD_LOCAL);
        if (!lib)
            tm_fail("--device cuda: cannot open %s (%s): put CUDA's lib64 on LD_LIBRARY_PATH", CUBLAS_SONAME,
                    dlerror());
        loaded = lib && !fill(lib) ? 1 : -1;
    }
    if (loaded < 0) tm_fail("--device cuda: %s could not be used", CUBLAS_SONAME);
    return loaded > 0 ? &api : NULL;
}
