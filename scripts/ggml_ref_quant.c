/*
 * ggml_ref_quant: round-trips f32 data through ggml's own quantizer, for comparing tenpak's
 * ggml-type quantizers with ggml's (BENCHMARKS.md, "tpk's ggml quantizers against ggml's").
 *
 *   ggml_ref_quant TYPE N_PER_ROW IN.f32 OUT.f32
 *
 * IN.f32 is raw little-endian f32, a whole number of rows of N_PER_ROW elements. Every row is
 * quantized with ggml_quantize_chunk and no importance matrix (the call llama-quantize makes
 * without --imatrix), dequantized with the type's to_float, and written to OUT.f32.
 *
 * This file is tenpak's own code; it only calls ggml's public API. It is built against a
 * llama.cpp checkout fetched at run time by scripts/llamacpp-check.sh (never part of CI):
 *
 *   cc -O2 -o ggml_ref_quant scripts/ggml_ref_quant.c -I$LLAMA/ggml/include \
 *      -L$LLAMA/build/bin -lggml-base -Wl,-rpath,$LLAMA/build/bin
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ggml.h"

static int find_type(const char *name, enum ggml_type *out) {
    for (int t = 0; t < GGML_TYPE_COUNT; t++) {
        const char *n = ggml_type_name((enum ggml_type)t);
        if (n != NULL && strcasecmp(n, name) == 0) {
            *out = (enum ggml_type)t;
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s TYPE N_PER_ROW IN.f32 OUT.f32\n", argv[0]);
        return 2;
    }
    enum ggml_type type;
    if (!find_type(argv[1], &type)) {
        fprintf(stderr, "unknown ggml type %s\n", argv[1]);
        return 2;
    }
    long n_per_row = strtol(argv[2], NULL, 10);
    if (n_per_row <= 0 || n_per_row % ggml_blck_size(type) != 0) {
        fprintf(stderr, "N_PER_ROW %ld is not a multiple of the %s block size %ld\n", n_per_row,
                argv[1], (long)ggml_blck_size(type));
        return 2;
    }
    if (ggml_quantize_requires_imatrix(type)) {
        fprintf(stderr, "%s needs an importance matrix\n", argv[1]);
        return 2;
    }
    FILE *f = fopen(argv[3], "rb");
    if (f == NULL) {
        perror(argv[3]);
        return 1;
    }
    if (fseek(f, 0, SEEK_END) != 0) {
        perror(argv[3]);
        return 1;
    }
    long bytes = ftell(f);
    rewind(f);
    if (bytes <= 0 || bytes % (long)(4 * n_per_row) != 0) {
        fprintf(stderr, "%s: %ld bytes is not a whole number of rows\n", argv[3], bytes);
        return 1;
    }
    long n = bytes / 4;
    long nrows = n / n_per_row;
    float *x = malloc((size_t)bytes);
    float *y = malloc((size_t)bytes);
    size_t row_size = ggml_row_size(type, n_per_row);
    char *q = malloc(row_size * (size_t)nrows);
    if (x == NULL || y == NULL || q == NULL) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    if (fread(x, 4, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "%s: short read\n", argv[3]);
        return 1;
    }
    fclose(f);

    size_t written = ggml_quantize_chunk(type, x, q, 0, nrows, n_per_row, NULL);
    if (written != row_size * (size_t)nrows) {
        fprintf(stderr, "ggml_quantize_chunk wrote %zu bytes, expected %zu\n", written,
                row_size * (size_t)nrows);
        return 1;
    }
    const struct ggml_type_traits *tr = ggml_get_type_traits(type);
    if (tr->to_float == NULL) {
        fprintf(stderr, "%s has no to_float\n", argv[1]);
        return 1;
    }
    for (long r = 0; r < nrows; r++) {
        tr->to_float(q + (size_t)r * row_size, y + r * n_per_row, n_per_row);
    }

    FILE *o = fopen(argv[4], "wb");
    if (o == NULL || fwrite(y, 4, (size_t)n, o) != (size_t)n || fclose(o) != 0) {
        perror(argv[4]);
        return 1;
    }
    free(x);
    free(y);
    free(q);
    return 0;
}
