#include "config.h"

#include "digest.h"

#include <openssl/evp.h>
#include <string.h>
#include <sys/random.h>

struct gr_sha256
{
  EVP_MD_CTX *ctx;
};

struct gr_sha256 *
gr_sha256_new (void)
{
  struct gr_sha256 *h = xzalloc (sizeof (*h));
  h->ctx = EVP_MD_CTX_new ();
  if (h->ctx == NULL || EVP_DigestInit_ex (h->ctx, EVP_sha256 (), NULL) != 1)
    abort ();
  return h;
}

void
gr_sha256_update (struct gr_sha256 *h, const void *data, size_t len)
{
  if (EVP_DigestUpdate (h->ctx, data, len) != 1)
    abort ();
}

static void
to_hex (const unsigned char *bin, size_t n, char *hex)
{
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++)
    {
      hex[2 * i] = digits[bin[i] >> 4];
      hex[2 * i + 1] = digits[bin[i] & 0xf];
    }
  hex[2 * n] = '\0';
}

void
gr_sha256_final (struct gr_sha256 *h, char hex[GR_SHA256_HEX_LEN + 1])
{
  unsigned char md[32];
  unsigned int n = 0;
  if (EVP_DigestFinal_ex (h->ctx, md, &n) != 1 || n != 32)
    abort ();
  to_hex (md, 32, hex);
  gr_sha256_free (h);
}

void
gr_sha256_free (struct gr_sha256 *h)
{
  if (h == NULL)
    return;
  EVP_MD_CTX_free (h->ctx);
  free (h);
}

void
gr_sha256_hex (const void *data, size_t len, char hex[GR_SHA256_HEX_LEN + 1])
{
  struct gr_sha256 *h = gr_sha256_new ();
  gr_sha256_update (h, data, len);
  gr_sha256_final (h, hex);
}

bool
gr_hex64_valid (const char *s)
{
  size_t i;
  for (i = 0; s[i]; i++)
    if (! ((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return false;
  return i == GR_SHA256_HEX_LEN;
}

bool
gr_digest_valid (const char *s)
{
  return s && strncmp (s, "sha256:", 7) == 0 && gr_hex64_valid (s + 7);
}

int
gr_random_id (char out[GR_SHA256_HEX_LEN + 1], gr_error_t *err)
{
  unsigned char bin[32];
  for (;;)
    {
      size_t got = 0;
      while (got < sizeof (bin))
        {
          ssize_t r = getrandom (bin + got, sizeof (bin) - got, 0);
          if (r < 0 && errno == EINTR)
            continue;
          if (r < 0)
            return gr_make_error (err, errno, "getrandom");
          got += (size_t) r;
        }
      to_hex (bin, sizeof (bin), out);
      /* As moby: an ID that parses as a number would be mistaken for a short index.  */
      bool all_digits = true;
      for (int i = 0; i < 12; i++)
        if (out[i] < '0' || out[i] > '9')
          all_digits = false;
      if (! all_digits)
        return 0;
    }
}
