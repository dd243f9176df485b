/* tar-split: the metadata dockerd keeps per layer (tar-split.json.gz) to
   rebuild the exact layer tar from the layer's files, as
   github.com/vbatts/tar-split does (storage.Entry JSON lines, gzip'd).

   type 2 ("segment") entries hold raw bytes of the tar (headers incl. PAX
   and GNU long-name records, padding, end blocks, trailing bytes) as
   base64; type 1 ("file") entries name a file (name, or name_raw as
   base64 when not valid UTF-8), its size and, as payload, the 8-byte
   big-endian CRC64-ISO of its content (null when size is 0).  */
#ifndef GR_TARSPLIT_H
#define GR_TARSPLIT_H

#include "utils.h"

struct gr_tarsplit;

/* A streaming disassembler that writes gzip'd JSON lines to OUT_FD.  The
   fd is borrowed.  Memory stays bounded whatever the tar size (only the
   set of file names is kept, to refuse duplicates as tar-split does).  */
int gr_tarsplit_new (struct gr_tarsplit **out, int out_fd, gr_error_t *err);
/* Feed the next LEN bytes of the uncompressed tar stream.  Fails on a
   malformed tar (bad checksum, bad size field, duplicate path...).  */
int gr_tarsplit_feed (struct gr_tarsplit *ts, const void *buf, size_t len, gr_error_t *err);
/* End of stream: fails if the tar was truncated (inside a header or a
   file's content); writes the trailing bytes and the gzip trailer.  */
int gr_tarsplit_finish (struct gr_tarsplit *ts, gr_error_t *err);
/* Sum of the size fields of the entries the way moby's archive.UnpackLayer
   accounts them (vfs' ApplyDiff size): every entry except whiteouts.  */
int64_t gr_tarsplit_unpacked_size (const struct gr_tarsplit *ts);
/* Number of entries (file entries) seen so far.  */
uint64_t gr_tarsplit_entries (const struct gr_tarsplit *ts);
void gr_tarsplit_free (struct gr_tarsplit *ts);

/* Rebuild the tar stream into OUT_FD from the gzip'd tar-split read from
   TARSPLIT_FD and the files of the layer root ROOT_FD (opened with
   RESOLVE_IN_ROOT), checking each file's CRC64 as dockerd does.  */
int gr_tarsplit_assemble (int out_fd, int tarsplit_fd, int root_fd, gr_error_t *err);

/* CRC64 with the ISO polynomial (Go's crc64.MakeTable(crc64.ISO)).  */
uint64_t gr_crc64_iso_update (uint64_t crc, const void *data, size_t len);

#endif
