/* The {"Path","Kind"} objects of a change list (gr_archive_change_new, for
   gr_archive_changes_merged in archive-changes-merged.c): the path as Go's
   encoding/json writes it, each byte that does not start a valid UTF-8
   sequence replaced by U+FFFD.  */
#include "config.h"

#include "archive-internal.h"
#include "archive.h"

/* Append to B the bytes of S with every byte that does not start a valid
   UTF-8 sequence replaced by U+FFFD, as Go's encoding/json does.  */
static void
append_utf8_go (struct gr_buf *b, const char *s, size_t len)
{
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < len)
    {
      unsigned c = p[i];
      size_t n = 0;
      unsigned lo = 0x80, hi = 0xbf;
      if (c < 0x80)
        n = 1;
      else if (c >= 0xc2 && c <= 0xdf)
        n = 2;
      else if (c >= 0xe0 && c <= 0xef)
        {
          n = 3;
          if (c == 0xe0)
            lo = 0xa0;
          else if (c == 0xed)
            hi = 0x9f;
        }
      else if (c >= 0xf0 && c <= 0xf4)
        {
          n = 4;
          if (c == 0xf0)
            lo = 0x90;
          else if (c == 0xf4)
            hi = 0x8f;
        }
      bool ok = n > 0 && i + n <= len;
      for (size_t k = 1; ok && k < n; k++)
        {
          unsigned cc = p[i + k];
          if (k == 1 ? (cc < lo || cc > hi) : (cc < 0x80 || cc > 0xbf))
            ok = false;
        }
      if (ok)
        {
          gr_buf_append (b, p + i, n);
          i += n;
        }
      else
        {
          gr_buf_append (b, "\xef\xbf\xbd", 3);
          i++;
        }
    }
}

json_t *
gr_archive_change_new (const char *path, size_t len, enum gr_change_kind kind)
{
  cleanup_buf struct gr_buf s = { 0 };
  append_utf8_go (&s, path, len);
  json_t *o = json_object ();
  json_object_set_new (o, "Path", json_stringn (s.data ? s.data : "", s.len));
  json_object_set_new (o, "Kind", json_integer (kind));
  return o;
}
