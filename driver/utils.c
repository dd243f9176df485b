#include "config.h"

#include "utils.h"

#include <string.h>

static int
error_vset (gr_error_t *err, int status, const char *fmt, va_list ap)
{
  char *msg = NULL;
  if (vasprintf (&msg, fmt, ap) < 0)
    abort ();
  if (err == NULL)
    {
      free (msg);
      return status > 0 ? -status : -1;
    }
  if (*err)
    gr_error_release (err);
  *err = xmalloc (sizeof (**err));
  (*err)->status = status;
  (*err)->msg = msg;
  return status > 0 ? -status : -1;
}

int
gr_make_error (gr_error_t *err, int status, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  int ret = error_vset (err, status, fmt, ap);
  va_end (ap);
  return ret;
}

int
gr_error_wrap (gr_error_t *err, const char *fmt, ...)
{
  cleanup_free char *ctx = NULL;
  va_list ap;
  if (err == NULL || *err == NULL)
    return -1;
  va_start (ap, fmt);
  if (vasprintf (&ctx, fmt, ap) < 0)
    abort ();
  va_end (ap);
  char *msg = xasprintf ("%s: %s", ctx, (*err)->msg);
  free ((*err)->msg);
  (*err)->msg = msg;
  return (*err)->status > 0 ? -(*err)->status : -1;
}

int
gr_error_status (const gr_error_t *err)
{
  return (err && *err) ? (*err)->status : 0;
}

const char *
gr_error_msg (const gr_error_t *err)
{
  return (err && *err) ? (*err)->msg : "(no error)";
}

void
gr_error_release (gr_error_t *err)
{
  if (err == NULL || *err == NULL)
    return;
  free ((*err)->msg);
  free (*err);
  *err = NULL;
}

static void *
oom (void)
{
  fputs ("out of memory\n", stderr);
  abort ();
}

void *
xmalloc (size_t size)
{
  void *p = malloc (size ? size : 1);
  return p ? p : oom ();
}

void *
xzalloc (size_t size)
{
  void *p = calloc (1, size ? size : 1);
  return p ? p : oom ();
}

void *
xrealloc (void *ptr, size_t size)
{
  void *p = realloc (ptr, size ? size : 1);
  return p ? p : oom ();
}

char *
xstrdup (const char *s)
{
  char *p = strdup (s);
  return p ? p : oom ();
}

char *
xstrndup (const char *s, size_t n)
{
  char *p = strndup (s, n);
  return p ? p : oom ();
}

char *
xasprintf (const char *fmt, ...)
{
  char *p = NULL;
  va_list ap;
  va_start (ap, fmt);
  if (vasprintf (&p, fmt, ap) < 0)
    oom ();
  va_end (ap);
  return p;
}

void
gr_buf_reserve (struct gr_buf *b, size_t extra)
{
  if (b->len + extra + 1 <= b->cap)
    return;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < b->len + extra + 1)
    cap *= 2;
  b->data = xrealloc (b->data, cap);
  b->cap = cap;
}

void
gr_buf_append (struct gr_buf *b, const void *data, size_t len)
{
  gr_buf_reserve (b, len);
  if (len)
    memcpy (b->data + b->len, data, len);
  b->len += len;
  b->data[b->len] = '\0';
}

void
gr_buf_puts (struct gr_buf *b, const char *s)
{
  gr_buf_append (b, s, strlen (s));
}

void
gr_buf_printf (struct gr_buf *b, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  int n = vsnprintf (NULL, 0, fmt, ap);
  va_end (ap);
  if (n < 0)
    abort ();
  gr_buf_reserve (b, (size_t) n);
  va_start (ap, fmt);
  vsnprintf (b->data + b->len, (size_t) n + 1, fmt, ap);
  va_end (ap);
  b->len += (size_t) n;
}

void
gr_buf_reset (struct gr_buf *b)
{
  b->len = 0;
  if (b->data)
    b->data[0] = '\0';
}

char *
gr_buf_steal (struct gr_buf *b)
{
  char *p = b->data ? b->data : xstrdup ("");
  b->data = NULL;
  b->len = b->cap = 0;
  return p;
}

void
gr_buf_free (struct gr_buf *b)
{
  free (b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

int
gr_id_validate (const char *id, gr_error_t *err)
{
  if (id == NULL || id[0] == '\0')
    return gr_make_error (err, EINVAL, "empty layer id");
  size_t n = strlen (id);
  if (n > 128)
    return gr_make_error (err, EINVAL, "layer id `%.16s…` is longer than 128 characters", id);
  if (id[0] == '.' || id[0] == '-')
    return gr_make_error (err, EINVAL, "invalid layer id `%s`", id);
  for (size_t i = 0; i < n; i++)
    {
      char c = id[i];
      if (! ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-'
             || c == '_' || c == '.'))
        return gr_make_error (err, EINVAL, "invalid layer id `%s`: only [A-Za-z0-9_.-] allowed", id);
    }
  if (n > 9 && strcmp (id + n - 9, "-removing") == 0)
    return gr_make_error (err, EINVAL, "invalid layer id `%s`: reserved suffix", id);
  return 0;
}

int
gr_write_all (int fd, const void *buf, size_t len, gr_error_t *err)
{
  const char *p = buf;
  while (len > 0)
    {
      ssize_t w = write (fd, p, len);
      if (w < 0)
        {
          if (errno == EINTR)
            continue;
          return gr_make_error (err, errno, "write");
        }
      p += w;
      len -= (size_t) w;
    }
  return 0;
}
