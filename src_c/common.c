/* common.c - error strings and build facts. */
#include "internal.h"

const char *cnnc_strerror(int code) {
    switch (code) {
    case CNNC_OK: return "ok";
    case CNNC_EINVAL: return "invalid argument";
    case CNNC_EWORKSPACE: return "workspace missing or too small";
    case CNNC_EOVERFLOW: return "size overflows int64";
    case CNNC_EFORMAT: return "malformed bundle";
    case CNNC_EVERSION: return "unsupported bundle version";
    case CNNC_ENOMEM: return "out of memory";
    case CNNC_ESTATE: return "model not ready: call cnnc_model_arena_size first, and run a bundle without weights with cnnc_model_run_consts";
    default: return "unknown error";
    }
}
