/*
 * fuzz_codes.c - libFuzzer target for the companion codes file parser
 * (src/store/codes.c).
 *
 * The input is the start of a codes file: it is padded with zeros to the
 * header size, and a data area of zeros follows whose length comes from the
 * input's last two bytes (0..64 KB), so that the size checks see both
 * sufficient and short files.  The harness then repairs the header and
 * model checksums (computed as the writer would) so the fuzzer gets past
 * them into the field and geometry checks.  On a successful open the
 * invariants codes.h promises are re-checked (geometry consistent, every
 * row's block inside the mapping), and the data checksum is verified
 * (which reads every row).
 *
 * Build: CC=clang cmake -S . -B build-fuzz -DCLIPDEX_FUZZ=ON
 *        cmake --build build-fuzz --target fuzz_codes
 * Run:   build-fuzz/fuzz_codes -max_total_time=60 fuzz/seeds/codes
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "store/codes.c"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t extra = size >= 2 ? ((size_t)data[size - 2] << 8 | data[size - 1]) : 0;
    size_t total = HDR_BYTES + extra;
    uint8_t *file = calloc(1, total);
    if (!file) return 0;
    memcpy(file, data, size < HDR_BYTES ? size : HDR_BYTES);
    /* Repair the checksums the way the writer computes them. */
    uint64_t mb = rd64(file, H_MODEL_BYTES);
    if (mb <= extra) wr32(file, H_MODEL_CRC, crc(0, file + HDR_BYTES, mb));
    wr32(file, H_CRC, crc(0, file, H_CRC));
    int fd = memfd_create("codes", 0);
    if (fd < 0) { free(file); return 0; }
    if (write(fd, file, total) != (ssize_t)total) { close(fd); free(file); return 0; }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    codes_file *cf = NULL;
    if (codes_open(path, &cf) == CDX_OK) {
        const codes_meta *m = codes_meta_get(cf);
        if (meta_problem(m)) abort();
        uint64_t end = data_offset(m) + blocks_for(m->rows) * codes_block_bytes(m);
        if (end > codes_file_bytes(cf) || end > total) abort();
        (void)codes_verify(cf);
        codes_close(cf);
    }
    close(fd);
    free(file);
    return 0;
}
