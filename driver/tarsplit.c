#include "config.h"

/* A streaming tar-split disassembler and assembler.

   The parser follows the tar reader tar-split forks from Go's archive/tar
   (the one dockerd 20.10 runs while pulling): the same header validation
   (checksum, numeric fields), the same name derivation (ustar/star
   prefix, PAX `path`, GNU long names, legacy trailing-slash dirs), the
   same end-of-archive rules, and the same entry sequence: one segment of
   raw bytes before every file entry (padding of the previous entry, meta
   headers, the header itself), the file entry after its content, the
   end blocks as one segment, then everything after them.  */

#include "tarsplit.h"

#include "fsutil.h"

#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <string.h>
#include <zlib.h>

#define BLOCK 512
#define META_MAX (1 << 20)      /* PAX / GNU long-name data, as Go's archive/tar */
#define TRAILER_CHUNK (1 << 20) /* bytes after the end blocks, per segment */

/* ---------- CRC64-ISO ---------- */

/* Slicing-by-8 (as Go's hash/crc64): crc_table[k][b] is the CRC of byte b
   followed by k zero bytes, so eight input bytes cost eight lookups and no
   serial dependency between them.  */
static uint64_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void
crc_init (void)
{
  const uint64_t poly = 0xD800000000000000ULL; /* ISO 3309, reversed */
  for (unsigned i = 0; i < 256; i++)
    {
      uint64_t c = i;
      for (int j = 0; j < 8; j++)
        c = (c & 1) ? (c >> 1) ^ poly : c >> 1;
      crc_table[0][i] = c;
    }
  for (unsigned i = 0; i < 256; i++)
    for (int k = 1; k < 8; k++)
      crc_table[k][i] = crc_table[0][crc_table[k - 1][i] & 0xff] ^ (crc_table[k - 1][i] >> 8);
}

uint64_t
gr_crc64_iso_update (uint64_t crc, const void *data, size_t len)
{
  const unsigned char *p = data;
  pthread_once (&crc_once, crc_init);
  crc = ~crc;
  for (; len >= 8; p += 8, len -= 8)
    {
      uint64_t v = 0;
      for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i]; /* little-endian load, compiled to one mov */
      crc ^= v;
      crc = crc_table[7][crc & 0xff] ^ crc_table[6][(crc >> 8) & 0xff] ^ crc_table[5][(crc >> 16) & 0xff]
            ^ crc_table[4][(crc >> 24) & 0xff] ^ crc_table[3][(crc >> 32) & 0xff]
            ^ crc_table[2][(crc >> 40) & 0xff] ^ crc_table[1][(crc >> 48) & 0xff] ^ crc_table[0][crc >> 56];
    }
  for (size_t i = 0; i < len; i++)
    crc = crc_table[0][(uint8_t)crc ^ p[i]] ^ (crc >> 8);
  return ~crc;
}

/* ---------- base64 ---------- */

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void
b64_append (struct gr_buf *out, const unsigned char *in, size_t n)
{
  gr_buf_reserve (out, (n + 2) / 3 * 4 + 1);
  char *o = out->data + out->len;
  size_t i = 0;
  for (; i + 2 < n; i += 3)
    {
      uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
      *o++ = b64chars[v >> 18];
      *o++ = b64chars[(v >> 12) & 63];
      *o++ = b64chars[(v >> 6) & 63];
      *o++ = b64chars[v & 63];
    }
  if (i < n)
    {
      uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
      *o++ = b64chars[v >> 18];
      *o++ = b64chars[(v >> 12) & 63];
      *o++ = i + 1 < n ? b64chars[(v >> 6) & 63] : '=';
      *o++ = '=';
    }
  out->len = (size_t)(o - out->data);
  out->data[out->len] = '\0';
}

static int
b64_value (char c)
{
  const char *p = c ? strchr (b64chars, c) : NULL;
  return p ? (int)(p - b64chars) : -1;
}

/* Decode standard base64 (with padding) into OUT.  */
static int
b64_decode (struct gr_buf *out, const char *in, size_t n, gr_error_t *err)
{
  gr_buf_reset (out);
  if (n % 4 != 0)
    return gr_make_error (err, EINVAL, "invalid base64 length %zu", n);
  gr_buf_reserve (out, n / 4 * 3 + 1);
  for (size_t i = 0; i < n; i += 4)
    {
      int v[4];
      int pad = 0;
      for (int j = 0; j < 4; j++)
        {
          if (in[i + j] == '=' && i + 4 == n && j >= 2)
            {
              v[j] = 0;
              pad++;
              continue;
            }
          if (pad || (v[j] = b64_value (in[i + j])) < 0)
            return gr_make_error (err, EINVAL, "invalid base64 data");
        }
      uint32_t x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
      unsigned char b[3] = { (unsigned char)(x >> 16), (unsigned char)(x >> 8), (unsigned char)x };
      gr_buf_append (out, b, (size_t)(3 - pad));
    }
  return 0;
}

/* ---------- names ---------- */

/* Go's utf8.Valid: no overlong forms, no surrogates, nothing past U+10FFFF.  */
static bool
utf8_valid (const unsigned char *s, size_t n)
{
  size_t i = 0;
  while (i < n)
    {
      unsigned char c = s[i];
      if (c < 0x80)
        {
          i++;
          continue;
        }
      size_t len;
      unsigned char lo = 0x80, hi = 0xBF;
      if (c >= 0xC2 && c <= 0xDF)
        len = 2;
      else if (c >= 0xE0 && c <= 0xEF)
        {
          len = 3;
          if (c == 0xE0)
            lo = 0xA0;
          else if (c == 0xED)
            hi = 0x9F;
        }
      else if (c >= 0xF0 && c <= 0xF4)
        {
          len = 4;
          if (c == 0xF0)
            lo = 0x90;
          else if (c == 0xF4)
            hi = 0x8F;
        }
      else
        return false;
      if (i + len > n)
        return false;
      if (s[i + 1] < lo || s[i + 1] > hi)
        return false;
      for (size_t k = 2; k < len; k++)
        if (s[i + k] < 0x80 || s[i + k] > 0xBF)
          return false;
      i += len;
    }
  return true;
}

/* A JSON string as Go's encoding/json writes it (HTML-safe escaping).  */
static void
json_string_append (struct gr_buf *b, const char *s, size_t n)
{
  static const char hex[] = "0123456789abcdef";
  gr_buf_append (b, "\"", 1);
  for (size_t i = 0; i < n; i++)
    {
      unsigned char c = (unsigned char)s[i];
      if (c == '"' || c == '\\')
        {
          char e[2] = { '\\', (char)c };
          gr_buf_append (b, e, 2);
        }
      else if (c == '\n')
        gr_buf_append (b, "\\n", 2);
      else if (c == '\r')
        gr_buf_append (b, "\\r", 2);
      else if (c == '\t')
        gr_buf_append (b, "\\t", 2);
      else if (c < 0x20 || c == '<' || c == '>' || c == '&')
        {
          char e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
          gr_buf_append (b, e, 6);
        }
      else if (c == 0xE2 && i + 2 < n && (unsigned char)s[i + 1] == 0x80
               && ((unsigned char)s[i + 2] == 0xA8 || (unsigned char)s[i + 2] == 0xA9))
        {
          gr_buf_puts (b, (unsigned char)s[i + 2] == 0xA8 ? "\\u2028" : "\\u2029");
          i += 2;
        }
      else
        gr_buf_append (b, &s[i], 1);
    }
  gr_buf_append (b, "\"", 1);
}

/* Go's path/filepath.Clean (Unix).  */
static char *
path_clean (const char *p)
{
  size_t n = strlen (p);
  if (n == 0)
    return xstrdup (".");
  char *out = xmalloc (n + 2);
  bool rooted = p[0] == '/';
  size_t r = 0, w = 0, dotdot = 0;
  if (rooted)
    {
      out[w++] = '/';
      r = 1;
      dotdot = 1;
    }
  while (r < n)
    {
      if (p[r] == '/')
        r++;
      else if (p[r] == '.' && (r + 1 == n || p[r + 1] == '/'))
        r++;
      else if (p[r] == '.' && p[r + 1] == '.' && (r + 2 == n || p[r + 2] == '/'))
        {
          r += 2;
          if (w > dotdot)
            {
              w--;
              while (w > dotdot && out[w] != '/')
                w--;
            }
          else if (!rooted)
            {
              if (w > 0)
                out[w++] = '/';
              out[w++] = '.';
              out[w++] = '.';
              dotdot = w;
            }
        }
      else
        {
          if ((rooted && w != 1) || (!rooted && w != 0))
            out[w++] = '/';
          for (; r < n && p[r] != '/'; r++)
            out[w++] = p[r];
        }
    }
  if (w == 0)
    out[w++] = '.';
  out[w] = '\0';
  return out;
}

/* A set of strings (cleaned names seen), open addressing.  */
struct name_set
{
  char **slots;
  size_t cap, used;
};

static uint64_t
str_hash (const char *s)
{
  uint64_t h = 1469598103934665603ULL;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

/* Insert S (ownership taken); false if it was already there.  */
static bool
name_set_add (struct name_set *set, char *s)
{
  if ((set->used + 1) * 2 > set->cap)
    {
      size_t ncap = set->cap ? set->cap * 2 : 1024;
      char **ns = xzalloc (ncap * sizeof (char *));
      for (size_t i = 0; i < set->cap; i++)
        if (set->slots[i])
          {
            size_t j = str_hash (set->slots[i]) & (ncap - 1);
            while (ns[j])
              j = (j + 1) & (ncap - 1);
            ns[j] = set->slots[i];
          }
      free (set->slots);
      set->slots = ns;
      set->cap = ncap;
    }
  size_t j = str_hash (s) & (set->cap - 1);
  while (set->slots[j])
    {
      if (strcmp (set->slots[j], s) == 0)
        {
          free (s);
          return false;
        }
      j = (j + 1) & (set->cap - 1);
    }
  set->slots[j] = s;
  set->used++;
  return true;
}

static void
name_set_free (struct name_set *set)
{
  for (size_t i = 0; i < set->cap; i++)
    free (set->slots[i]);
  free (set->slots);
  set->slots = NULL;
  set->cap = set->used = 0;
}

/* ---------- the disassembler ---------- */

enum ts_state
{
  ST_HEADER,  /* collecting a header block */
  ST_ZERO2,   /* one zero block seen, collecting the next */
  ST_META,    /* collecting PAX / GNU long-name data */
  ST_CONTENT, /* a file's content */
  ST_PAD,     /* padding after data */
  ST_TRAILER, /* after the end blocks */
};

struct gr_tarsplit
{
  int out_fd;
  z_stream z;
  bool z_ready;
  unsigned char zbuf[65536];

  enum ts_state state;
  unsigned char blk[BLOCK];
  size_t blk_fill;
  uint64_t remaining; /* bytes of data left (META, CONTENT) */
  uint64_t pad;       /* padding bytes left (PAD) */
  enum ts_state after_pad;

  struct gr_buf raw;  /* raw bytes of the next segment */
  struct gr_buf line; /* scratch for a JSON line */

  /* Meta data being collected and what it gives the next entry.  */
  char meta_type;
  struct gr_buf meta;
  char *pax_path;
  char *pax_size;
  bool pax_sparse;
  char *gnu_longname;

  /* The entry whose content is being read.  */
  char *cur_name;
  int64_t cur_size;
  uint64_t crc;

  struct name_set seen;
  int64_t position;
  int64_t unpacked_size;
  uint64_t entries;
  bool failed;
};

static int
z_write_out (struct gr_tarsplit *ts, int flush, gr_error_t *err)
{
  do
    {
      ts->z.next_out = ts->zbuf;
      ts->z.avail_out = sizeof (ts->zbuf);
      int r = deflate (&ts->z, flush);
      if (r == Z_STREAM_ERROR)
        return gr_make_error (err, EIO, "tar-split: deflate error");
      size_t have = sizeof (ts->zbuf) - ts->z.avail_out;
      if (have && gr_write_all (ts->out_fd, ts->zbuf, have, err) < 0)
        return gr_error_wrap (err, "tar-split: write");
    }
  while (ts->z.avail_out == 0);
  return 0;
}

static int
emit_line (struct gr_tarsplit *ts, gr_error_t *err)
{
  ts->position++;
  gr_buf_append (&ts->line, "\n", 1);
  ts->z.next_in = (unsigned char *)ts->line.data;
  ts->z.avail_in = (uInt)ts->line.len;
  int r = z_write_out (ts, Z_NO_FLUSH, err);
  gr_buf_reset (&ts->line);
  return r;
}

static int
emit_segment (struct gr_tarsplit *ts, const void *data, size_t len, gr_error_t *err)
{
  gr_buf_reset (&ts->line);
  gr_buf_puts (&ts->line, "{\"type\":2,\"payload\":\"");
  b64_append (&ts->line, data, len);
  gr_buf_printf (&ts->line, "\",\"position\":%" PRId64 "}", ts->position);
  return emit_line (ts, err);
}

static int
flush_raw (struct gr_tarsplit *ts, gr_error_t *err)
{
  if (ts->raw.len == 0)
    return 0;
  int r = emit_segment (ts, ts->raw.data, ts->raw.len, err);
  gr_buf_reset (&ts->raw);
  return r;
}

static int
emit_file (struct gr_tarsplit *ts, const char *name, int64_t size, bool has_crc, uint64_t crc,
           gr_error_t *err)
{
  size_t nlen = strlen (name);
  char *clean = path_clean (name);
  if (!name_set_add (&ts->seen, clean))
    return gr_make_error (err, EEXIST, "tar entry `%s`: duplicates of file paths not supported", name);
  gr_buf_reset (&ts->line);
  gr_buf_puts (&ts->line, "{\"type\":1,");
  if (nlen > 0)
    {
      if (utf8_valid ((const unsigned char *)name, nlen))
        {
          gr_buf_puts (&ts->line, "\"name\":");
          json_string_append (&ts->line, name, nlen);
        }
      else
        {
          gr_buf_puts (&ts->line, "\"name_raw\":\"");
          b64_append (&ts->line, (const unsigned char *)name, nlen);
          gr_buf_puts (&ts->line, "\"");
        }
      gr_buf_puts (&ts->line, ",");
    }
  if (size != 0)
    gr_buf_printf (&ts->line, "\"size\":%" PRId64 ",", size);
  if (has_crc)
    {
      unsigned char be[8];
      for (int i = 0; i < 8; i++)
        be[i] = (unsigned char)(crc >> (56 - 8 * i));
      gr_buf_puts (&ts->line, "\"payload\":\"");
      b64_append (&ts->line, be, 8);
      gr_buf_puts (&ts->line, "\",");
    }
  else
    gr_buf_puts (&ts->line, "\"payload\":null,");
  gr_buf_printf (&ts->line, "\"position\":%" PRId64 "}", ts->position);
  ts->entries++;
  ts->unpacked_size += size;
  return emit_line (ts, err);
}

int
gr_tarsplit_new (struct gr_tarsplit **out, int out_fd, gr_error_t *err)
{
  struct gr_tarsplit *ts = xzalloc (sizeof (*ts));
  ts->out_fd = out_fd;
  if (deflateInit2 (&ts->z, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    {
      free (ts);
      return gr_make_error (err, ENOMEM, "tar-split: deflateInit2");
    }
  ts->z_ready = true;
  ts->state = ST_HEADER;
  *out = ts;
  return 0;
}

void
gr_tarsplit_free (struct gr_tarsplit *ts)
{
  if (ts == NULL)
    return;
  if (ts->z_ready)
    deflateEnd (&ts->z);
  gr_buf_free (&ts->raw);
  gr_buf_free (&ts->line);
  gr_buf_free (&ts->meta);
  free (ts->pax_path);
  free (ts->pax_size);
  free (ts->gnu_longname);
  free (ts->cur_name);
  name_set_free (&ts->seen);
  free (ts);
}

int64_t
gr_tarsplit_unpacked_size (const struct gr_tarsplit *ts)
{
  return ts->unpacked_size;
}

uint64_t
gr_tarsplit_entries (const struct gr_tarsplit *ts)
{
  return ts->entries;
}

/* C string of a fixed-size field, up to the first NUL.  */
static char *
field_str (const unsigned char *f, size_t n)
{
  size_t len = strnlen ((const char *)f, n);
  return xstrndup ((const char *)f, len);
}

/* Go's parser.parseOctal.  */
static bool
parse_octal (const unsigned char *f, size_t n, int64_t *out)
{
  size_t a = 0, b = n;
  while (a < b && (f[a] == ' ' || f[a] == '\0'))
    a++;
  while (b > a && (f[b - 1] == ' ' || f[b - 1] == '\0'))
    b--;
  uint64_t v = 0;
  if (a == b)
    {
      *out = 0;
      return true;
    }
  for (size_t i = a; i < b; i++)
    {
      if (f[i] < '0' || f[i] > '7')
        return false;
      if (v >> 61)
        return false;
      v = v * 8 + (uint64_t)(f[i] - '0');
    }
  if (v >> 63)
    return false;
  *out = (int64_t)v;
  return true;
}

/* Go's parser.parseNumeric: base-256 when the high bit is set.  */
static bool
parse_numeric (const unsigned char *f, size_t n, int64_t *out)
{
  if (n > 0 && (f[0] & 0x80))
    {
      unsigned char inv = (f[0] & 0x40) ? 0xff : 0;
      uint64_t x = 0;
      for (size_t i = 0; i < n; i++)
        {
          unsigned char c = f[i] ^ inv;
          if (i == 0)
            c &= 0x7f;
          if (x >> 56)
            return false;
          x = x << 8 | c;
        }
      if (x >> 63)
        return false;
      *out = inv ? ~(int64_t)x : (int64_t)x;
      return true;
    }
  return parse_octal (f, n, out);
}

static bool
is_zero_block (const unsigned char *b)
{
  for (int i = 0; i < BLOCK; i++)
    if (b[i])
      return false;
  return true;
}

enum tar_format
{
  FMT_UNKNOWN,
  FMT_V7,
  FMT_USTAR, /* ustar or pax */
  FMT_STAR,
  FMT_GNU,
};

static enum tar_format
block_format (const unsigned char *b)
{
  int64_t want;
  if (!parse_octal (b + 148, 8, &want))
    return FMT_UNKNOWN;
  int64_t su = 0, ss = 0;
  for (int i = 0; i < BLOCK; i++)
    {
      unsigned char c = (i >= 148 && i < 156) ? ' ' : b[i];
      su += c;
      ss += (signed char)c;
    }
  if (want != su && want != ss)
    return FMT_UNKNOWN;
  if (memcmp (b + 257, "ustar\0", 6) == 0)
    return memcmp (b + 508, "tar\0", 4) == 0 ? FMT_STAR : FMT_USTAR;
  if (memcmp (b + 257, "ustar ", 6) == 0 && memcmp (b + 263, " \0", 2) == 0)
    return FMT_GNU;
  return FMT_V7;
}

static bool
header_only_type (char t)
{
  return t == '1' || t == '2' || t == '3' || t == '4' || t == '5' || t == '6';
}

static uint64_t
block_padding (uint64_t n)
{
  return (BLOCK - (n % BLOCK)) % BLOCK;
}

/* Parse PAX records ("%d %s=%s\n") of the collected meta data into the
   pending fields.  */
static int
parse_pax (struct gr_tarsplit *ts, gr_error_t *err)
{
  const char *p = ts->meta.data;
  size_t left = ts->meta.len;
  while (left > 0)
    {
      size_t i = 0;
      uint64_t len = 0;
      while (i < left && p[i] >= '0' && p[i] <= '9' && i < 20)
        len = len * 10 + (uint64_t)(p[i++] - '0');
      if (i == 0 || i >= left || p[i] != ' ' || len <= i + 1 || len > left || p[len - 1] != '\n')
        return gr_make_error (err, EINVAL, "invalid PAX record");
      const char *kv = p + i + 1;
      size_t kvlen = len - i - 2;
      const char *eq = memchr (kv, '=', kvlen);
      if (eq == NULL || eq == kv)
        return gr_make_error (err, EINVAL, "invalid PAX record");
      size_t klen = (size_t)(eq - kv);
      const char *val = eq + 1;
      size_t vlen = kvlen - klen - 1;
      if (klen == 4 && memcmp (kv, "path", 4) == 0)
        {
          if (memchr (val, '\0', vlen))
            return gr_make_error (err, EINVAL, "PAX path with a NUL byte");
          free (ts->pax_path);
          ts->pax_path = xstrndup (val, vlen);
        }
      else if (klen == 4 && memcmp (kv, "size", 4) == 0)
        {
          free (ts->pax_size);
          ts->pax_size = xstrndup (val, vlen);
        }
      else if (klen > 11 && memcmp (kv, "GNU.sparse.", 11) == 0)
        ts->pax_sparse = true;
      p += len;
      left -= len;
    }
  return 0;
}

static void
clear_pending (struct gr_tarsplit *ts)
{
  free (ts->pax_path);
  free (ts->pax_size);
  free (ts->gnu_longname);
  ts->pax_path = ts->pax_size = ts->gnu_longname = NULL;
  ts->pax_sparse = false;
}

static void
go_pad (struct gr_tarsplit *ts, uint64_t data_len)
{
  ts->pad = block_padding (data_len);
  ts->state = ST_PAD;
  ts->after_pad = ST_HEADER;
  if (ts->pad == 0)
    ts->state = ST_HEADER;
}

/* A full meta data section has been collected.  */
static int
meta_done (struct gr_tarsplit *ts, gr_error_t *err)
{
  uint64_t len = ts->meta.len;
  gr_buf_reserve (&ts->meta, 0); /* an empty record still has a buffer */
  gr_buf_append (&ts->raw, ts->meta.data, ts->meta.len);
  switch (ts->meta_type)
    {
    case 'x':
      if (parse_pax (ts, err) < 0)
        return -1;
      break;
    case 'g':
      {
        /* A global header is returned as an entry of its own (size 0),
           named by its header name or its `path` record.  */
        cleanup_free char *hname = field_str (ts->blk, 100);
        char *saved_path = ts->pax_path, *saved_size = ts->pax_size;
        bool saved_sparse = ts->pax_sparse;
        ts->pax_path = ts->pax_size = NULL;
        int r = parse_pax (ts, err);
        const char *name = (r == 0 && ts->pax_path && ts->pax_path[0]) ? ts->pax_path : hname;
        if (r == 0)
          r = flush_raw (ts, err);
        if (r == 0)
          r = emit_file (ts, name, 0, false, 0, err);
        free (ts->pax_path);
        free (ts->pax_size);
        ts->pax_path = saved_path;
        ts->pax_size = saved_size;
        ts->pax_sparse = saved_sparse;
        if (r < 0)
          return -1;
        break;
      }
    case 'L':
      free (ts->gnu_longname);
      ts->gnu_longname = field_str ((unsigned char *)ts->meta.data, ts->meta.len);
      break;
    default: /* 'K': the long link name only matters to extraction */
      break;
    }
  gr_buf_reset (&ts->meta);
  go_pad (ts, len);
  return 0;
}

/* Finish the entry whose content has been read.  */
static int
content_done (struct gr_tarsplit *ts, uint64_t nb, gr_error_t *err)
{
  int r = emit_file (ts, ts->cur_name, ts->cur_size, ts->cur_size > 0, ts->crc, err);
  free (ts->cur_name);
  ts->cur_name = NULL;
  if (r < 0)
    return -1;
  go_pad (ts, nb);
  return 0;
}

static int
process_header (struct gr_tarsplit *ts, gr_error_t *err)
{
  const unsigned char *b = ts->blk;
  gr_buf_append (&ts->raw, b, BLOCK);
  if (is_zero_block (b))
    {
      ts->state = ts->state == ST_ZERO2 ? ST_TRAILER : ST_ZERO2;
      if (ts->state == ST_TRAILER)
        return flush_raw (ts, err);
      return 0;
    }
  if (ts->state == ST_ZERO2)
    return gr_make_error (err, EINVAL, "invalid tar header: a zero block followed by data");

  enum tar_format fmt = block_format (b);
  if (fmt == FMT_UNKNOWN)
    return gr_make_error (err, EINVAL, "invalid tar header (bad checksum or magic)");

  char type = (char)b[156];
  int64_t size, v;
  if (!parse_numeric (b + 124, 12, &size) || !parse_numeric (b + 100, 8, &v)
      || !parse_numeric (b + 108, 8, &v) || !parse_numeric (b + 116, 8, &v)
      || !parse_numeric (b + 136, 12, &v)
      || (fmt != FMT_V7 && (!parse_numeric (b + 329, 8, &v) || !parse_numeric (b + 337, 8, &v))))
    return gr_make_error (err, EINVAL, "invalid tar header (bad numeric field)");
  if (size < 0)
    return gr_make_error (err, EINVAL, "invalid tar header (negative size)");

  if (type == 'x' || type == 'g' || type == 'L' || type == 'K')
    {
      if (size > META_MAX)
        return gr_make_error (err, EFBIG, "tar %s header of %" PRId64 " bytes is too large",
                              (type == 'x' || type == 'g') ? "PAX" : "GNU long-name", size);
      ts->meta_type = type;
      gr_buf_reset (&ts->meta);
      ts->remaining = (uint64_t)size;
      ts->state = ST_META;
      if (size == 0)
        return meta_done (ts, err);
      return 0;
    }
  if (type == 'S')
    return gr_make_error (err, ENOTSUP, "GNU sparse tar entries are not supported");

  /* An entry: name, size.  */
  cleanup_free char *name = field_str (b, 100);
  char *prefix = NULL;
  if (fmt == FMT_USTAR)
    prefix = field_str (b + 345, 155);
  else if (fmt == FMT_STAR)
    prefix = field_str (b + 345, 131);
  if (prefix && prefix[0])
    {
      char *full = xasprintf ("%s/%s", prefix, name);
      free (name);
      name = full;
    }
  free (prefix);
  if (ts->pax_path && ts->pax_path[0])
    {
      free (name);
      name = xstrdup (ts->pax_path);
    }
  if (ts->pax_size && ts->pax_size[0])
    {
      char *end = NULL;
      errno = 0;
      long long s = strtoll (ts->pax_size, &end, 10);
      if (errno || *end || end == ts->pax_size)
        return gr_make_error (err, EINVAL, "invalid PAX size `%s`", ts->pax_size);
      size = s;
      if (size < 0)
        return gr_make_error (err, EINVAL, "invalid tar header (negative size)");
    }
  if (ts->pax_sparse)
    return gr_make_error (err, ENOTSUP, "tar entry `%s`: GNU sparse files are not supported", name);
  if (ts->gnu_longname && ts->gnu_longname[0])
    {
      free (name);
      name = xstrdup (ts->gnu_longname);
    }
  clear_pending (ts);
  if (type == '\0')
    {
      size_t n = strlen (name);
      type = (n > 0 && name[n - 1] == '/') ? '5' : '0';
    }
  uint64_t nb = header_only_type (type) ? 0 : (uint64_t)size;

  if (flush_raw (ts, err) < 0)
    return -1;
  ts->cur_name = gr_steal (name);
  ts->cur_size = size;
  ts->crc = 0;
  if (nb == 0)
    return content_done (ts, 0, err);
  ts->remaining = nb;
  ts->state = ST_CONTENT;
  return 0;
}

int
gr_tarsplit_feed (struct gr_tarsplit *ts, const void *buf, size_t len, gr_error_t *err)
{
  const unsigned char *p = buf;
  if (ts->failed)
    return gr_make_error (err, EINVAL, "tar-split: stream already failed");
  while (len > 0)
    {
      size_t n;
      switch (ts->state)
        {
        case ST_HEADER:
        case ST_ZERO2:
          n = BLOCK - ts->blk_fill;
          if (n > len)
            n = len;
          memcpy (ts->blk + ts->blk_fill, p, n);
          ts->blk_fill += n;
          if (ts->blk_fill == BLOCK)
            {
              ts->blk_fill = 0;
              if (process_header (ts, err) < 0)
                goto fail;
            }
          break;
        case ST_META:
          n = ts->remaining < len ? (size_t)ts->remaining : len;
          gr_buf_append (&ts->meta, p, n);
          ts->remaining -= n;
          if (ts->remaining == 0 && meta_done (ts, err) < 0)
            goto fail;
          break;
        case ST_CONTENT:
          n = ts->remaining < len ? (size_t)ts->remaining : len;
          ts->crc = gr_crc64_iso_update (ts->crc, p, n);
          ts->remaining -= n;
          if (ts->remaining == 0)
            {
              uint64_t nb = (uint64_t)ts->cur_size;
              if (content_done (ts, nb, err) < 0)
                goto fail;
            }
          break;
        case ST_PAD:
          n = ts->pad < len ? (size_t)ts->pad : len;
          gr_buf_append (&ts->raw, p, n);
          ts->pad -= n;
          if (ts->pad == 0)
            ts->state = ts->after_pad;
          break;
        case ST_TRAILER:
        default:
          n = TRAILER_CHUNK - ts->raw.len;
          if (n > len)
            n = len;
          gr_buf_append (&ts->raw, p, n);
          if (ts->raw.len == TRAILER_CHUNK && flush_raw (ts, err) < 0)
            goto fail;
          break;
        }
      p += n;
      len -= n;
    }
  return 0;
fail:
  ts->failed = true;
  return -1;
}

int
gr_tarsplit_finish (struct gr_tarsplit *ts, gr_error_t *err)
{
  if (ts->failed)
    return gr_make_error (err, EINVAL, "tar-split: stream already failed");
  switch (ts->state)
    {
    case ST_HEADER:
    case ST_ZERO2:
      if (ts->blk_fill != 0)
        {
          ts->failed = true;
          return gr_make_error (err, EINVAL, "truncated tar: partial header block at the end");
        }
      break;
    case ST_META:
    case ST_CONTENT:
      ts->failed = true;
      return gr_make_error (err, EINVAL, "truncated tar: %" PRIu64 " bytes of `%s` missing", ts->remaining,
                            ts->cur_name ? ts->cur_name : "(header data)");
    case ST_PAD:
    case ST_TRAILER:
    default:
      break;
    }
  /* The end-of-archive raw bytes, the trailing bytes, then an empty
     segment: tar-split reads the rest of the stream until a read returns
     nothing, and records that last read too.  */
  if (flush_raw (ts, err) < 0 || emit_segment (ts, "", 0, err) < 0)
    return -1;
  ts->z.next_in = NULL;
  ts->z.avail_in = 0;
  if (z_write_out (ts, Z_FINISH, err) < 0)
    return -1;
  ts->failed = true; /* nothing more may be fed */
  return 0;
}

/* ---------- the assembler ---------- */

static int
copy_file_crc (int out_fd, int in_fd, uint64_t *crc, gr_error_t *err)
{
  static __thread unsigned char buf[65536];
  for (;;)
    {
      ssize_t r = read (in_fd, buf, sizeof (buf));
      if (r < 0 && errno == EINTR)
        continue;
      if (r < 0)
        return gr_make_error (err, errno, "read");
      if (r == 0)
        return 0;
      *crc = gr_crc64_iso_update (*crc, buf, (size_t)r);
      if (gr_write_all (out_fd, buf, (size_t)r, err) < 0)
        return -1;
    }
}

int
gr_tarsplit_assemble (int out_fd, int tarsplit_fd, int root_fd, gr_error_t *err)
{
  int fd = dup (tarsplit_fd);
  if (fd < 0)
    return gr_make_error (err, errno, "dup");
  gzFile gz = gzdopen (fd, "rb");
  if (gz == NULL)
    {
      close (fd);
      return gr_make_error (err, ENOMEM, "gzdopen");
    }
  cleanup_buf struct gr_buf line = { 0 };
  cleanup_buf struct gr_buf bin = { 0 };
  int ret = 0;
  for (;;)
    {
      /* Read one line.  */
      gr_buf_reset (&line);
      bool eof = false;
      for (;;)
        {
          gr_buf_reserve (&line, 65536);
          char *got = gzgets (gz, line.data + line.len, (int)(line.cap - line.len));
          if (got == NULL)
            {
              int zerr = 0;
              const char *msg = gzerror (gz, &zerr);
              if (zerr != Z_OK && zerr != Z_BUF_ERROR)
                {
                  ret = gr_make_error (err, EIO, "tar-split: %s", msg);
                  goto out;
                }
              eof = true;
              break;
            }
          line.len += strlen (line.data + line.len);
          if (line.len > 0 && line.data[line.len - 1] == '\n')
            break;
        }
      if (line.len == 0 && eof)
        break;
      json_error_t jerr;
      json_t *e = json_loadb (line.data, line.len, 0, &jerr);
      if (e == NULL)
        {
          ret = gr_make_error (err, EINVAL, "tar-split: invalid JSON line: %s", jerr.text);
          goto out;
        }
      json_int_t type = json_integer_value (json_object_get (e, "type"));
      json_t *payload = json_object_get (e, "payload");
      if (type == 2)
        {
          const char *s = json_string_value (payload);
          if (s && (ret = b64_decode (&bin, s, json_string_length (payload), err)) == 0)
            ret = gr_write_all (out_fd, bin.data, bin.len, err);
        }
      else if (type == 1 && json_integer_value (json_object_get (e, "size")) > 0)
        {
          cleanup_free char *name = NULL;
          json_t *raw = json_object_get (e, "name_raw");
          if (json_is_string (raw))
            {
              ret = b64_decode (&bin, json_string_value (raw), json_string_length (raw), err);
              name = xstrndup (bin.data ? bin.data : "", bin.len);
            }
          else
            name = xstrdup (json_string_value (json_object_get (e, "name")) ?: "");
          cleanup_close int f = -1;
          if (ret == 0)
            {
              f = gr_open_in_root (root_fd, name, O_RDONLY, 0, err);
              if (f < 0)
                ret = -1;
            }
          uint64_t crc = 0;
          if (ret == 0 && (ret = copy_file_crc (out_fd, f, &crc, err)) < 0)
            gr_error_wrap (err, "`%s`", name);
          if (ret == 0)
            {
              const char *s = json_string_value (payload);
              unsigned char be[8];
              for (int i = 0; i < 8; i++)
                be[i] = (unsigned char)(crc >> (56 - 8 * i));
              if (s == NULL || b64_decode (&bin, s, strlen (s), NULL) < 0 || bin.len != 8
                  || memcmp (bin.data, be, 8) != 0)
                ret = gr_make_error (err, EIO, "file integrity checksum failed for `%s`", name);
            }
        }
      else if (type != 1)
        ret = gr_make_error (err, EINVAL, "tar-split: unknown entry type %lld", (long long)type);
      json_decref (e);
      if (ret < 0)
        goto out;
      if (eof)
        break;
    }
out:
  gzclose (gz);
  return ret;
}
