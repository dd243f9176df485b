/* libFuzzer target: the tar-split disassembler (gr_tarsplit_feed/finish)
   on arbitrary bytes fed in input-chosen chunk sizes.  Asserted: no crash
   (ASan/UBSan), no leaked fd or memory, and a tar it accepts reassembles
   without crashing either (from an empty root: file entries then fail
   cleanly).  */
#include "config.h"

#include "tarsplit.h"
#define TAR_FIXUP_SKIP 1
#include "tar-fixup.h"

#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static int
lowest_free_fd (void)
{
  int fd = dup (0);
  close (fd);
  return fd;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  gr_error_t err = NULL;
  struct gr_tarsplit *ts = NULL;
  int free_fd = lowest_free_fd ();
  int out = memfd_create ("ts", MFD_CLOEXEC);
  int ok = -1;
  size_t chunk = 1;

  if (out < 0)
    abort ();
  if (size > 0)
    {
      /* First byte: the chunk size (1..256), the way a socket may cut it.  */
      chunk = (size_t) data[0] + 1;
      data++;
      size--;
    }
  if (gr_tarsplit_new (&ts, out, &err) == 0)
    {
      size_t off = 0;
      ok = 0;
      while (off < size && ok == 0)
        {
          size_t n = size - off < chunk ? size - off : chunk;
          ok = gr_tarsplit_feed (ts, data + off, n, &err);
          off += n;
        }
      if (ok == 0)
        ok = gr_tarsplit_finish (ts, &err);
      (void) gr_tarsplit_unpacked_size (ts);
      (void) gr_tarsplit_entries (ts);
      gr_tarsplit_free (ts);
    }
  gr_error_release (&err);
  if (ok == 0)
    {
      int root = open ("/var/empty", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (root < 0)
        root = open ("/proc/self/fdinfo", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      int sink = open ("/dev/null", O_WRONLY | O_CLOEXEC);
      if (root >= 0 && sink >= 0 && lseek (out, 0, SEEK_SET) == 0)
        {
          (void) gr_tarsplit_assemble (sink, out, root, &err);
          gr_error_release (&err);
        }
      if (root >= 0)
        close (root);
      if (sink >= 0)
        close (sink);
    }
  close (out);
  if (lowest_free_fd () != free_fd)
    {
      fprintf (stderr, "FD LEAK in tar-split\n");
      abort ();
    }
  return 0;
}
