/* dispatch.c - the only file that looks at CPU features. It fills a cnnc_ctx's kernel table; the
 * table lives in the caller's context, never in a global. The AVX-512 path has its own GEMM micro-kernel
 * and A packer and runs the AVX2 kernels for everything else (Winograd transforms, depthwise, weight
 * gradients, pooled dx, few-row GEMM): every AVX-512 CPU has AVX2 + FMA. */
#include "internal.h"
#include "arch/ukernels.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define CNNC_X86 1
#endif

const char *cnnc_arch_name(int arch) {
    switch (arch) {
    case CNNC_ARCH_GENERIC: return "generic";
    case CNNC_ARCH_AVX2: return "avx2";
    case CNNC_ARCH_AVX512: return "avx512";
    default: return "unknown";
    }
}

int cnnc_cpu_supports(int arch) {
    switch (arch) {
    case CNNC_ARCH_GENERIC: return 1;
#ifdef CNNC_X86
    case CNNC_ARCH_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case CNNC_ARCH_AVX512:
#ifdef CNNC_AVX512_EMULATED
        /* a test build: the AVX-512 files were compiled for AVX2 + FMA (arch/avx512/intrin.h) */
        return cnnc_cpu_supports(CNNC_ARCH_AVX2);
#else
        /* the flags arch/avx512/ is compiled with; the AVX-512 path also runs the AVX2 kernels.
         * __builtin_cpu_supports reports AVX-512 only when the OS saves the zmm and mask registers. */
        __builtin_cpu_init();
        return cnnc_cpu_supports(CNNC_ARCH_AVX2) && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl");
#endif
#endif
    default: return 0;
    }
}

int cnnc_avx512_emulated(void) {
#ifdef CNNC_AVX512_EMULATED
    return 1;
#else
    return 0;
#endif
}

static void set_kernels(cnnc_kernels *k, int arch) {
    k->arch = arch;
    switch (arch) {
#ifdef CNNC_X86
    case CNNC_ARCH_AVX2:
        k->mr = 6; k->nr = 16; k->mc = 144; k->kc = 256; k->nc = 4080;
        k->gemm_ukernel = cnnc_f32_gemm_ukernel_6x16__avx2;
        return;
    case CNNC_ARCH_AVX512: /* NR = 16 as AVX2's: the same B panels; the A block stays 144 x 256 */
        k->mr = 12; k->nr = 16; k->mc = 144; k->kc = 256; k->nc = 4080;
        k->gemm_ukernel = cnnc_f32_gemm_ukernel_12x16__avx512;
        return;
#endif
    default:
        k->arch = CNNC_ARCH_GENERIC;
        k->mr = 6; k->nr = 8; k->mc = 144; k->kc = 256; k->nc = 4096;
        k->gemm_ukernel = cnnc_f32_gemm_ukernel_6x8__generic;
        return;
    }
}

cnnc_gemm_packers cnnc_gemm_packers_for(const cnnc_kernels *k) {
    cnnc_gemm_packers pk = {NULL, NULL};
#ifdef CNNC_X86
    /* The fast packers assume the table's tile; a context whose tile was changed keeps the loops. */
    if (k->arch >= CNNC_ARCH_AVX2 && k->nr == 16) {
        if (k->mr == 6) pk.gather_a = cnnc_f32_pack_gather6__avx2;
        else if (k->mr == 12) pk.gather_a = cnnc_f32_pack_gather12__avx2;
        pk.gather_b = cnnc_f32_pack_gather16__avx2;
    }
#else
    (void)k;
#endif
    return pk;
}

cnnc_winograd_fns cnnc_winograd_fns_for(const cnnc_kernels *k) {
    cnnc_winograd_fns f = {cnnc_f32_wg_in_block__generic, cnnc_f32_wg_out_block__generic, cnnc_pool2x2_for(k)};
#ifdef CNNC_X86
    if (k->arch >= CNNC_ARCH_AVX2) {
        f.in_block = cnnc_f32_wg_in_block__avx2;
        f.out_block = cnnc_f32_wg_out_block__avx2;
    }
#endif
    return f;
}

cnnc_pool2x2_fn cnnc_pool2x2_for(const cnnc_kernels *k) {
#ifdef CNNC_X86
    if (k->arch >= CNNC_ARCH_AVX2) return cnnc_f32_pool2x2_window__avx2;
#else
    (void)k;
#endif
    return cnnc_f32_pool2x2_window__generic;
}

cnnc_conv_dw_row_fn cnnc_conv_dw_row_for(const cnnc_kernels *k) {
#ifdef CNNC_X86
    if (k->arch >= CNNC_ARCH_AVX2) return cnnc_f32_conv_dw_row__avx2;
#else
    (void)k;
#endif
    return cnnc_f32_conv_dw_row__generic;
}

cnnc_optim_span_fn cnnc_optim_span_for(const cnnc_kernels *k) {
#ifdef CNNC_X86
    if (k->arch >= CNNC_ARCH_AVX2) return cnnc_f32_optim_span__avx2;
#else
    (void)k;
#endif
    return cnnc_f32_optim_span__generic;
}

cnnc_pool_dx_image_fn cnnc_pool_dx_image_for(const cnnc_kernels *k) {
#ifdef CNNC_X86
    if (k->arch >= CNNC_ARCH_AVX2) return cnnc_f32_pool_dx_image__avx2;
#else
    (void)k;
#endif
    return cnnc_f32_pool_dx_image__generic;
}

cnnc_pool_dw_tile_fn cnnc_pool_dw_tile_for(const cnnc_kernels *k) {
#ifdef CNNC_X86
    if (k->arch >= CNNC_ARCH_AVX2) return cnnc_f32_pool_dw_tile__avx2;
#else
    (void)k;
#endif
    return cnnc_f32_pool_dw_tile__generic;
}

cnnc_dwc_fns cnnc_dwc_fns_for(const cnnc_kernels *k) {
    cnnc_dwc_fns f = {cnnc_f32_dwc_row__generic, cnnc_f32_dwc_plane_row__generic, cnnc_f32_dwc_wgrad_span__generic};
#ifdef CNNC_X86
    if (k->arch >= CNNC_ARCH_AVX2) {
        f.row = cnnc_f32_dwc_row__avx2;
        f.plane_row = cnnc_f32_dwc_plane_row__avx2;
        f.wgrad_span = cnnc_f32_dwc_wgrad_span__avx2;
    }
#else
    (void)k;
#endif
    return f;
}

cnnc_gemm_small_fns cnnc_gemm_small_for(const cnnc_kernels *k) {
    cnnc_gemm_small_fns f = {4, cnnc_f32_gemm_rows__generic, cnnc_f32_gemm_dots__generic};
#ifdef CNNC_X86
    if (k->arch >= CNNC_ARCH_AVX2) {
        f.rows = cnnc_f32_gemm_rows__avx2;
        f.dots = cnnc_f32_gemm_dots__avx2;
    }
#else
    (void)k;
#endif
    /* below the micro-kernel's tile only: from mr rows on, packing pays */
    if (f.max_m >= k->mr) f.max_m = k->mr - 1;
    return f;
}

int cnnc_ctx_init(cnnc_ctx *ctx, int arch, int nthreads) {
    int use = arch;
    if (use == CNNC_ARCH_AUTO || !cnnc_cpu_supports(use)) {
        use = CNNC_ARCH_GENERIC;
        for (int a = CNNC_ARCH_AVX512; a > CNNC_ARCH_GENERIC; --a)
            if (cnnc_cpu_supports(a)) { use = a; break; }
    }
    set_kernels(&ctx->k, use);
    ctx->nthreads = nthreads < 1 ? 1 : nthreads;
    ctx->pool = NULL;
    return ctx->k.arch;
}
