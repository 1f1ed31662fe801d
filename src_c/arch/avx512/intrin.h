/* intrin.h - the AVX-512 intrinsics for the files of arch/avx512/.
 *
 * A normal build compiles these files with -mavx512f -mavx512dq -mavx512bw -mavx512vl -mfma and takes the
 * compiler's <immintrin.h>; dispatch runs them only on a CPU (and OS) with those features.
 *
 * A test build (setup.py with CNNC_AVX512_EMULATION=1, never a release) defines CNNC_AVX512_EMULATED and
 * compiles them with -mavx2 -mfma against SIMDe's AVX-512 header instead, which implements each 512-bit
 * intrinsic with two AVX2 halves (an FMA stays fused). That is how the AVX-512 path's loops, tiles and
 * epilogues run the test suite on a machine without AVX-512. SIMDe's emulated masked stores write every
 * lane, so these files use no masked memory operations. */
#ifndef CNNC_ARCH_AVX512_INTRIN_H
#define CNNC_ARCH_AVX512_INTRIN_H
#ifdef CNNC_AVX512_EMULATED
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#else
#include <immintrin.h>
#endif
#endif
