/* winograd_tx.h - the per-tile transforms of Winograd's F(2x2, 3x3) (winograd.c), over a block of up to
 * WG_CB channels. One source, compiled by winograd.c for any CPU and by arch/<isa>/f32_winograd.c with
 * that ISA's flags; dispatch.c picks the build. Only additions and subtractions, in one fixed order, so
 * every build gives the same bits. */
#ifndef CNNC_WINOGRAD_TX_H
#define CNNC_WINOGRAD_TX_H
#include <stdint.h>
#include <string.h>

#define WG_CB 32 /* channels per block: the loops run over them and vectorise */

/* V[xi][c] = (B^T d B)[xi] for the 4x4 input block d[e][c] = dp[e][c] (e = 4 i + j), c < cn, stored at
 * dst[xi * stride + c]. Returns 1 when the sum of a channel's 16 values is not finite: the block holds
 * an infinity or NaN (each input reaches some value through additions alone, so it makes the sum
 * infinite or NaN), or, rarely, the values overflow. Local arrays, loops over the channels: compilers
 * vectorise them (the ISA builds may replace this with intrinsics doing the same operations). */
static inline int wg_in_block(const float *const *dp, int64_t cn, float *restrict dst, int64_t stride) {
    float t[16][WG_CB], a[16][WG_CB], chk[WG_CB];
    for (int j = 0; j < 4; ++j) /* t = B^T d */
        for (int64_t c = 0; c < cn; ++c) {
            const float d0 = dp[j][c], d1 = dp[4 + j][c], d2 = dp[8 + j][c], d3 = dp[12 + j][c];
            t[j][c] = d0 - d2;
            t[4 + j][c] = d1 + d2;
            t[8 + j][c] = d2 - d1;
            t[12 + j][c] = d1 - d3;
        }
    for (int i = 0; i < 4; ++i) /* V = t B */
        for (int64_t c = 0; c < cn; ++c) {
            const float t0 = t[4 * i][c], t1 = t[4 * i + 1][c], t2 = t[4 * i + 2][c], t3 = t[4 * i + 3][c];
            a[4 * i][c] = t0 - t2;
            a[4 * i + 1][c] = t1 + t2;
            a[4 * i + 2][c] = t2 - t1;
            a[4 * i + 3][c] = t1 - t3;
        }
    for (int xi = 0; xi < 16; ++xi) memcpy(dst + xi * stride, a[xi], (size_t)cn * sizeof(float));
    for (int64_t c = 0; c < cn; ++c)
        chk[c] = (((a[0][c] + a[1][c]) + (a[2][c] + a[3][c])) + ((a[4][c] + a[5][c]) + (a[6][c] + a[7][c]))) +
                 (((a[8][c] + a[9][c]) + (a[10][c] + a[11][c])) + ((a[12][c] + a[13][c]) + (a[14][c] + a[15][c])));
    uint32_t bad = 0;
    for (int64_t c = 0; c < cn; ++c) {
        uint32_t bits;
        memcpy(&bits, &chk[c], sizeof bits);
        bad |= (bits & 0x7f800000u) == 0x7f800000u;
    }
    return bad != 0;
}

/* o[2 i + j][c] = (A^T m A)[i][j] for the 4x4 block m[xi][c] = src[xi * stride + c], c < cn. */
static inline void wg_out_block(const float *restrict src, int64_t stride, int64_t cn, float o[4][WG_CB]) {
    float r[8][WG_CB];
    for (int j = 0; j < 4; ++j) { /* r = A^T m */
        const float *a0 = src + j * stride, *a1 = src + (4 + j) * stride;
        const float *a2 = src + (8 + j) * stride, *a3 = src + (12 + j) * stride;
        for (int64_t c = 0; c < cn; ++c) {
            r[j][c] = a0[c] + a1[c] + a2[c];
            r[4 + j][c] = a1[c] - a2[c] - a3[c];
        }
    }
    for (int i = 0; i < 2; ++i) /* o = r A */
        for (int64_t c = 0; c < cn; ++c) {
            const float b0 = r[4 * i][c], b1 = r[4 * i + 1][c], b2 = r[4 * i + 2][c], b3 = r[4 * i + 3][c];
            o[2 * i][c] = b0 + b1 + b2;
            o[2 * i + 1][c] = b1 - b2 - b3;
        }
}

#endif
