/* Writing layer tars in tests: with libarchive's writer, or block by block
   for what it won't write (Go-style PAX records, damaged headers).  Files
   go to the including program's `unit_sandbox` / `unit_sandbox_fd`.  */
#ifndef GR_TAR_BUILD_H
#define GR_TAR_BUILD_H

#include "unit.h"

#include <archive.h>
#include <archive_entry.h>
#include <string.h>

#define T0 1600000000

/* ---- writing tars with libarchive ---- */

static inline struct archive *
tar_begin (const char *name)
{
  struct archive *a = archive_write_new ();
  archive_write_set_format_pax (a);
  cleanup_free char *path = xasprintf ("%s/%s", unit_sandbox, name);
  if (archive_write_open_filename (a, path) != ARCHIVE_OK)
    {
      fprintf (stderr, "open %s: %s\n", path, archive_error_string (a));
      abort ();
    }
  return a;
}

static inline void
tar_end (struct archive *a)
{
  CU_ASSERT_EQUAL (archive_write_close (a), ARCHIVE_OK);
  archive_write_free (a);
}

static inline struct archive_entry *
ent (const char *name, mode_t type, mode_t perm)
{
  struct archive_entry *e = archive_entry_new ();
  archive_entry_set_pathname (e, name);
  archive_entry_set_filetype (e, type);
  archive_entry_set_perm (e, perm);
  archive_entry_set_uid (e, 0);
  archive_entry_set_gid (e, 0);
  archive_entry_set_mtime (e, T0, 0);
  return e;
}

static inline void
put (struct archive *a, struct archive_entry *e, const char *data)
{
  size_t len = data ? strlen (data) : 0;
  if (archive_entry_filetype (e) == AE_IFREG && archive_entry_hardlink (e) == NULL)
    archive_entry_set_size (e, (la_int64_t) len);
  if (archive_write_header (a, e) != ARCHIVE_OK)
    {
      fprintf (stderr, "write header %s: %s\n", archive_entry_pathname (e), archive_error_string (a));
      abort ();
    }
  if (len)
    CU_ASSERT_EQUAL (archive_write_data (a, data, len), (la_ssize_t) len);
  archive_entry_free (e);
}

static inline void
add_file (struct archive *a, const char *name, mode_t perm, const char *data)
{
  put (a, ent (name, AE_IFREG, perm), data);
}

static inline void
add_dir (struct archive *a, const char *name, mode_t perm)
{
  put (a, ent (name, AE_IFDIR, perm), NULL);
}

static inline void
add_symlink (struct archive *a, const char *name, const char *target)
{
  struct archive_entry *e = ent (name, AE_IFLNK, 0777);
  archive_entry_set_symlink (e, target);
  put (a, e, NULL);
}

static inline void
add_hardlink (struct archive *a, const char *name, const char *target, mode_t perm)
{
  struct archive_entry *e = ent (name, AE_IFREG, perm);
  archive_entry_set_hardlink (e, target);
  archive_entry_set_size (e, 0);
  put (a, e, NULL);
}

/* ---- writing tars block by block ---- */

struct raw
{
  struct gr_buf b;
};

static inline void
octal (char *field, size_t len, unsigned long long v)
{
  snprintf (field, len, "%0*llo", (int) len - 1, v);
}

static inline void
raw_header (struct raw *r, const char *name, char type, size_t size, const char *linkname)
{
  char h[512];
  memset (h, 0, sizeof (h));
  memcpy (h, name, strnlen (name, 100));
  octal (h + 100, 8, type == '5' ? 0755 : 0644);
  octal (h + 108, 8, 0);
  octal (h + 116, 8, 0);
  octal (h + 124, 12, size);
  octal (h + 136, 12, T0);
  h[156] = type;
  if (linkname)
    memcpy (h + 157, linkname, strnlen (linkname, 100));
  memcpy (h + 257, "ustar", 6);
  memcpy (h + 263, "00", 2);
  memset (h + 148, ' ', 8);
  unsigned sum = 0;
  for (int i = 0; i < 512; i++)
    sum += (unsigned char) h[i];
  snprintf (h + 148, 8, "%06o", sum);
  gr_buf_append (&r->b, h, 512);
}

static inline void
raw_data (struct raw *r, const void *data, size_t len)
{
  gr_buf_append (&r->b, data, len);
  char zero[512] = { 0 };
  if (len % 512)
    gr_buf_append (&r->b, zero, 512 - len % 512);
}

/* A PAX record "<len> key=value\n" (VALUE may hold any byte).  */
static inline void
pax_record (struct gr_buf *p, const char *key, const void *value, size_t vlen)
{
  size_t body = 1 + strlen (key) + 1 + vlen + 1;
  size_t len = body + 1;
  while (snprintf (NULL, 0, "%zu", len) + body != len)
    len++;
  gr_buf_printf (p, "%zu %s=", len, key);
  gr_buf_append (p, value, vlen);
  gr_buf_append (p, "\n", 1);
}

static inline void
raw_pax (struct raw *r, const struct gr_buf *records)
{
  raw_header (r, "PaxHeaders/x", 'x', records->len, NULL);
  raw_data (r, records->data, records->len);
}

static inline void
raw_end (struct raw *r, const char *name)
{
  char zero[1024] = { 0 };
  gr_buf_append (&r->b, zero, sizeof (zero));
  gr_error_t err = NULL;
  cleanup_close int fd = openat (unit_sandbox_fd, name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  CU_ASSERT_FATAL (fd >= 0);
  CU_ASSERT_FATAL (gr_write_all (fd, r->b.data, r->b.len, &err) == 0);
  gr_buf_free (&r->b);
}

#endif
