#include "config.h"

#include "digest.h"
#include "unit.h"
#include "utils.h"

static void
test_error_wrap (void)
{
  gr_error_t err = NULL;
  int r = gr_make_error (&err, ENOENT, "open `%s`", "x");
  CU_ASSERT_EQUAL (r, -ENOENT);
  gr_error_wrap (&err, "layer %s", "abc");
  CU_ASSERT_STRING_EQUAL (gr_error_msg (&err), "layer abc: open `x`");
  CU_ASSERT_EQUAL (gr_error_status (&err), ENOENT);
  gr_error_release (&err);
  CU_ASSERT_PTR_NULL (err);
}

static void
test_buf (void)
{
  cleanup_buf struct gr_buf b = { 0 };
  for (int i = 0; i < 1000; i++)
    gr_buf_printf (&b, "%d,", i);
  CU_ASSERT_EQUAL (strncmp (b.data, "0,1,2,", 6), 0);
  CU_ASSERT_EQUAL (b.len, strlen (b.data));
  cleanup_free char *s = gr_buf_steal (&b);
  CU_ASSERT_PTR_NULL (b.data);
  CU_ASSERT_EQUAL (s[strlen (s) - 1], ',');
}

static void
test_id_validate (void)
{
  const char *good[] = { "3f2a", "deadbeef-init", "a_b.c", NULL };
  const char *bad[] = { "", "../x", "a/b", "..", ".", ".hidden", "-x", "a b", "x-removing", NULL };
  for (int i = 0; good[i]; i++)
    CU_ASSERT_EQUAL (gr_id_validate (good[i], NULL), 0);
  for (int i = 0; bad[i]; i++)
    {
      gr_error_t err = NULL;
      CU_ASSERT (gr_id_validate (bad[i], &err) < 0);
      CU_ASSERT_EQUAL (gr_error_status (&err), EINVAL);
      gr_error_release (&err);
    }
  char longid[200];
  memset (longid, 'a', sizeof (longid) - 1);
  longid[sizeof (longid) - 1] = 0;
  CU_ASSERT (gr_id_validate (longid, NULL) < 0);
}

static void
test_digest (void)
{
  char hex[65];
  gr_sha256_hex ("abc", 3, hex);
  CU_ASSERT_STRING_EQUAL (hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CU_ASSERT (gr_digest_valid ("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
  CU_ASSERT (! gr_digest_valid ("sha256:BA7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
  CU_ASSERT (! gr_digest_valid ("sha256:../"));
  char a[65], b[65];
  ASSERT_OK (gr_random_id (a, err_));
  ASSERT_OK (gr_random_id (b, err_));
  CU_ASSERT (gr_hex64_valid (a));
  CU_ASSERT (strcmp (a, b) != 0);
}

int
main (void)
{
  if (CU_initialize_registry () != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite ("utils", NULL, NULL);
  CU_add_test (s, "error wrap", test_error_wrap);
  CU_add_test (s, "buffer", test_buf);
  CU_add_test (s, "id validation", test_id_validate);
  CU_add_test (s, "digest", test_digest);
  return unit_run ();
}
