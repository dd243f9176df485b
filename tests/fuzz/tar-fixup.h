/* A libFuzzer custom mutator for tar inputs: mutate as usual, then
   recompute the checksum of every 512-byte block that looks like a tar
   header, so that mutations of names, types and link names reach the
   extractor instead of dying at the checksum check.  One input in eight
   is left unfixed, so bad checksums are still tried.  */
#ifndef GR_FUZZ_TAR_FIXUP_H
#define GR_FUZZ_TAR_FIXUP_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Bytes before the tar in an input (a target's own parameters).  */
#ifndef TAR_FIXUP_SKIP
#define TAR_FIXUP_SKIP 0
#endif

size_t LLVMFuzzerMutate (uint8_t *data, size_t size, size_t max_size);
size_t LLVMFuzzerCustomMutator (uint8_t *data, size_t size, size_t max_size, unsigned int seed);

static void
tar_fixup_checksums (uint8_t *data, size_t size)
{
  for (size_t off = 0; off + 512 <= size; off += 512)
    {
      uint8_t *h = data + off;
      if (memcmp (h + 257, "ustar", 5) != 0)
        continue;
      memset (h + 148, ' ', 8);
      unsigned sum = 0;
      for (int i = 0; i < 512; i++)
        sum += h[i];
      char tmp[8];
      snprintf (tmp, sizeof tmp, "%06o", sum & 0777777);
      memcpy (h + 148, tmp, 7);
    }
}

size_t
LLVMFuzzerCustomMutator (uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
  size = LLVMFuzzerMutate (data, size, max_size);
  if (seed % 8 != 0 && size > TAR_FIXUP_SKIP)
    tar_fixup_checksums (data + TAR_FIXUP_SKIP, size - TAR_FIXUP_SKIP);
  return size;
}

#endif
