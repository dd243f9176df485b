/* Registry client parsers: references, WWW-Authenticate, manifests,
   platform selection, docker config credentials.  */
#include "config.h"

#include "digest.h"
#include "registry.h"
#include "unit.h"

#include <string.h>

static char *sandbox;

#define D64 "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define E64 "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

static void
check_ref (const char *in, const char *domain, const char *path, const char *tag, const char *digest,
           const char *familiar)
{
  struct gr_reference *r = NULL;
  gr_error_t err = NULL;
  int ret = gr_reference_parse (&r, in, &err);
  if (ret < 0)
    fprintf (stderr, "\n%s: %s\n", in, gr_error_msg (&err));
  CU_ASSERT_FATAL (ret == 0);
  CU_ASSERT_STRING_EQUAL (r->domain, domain);
  CU_ASSERT_STRING_EQUAL (r->path, path);
  CU_ASSERT (tag ? (r->tag && strcmp (r->tag, tag) == 0) : r->tag == NULL);
  CU_ASSERT (digest ? (r->digest && strcmp (r->digest, digest) == 0) : r->digest == NULL);
  char *f = gr_reference_familiar_name (r);
  CU_ASSERT_STRING_EQUAL (f, familiar);
  free (f);
  gr_reference_free (r);
}

static void
check_ref_bad (const char *in, const char *msg_part)
{
  struct gr_reference *r = NULL;
  gr_error_t err = NULL;
  CU_ASSERT (gr_reference_parse (&r, in, &err) < 0);
  CU_ASSERT (r == NULL);
  if (msg_part && (err == NULL || strstr (err->msg, msg_part) == NULL))
    {
      fprintf (stderr, "\n%s: message `%s` lacks `%s`\n", in, gr_error_msg (&err), msg_part);
      CU_FAIL ("error message");
    }
  gr_error_release (&err);
}

static void
test_reference (void)
{
  check_ref ("ubuntu", "docker.io", "library/ubuntu", "latest", NULL, "ubuntu");
  check_ref ("ubuntu:22.04", "docker.io", "library/ubuntu", "22.04", NULL, "ubuntu");
  check_ref ("user/repo", "docker.io", "user/repo", "latest", NULL, "user/repo");
  check_ref ("docker.io/library/busybox:1", "docker.io", "library/busybox", "1", NULL, "busybox");
  check_ref ("index.docker.io/busybox", "docker.io", "library/busybox", "latest", NULL, "busybox");
  check_ref ("docker.io/a/b/c", "docker.io", "a/b/c", "latest", NULL, "a/b/c");
  check_ref ("127.0.0.1:5000/x", "127.0.0.1:5000", "x", "latest", NULL, "127.0.0.1:5000/x");
  check_ref ("localhost/x:t", "localhost", "x", "t", NULL, "localhost/x");
  check_ref ("localhost:5000/a/b:v1.2-rc_3", "localhost:5000", "a/b", "v1.2-rc_3", NULL,
             "localhost:5000/a/b");
  check_ref ("quay.io/org/img@" D64, "quay.io", "org/img", NULL, D64, "quay.io/org/img");
  check_ref ("quay.io/org/img:tag@" D64, "quay.io", "org/img", "tag", D64, "quay.io/org/img");
  check_ref ("busybox@" D64, "docker.io", "library/busybox", NULL, D64, "busybox");
  check_ref ("[::1]:5000/x", "[::1]:5000", "x", "latest", NULL, "[::1]:5000/x");
  check_ref ("a__b/c-d---e/f_g.h", "docker.io", "a__b/c-d---e/f_g.h", "latest", NULL, "a__b/c-d---e/f_g.h");
  /* a first component with a '.' is a registry host, and must be valid */
  check_ref_bad ("a__b.c/x", "invalid registry");
  /* a first component without '.' or ':' is part of the path */
  check_ref ("myhost/x", "docker.io", "myhost/x", "latest", NULL, "myhost/x");
  /* localhost:5000 alone is a name with a tag, as in docker */
  check_ref ("localhost:5000", "docker.io", "library/localhost", "5000", NULL, "localhost");

  check_ref_bad ("", "empty");
  check_ref_bad ("Ubuntu", "must be lowercase");
  check_ref_bad ("UPPER/x", "must be lowercase");
  check_ref_bad ("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "64-byte hexadecimal");
  check_ref_bad ("x:", "invalid tag");
  check_ref_bad ("x:-tag", "invalid tag");
  check_ref_bad ("x@sha256:abc", "invalid digest");
  check_ref_bad ("x@md5:0123456789abcdef0123456789abcdef", "unsupported digest");
  check_ref_bad ("a//b", NULL);
  check_ref_bad ("a/b_", NULL);
  check_ref_bad ("a/_b", NULL);
  check_ref_bad ("a/b___c", NULL);
  check_ref_bad ("-host.io/x", "invalid registry");
  check_ref_bad ("host.io:/x", "invalid registry");
  check_ref_bad ("host..io/x", "invalid registry");
  check_ref_bad ("x/", NULL);

  struct gr_reference *r = NULL;
  ASSERT_OK (gr_reference_parse (&r, "127.0.0.1:5000/a/b:t@" D64, err_));
  char *s = gr_reference_string (r);
  CU_ASSERT_STRING_EQUAL (s, "127.0.0.1:5000/a/b:t@" D64);
  free (s);
  s = gr_reference_full_name (r);
  CU_ASSERT_STRING_EQUAL (s, "127.0.0.1:5000/a/b");
  free (s);
  CU_ASSERT_STRING_EQUAL (gr_reference_api_host (r), "127.0.0.1:5000");
  gr_reference_free (r);
  ASSERT_OK (gr_reference_parse (&r, "ubuntu", err_));
  s = gr_reference_full_name (r);
  CU_ASSERT_STRING_EQUAL (s, "docker.io/library/ubuntu");
  free (s);
  CU_ASSERT_STRING_EQUAL (gr_reference_api_host (r), "registry-1.docker.io");
  gr_reference_free (r);

  /* 255-char limit on domain/path */
  char longname[300];
  memset (longname, 'a', sizeof (longname) - 1);
  longname[sizeof (longname) - 1] = '\0';
  check_ref_bad (longname, "255");
}

static void
test_www_authenticate (void)
{
  struct gr_auth_challenge *c = NULL;
  size_t n = 0;
  ASSERT_OK (gr_auth_challenges_parse (
      &c, &n,
      "Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\","
      "scope=\"repository:library/ubuntu:pull\"",
      err_));
  CU_ASSERT_FATAL (n == 1);
  CU_ASSERT_STRING_EQUAL (c[0].scheme, "bearer");
  CU_ASSERT_STRING_EQUAL (c[0].realm, "https://auth.docker.io/token");
  CU_ASSERT_STRING_EQUAL (c[0].service, "registry.docker.io");
  CU_ASSERT_STRING_EQUAL (c[0].scope, "repository:library/ubuntu:pull");
  gr_auth_challenges_free (c, n);

  /* several challenges, unquoted values, odd spacing, escapes */
  ASSERT_OK (gr_auth_challenges_parse (
      &c, &n,
      "Basic realm=\"Registry Realm\", BEARER  realm = http://127.0.0.1:1/t , service=svc,"
      " error=\"invalid_token\", scope=\"a\\\"b\"",
      err_));
  CU_ASSERT_FATAL (n == 2);
  CU_ASSERT_STRING_EQUAL (c[0].scheme, "basic");
  CU_ASSERT_STRING_EQUAL (c[0].realm, "Registry Realm");
  CU_ASSERT_PTR_NULL (c[0].service);
  CU_ASSERT_STRING_EQUAL (c[1].scheme, "bearer");
  CU_ASSERT_STRING_EQUAL (c[1].realm, "http://127.0.0.1:1/t");
  CU_ASSERT_STRING_EQUAL (c[1].service, "svc");
  CU_ASSERT_STRING_EQUAL (c[1].error, "invalid_token");
  CU_ASSERT_STRING_EQUAL (c[1].scope, "a\"b");
  gr_auth_challenges_free (c, n);

  ASSERT_OK (gr_auth_challenges_parse (&c, &n, "Basic", err_));
  CU_ASSERT (n == 1);
  gr_auth_challenges_free (c, n);

  gr_error_t err = NULL;
  CU_ASSERT (gr_auth_challenges_parse (&c, &n, "Bearer realm=\"unterminated", &err) < 0);
  gr_error_release (&err);
  CU_ASSERT (gr_auth_challenges_parse (&c, &n, "=x", &err) < 0);
  gr_error_release (&err);
}

static void
test_platform (void)
{
  struct gr_platform p = { 0 };
  ASSERT_OK (gr_platform_parse (&p, "linux/amd64", err_));
  CU_ASSERT_STRING_EQUAL (p.os, "linux");
  CU_ASSERT_STRING_EQUAL (p.arch, "amd64");
  CU_ASSERT_PTR_NULL (p.variant);
  CU_ASSERT (gr_platform_match (&p, "linux", "amd64", NULL));
  CU_ASSERT (gr_platform_match (&p, "linux", "x86_64", ""));
  CU_ASSERT (!gr_platform_match (&p, "linux", "arm64", NULL));
  CU_ASSERT (!gr_platform_match (&p, "windows", "amd64", NULL));
  CU_ASSERT (!gr_platform_match (&p, "unknown", "unknown", NULL));
  gr_platform_clear (&p);

  ASSERT_OK (gr_platform_parse (&p, "linux/arm64/v8", err_));
  CU_ASSERT_STRING_EQUAL (p.arch, "arm64");
  CU_ASSERT_PTR_NULL (p.variant); /* v8 is the default of arm64 */
  CU_ASSERT (gr_platform_match (&p, "linux", "arm64", "v8"));
  CU_ASSERT (gr_platform_match (&p, "linux", "aarch64", NULL));
  gr_platform_clear (&p);

  ASSERT_OK (gr_platform_parse (&p, "linux/arm", err_));
  CU_ASSERT_STRING_EQUAL (p.variant, "v7");
  CU_ASSERT (gr_platform_match (&p, "linux", "arm", "v7"));
  CU_ASSERT (!gr_platform_match (&p, "linux", "arm", "v6"));
  gr_platform_clear (&p);

  ASSERT_OK (gr_platform_parse (&p, "Linux/ARM/v6", err_));
  CU_ASSERT (gr_platform_match (&p, "linux", "arm", "v6"));
  char *s = gr_platform_string (&p);
  CU_ASSERT_STRING_EQUAL (s, "linux/arm/v6");
  free (s);
  gr_platform_clear (&p);

  gr_error_t err = NULL;
  const char *bad[] = { "linux", "linux/", "/amd64", "linux/amd64/", "a/b/c/d", "linux//v7", "linux/am d64" };
  for (size_t i = 0; i < sizeof (bad) / sizeof (bad[0]); i++)
    {
      CU_ASSERT (gr_platform_parse (&p, bad[i], &err) < 0);
      gr_error_release (&err);
    }

  gr_platform_default (&p);
  CU_ASSERT_STRING_EQUAL (p.os, "linux");
  CU_ASSERT (p.arch && *p.arch);
#if defined(__x86_64__)
  CU_ASSERT_STRING_EQUAL (p.arch, "amd64");
#endif
  gr_platform_clear (&p);
}

static const char index_doc[]
    = "{\"schemaVersion\":2,\"mediaType\":\"" GR_MT_OCI_INDEX "\",\"manifests\":["
      "{\"mediaType\":\"" GR_MT_OCI_MANIFEST "\",\"digest\":\"" D64 "\",\"size\":10,"
      "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm\",\"variant\":\"v7\"}},"
      "{\"mediaType\":\"" GR_MT_OCI_MANIFEST "\",\"digest\":\"" E64 "\",\"size\":11,"
      "\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}},"
      "{\"mediaType\":\"" GR_MT_OCI_MANIFEST "\",\"digest\":\"" D64 "\",\"size\":12,"
      "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\",\"variant\":\"v8\"}}]}";

static void
parse_bad (const char *ct, const char *doc, const char *msg_part)
{
  struct gr_manifest *m = NULL;
  gr_error_t err = NULL;
  CU_ASSERT (gr_manifest_parse (&m, ct, doc, strlen (doc), &err) < 0);
  CU_ASSERT (m == NULL);
  if (msg_part && (err == NULL || strstr (err->msg, msg_part) == NULL))
    {
      fprintf (stderr, "\nmessage `%s` lacks `%s`\n", gr_error_msg (&err), msg_part);
      CU_FAIL ("error message");
    }
  gr_error_release (&err);
}

static void
test_manifest (void)
{
  struct gr_manifest *m = NULL;
  const char *img
      = "{\"schemaVersion\":2,\"mediaType\":\"" GR_MT_DOCKER_MANIFEST "\","
        "\"config\":{\"mediaType\":\"" GR_MT_DOCKER_CONFIG "\",\"digest\":\"" D64 "\",\"size\":7},"
        "\"layers\":[{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\","
        "\"digest\":\"" E64 "\",\"size\":1234},"
        "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"" D64 "\",\"size\":0}]}";
  ASSERT_OK (gr_manifest_parse (&m, GR_MT_DOCKER_MANIFEST "; charset=utf-8", img, strlen (img), err_));
  CU_ASSERT (m->kind == GR_MANIFEST_IMAGE);
  CU_ASSERT_STRING_EQUAL (m->config.digest, D64);
  CU_ASSERT (m->config.size == 7);
  CU_ASSERT_FATAL (m->n_layers == 2);
  CU_ASSERT_STRING_EQUAL (m->layers[0].digest, E64);
  CU_ASSERT (m->layers[0].size == 1234);
  gr_manifest_free (m);
  m = NULL;

  /* OCI manifest without mediaType, typed by the content type or shape */
  const char *oci = "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" GR_MT_OCI_CONFIG
                    "\",\"digest\":\"" D64 "\",\"size\":7},\"layers\":[]}";
  ASSERT_OK (gr_manifest_parse (&m, "application/json", oci, strlen (oci), err_));
  CU_ASSERT (m->kind == GR_MANIFEST_IMAGE);
  CU_ASSERT_STRING_EQUAL (m->media_type, GR_MT_OCI_MANIFEST);
  CU_ASSERT (m->n_layers == 0);
  gr_manifest_free (m);
  m = NULL;

  ASSERT_OK (gr_manifest_parse (&m, NULL, index_doc, strlen (index_doc), err_));
  CU_ASSERT (m->kind == GR_MANIFEST_INDEX);
  CU_ASSERT_FATAL (m->n_manifests == 3);
  struct gr_platform p = { 0 };
  const struct gr_descriptor *d = NULL;
  ASSERT_OK (gr_platform_parse (&p, "linux/amd64", err_));
  ASSERT_OK (gr_manifest_select (&d, m, &p, err_));
  CU_ASSERT (d == &m->manifests[1]);
  gr_platform_clear (&p);
  ASSERT_OK (gr_platform_parse (&p, "linux/arm64", err_));
  ASSERT_OK (gr_manifest_select (&d, m, &p, err_));
  CU_ASSERT (d == &m->manifests[2]);
  gr_platform_clear (&p);
  ASSERT_OK (gr_platform_parse (&p, "linux/arm/v7", err_));
  ASSERT_OK (gr_manifest_select (&d, m, &p, err_));
  CU_ASSERT (d == &m->manifests[0]);
  gr_platform_clear (&p);
  ASSERT_OK (gr_platform_parse (&p, "linux/s390x", err_));
  gr_error_t err = NULL;
  CU_ASSERT (gr_manifest_select (&d, m, &p, &err) < 0);
  CU_ASSERT (err && strstr (err->msg, "no matching manifest for linux/s390x"));
  gr_error_release (&err);
  gr_platform_clear (&p);
  gr_manifest_free (m);

  /* ambiguous documents */
  parse_bad (NULL,
             "{\"schemaVersion\":2,\"mediaType\":\"" GR_MT_OCI_INDEX "\",\"manifests\":[],"
             "\"layers\":[]}",
             "ambiguous");
  parse_bad (NULL,
             "{\"schemaVersion\":2,\"mediaType\":\"" GR_MT_OCI_MANIFEST "\",\"manifests\":[],"
             "\"config\":{\"mediaType\":\"" GR_MT_OCI_CONFIG "\",\"digest\":\"" D64 "\",\"size\":1}}",
             "ambiguous");
  parse_bad (GR_MT_OCI_INDEX,
             "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" GR_MT_OCI_CONFIG "\",\"digest\":\"" D64
             "\",\"size\":1},\"layers\":[]}",
             "ambiguous");
  /* schema1, wrong versions, mismatching types, bad descriptors */
  parse_bad (NULL, "{\"schemaVersion\":1,\"fsLayers\":[]}", "schema 1");
  parse_bad (GR_MT_DOCKER_V1_SIGNED, "{\"schemaVersion\":2}", "schema 1");
  parse_bad (NULL, "{\"schemaVersion\":3,\"manifests\":[]}", "schemaVersion");
  parse_bad (GR_MT_DOCKER_LIST, index_doc, "does not match");
  parse_bad (NULL, "[1,2]", "not a JSON object");
  parse_bad (NULL, "{", "invalid JSON");
  parse_bad (NULL,
             "{\"schemaVersion\":2,\"mediaType\":\"" GR_MT_OCI_MANIFEST
             "\",\"config\":{\"mediaType\":\"" GR_MT_OCI_CONFIG "\",\"digest\":\"sha256:12\","
             "\"size\":1},\"layers\":[]}",
             "invalid");
  parse_bad (NULL,
             "{\"schemaVersion\":2,\"mediaType\":\"" GR_MT_OCI_MANIFEST
             "\",\"config\":{\"mediaType\":\"" GR_MT_OCI_CONFIG "\",\"digest\":\"" D64
             "\",\"size\":-1},\"layers\":[]}",
             "size");
  parse_bad (NULL,
             "{\"schemaVersion\":2,\"mediaType\":\"" GR_MT_OCI_MANIFEST
             "\",\"config\":{\"mediaType\":\"application/vnd.cncf.helm.config.v1+json\","
             "\"digest\":\"" D64 "\",\"size\":1},\"layers\":[]}",
             "not a container image");
  parse_bad (NULL, "{\"schemaVersion\":2,\"mediaType\":\"text/plain\"}", "unsupported");

  /* size bound */
  size_t big = GR_MANIFEST_MAX + 1;
  char *huge = xmalloc (big);
  memset (huge, ' ', big);
  CU_ASSERT (gr_manifest_parse (&m, NULL, huge, big, &err) < 0);
  CU_ASSERT (err && strstr (err->msg, "limit"));
  gr_error_release (&err);
  free (huge);
}

static void
test_image_config (void)
{
  struct gr_image_config *c = NULL;
  const char *cfg = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\","
                    "\"diff_ids\":[\"" D64 "\",\"" E64 "\"]}}";
  ASSERT_OK (gr_image_config_parse (&c, cfg, strlen (cfg), err_));
  CU_ASSERT_FATAL (c->n_diff_ids == 2);
  CU_ASSERT_STRING_EQUAL (c->diff_ids[1], E64);
  CU_ASSERT_STRING_EQUAL (c->platform.arch, "amd64");
  char *chain[2];
  gr_chain_ids (chain, c->diff_ids, 2);
  CU_ASSERT_STRING_EQUAL (chain[0], D64);
  char hex[65];
  const char *in = D64 " " E64;
  gr_sha256_hex (in, strlen (in), hex);
  CU_ASSERT_STRING_EQUAL (chain[1] + 7, hex);
  free (chain[0]);
  free (chain[1]);
  gr_image_config_free (c);

  gr_error_t err = NULL;
  const char *bad = "{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:xyz\"]}}";
  CU_ASSERT (gr_image_config_parse (&c, bad, strlen (bad), &err) < 0);
  gr_error_release (&err);
  bad = "{\"rootfs\":{\"type\":\"other\",\"diff_ids\":[]}}";
  CU_ASSERT (gr_image_config_parse (&c, bad, strlen (bad), &err) < 0);
  gr_error_release (&err);
}

static void
test_docker_config (void)
{
  char *path = xasprintf ("%s/config.json", sandbox);
  /* "user:pa:ss" in base64 */
  const char *cfg = "{\"auths\":{\"https://index.docker.io/v1/\":{\"auth\":\"aHViOmh1YnB3\"},"
                    "\"127.0.0.1:5000\":{\"auth\":\"dXNlcjpwYTpzcw==\"},"
                    "\"http://reg.example:8080/v2/\":{\"username\":\"u2\",\"password\":\"p2\"},"
                    "\"tok.example\":{\"auth\":\"dTo=\",\"identitytoken\":\"refresh-me\"}}}";
  FILE *f = fopen (path, "w");
  CU_ASSERT_FATAL (f != NULL);
  fputs (cfg, f);
  fclose (f);
  char *u = NULL, *p = NULL;
  gr_error_t err = NULL;
  CU_ASSERT (gr_docker_config_credentials (&u, &p, path, "127.0.0.1:5000", &err) == 1);
  CU_ASSERT_STRING_EQUAL (u, "user");
  CU_ASSERT_STRING_EQUAL (p, "pa:ss");
  free (u);
  free (p);
  CU_ASSERT (gr_docker_config_credentials (&u, &p, path, "docker.io", &err) == 1);
  CU_ASSERT_STRING_EQUAL (u, "hub");
  CU_ASSERT_STRING_EQUAL (p, "hubpw");
  free (u);
  free (p);
  CU_ASSERT (gr_docker_config_credentials (&u, &p, path, "reg.example:8080", &err) == 1);
  CU_ASSERT_STRING_EQUAL (u, "u2");
  free (u);
  free (p);
  /* an identity token wins over the username in "auth" ("u:") */
  CU_ASSERT (gr_docker_config_credentials (&u, &p, path, "tok.example", &err) == 1);
  CU_ASSERT_STRING_EQUAL (u, GR_IDENTITY_TOKEN_USER);
  CU_ASSERT_STRING_EQUAL (p, "refresh-me");
  free (u);
  free (p);
  CU_ASSERT (gr_docker_config_credentials (&u, &p, path, "other:1", &err) == 0);
  /* credHelpers / credsStore: docker-credential-<name> get, found on PATH */
  char *helper = xasprintf ("%s/docker-credential-grtest", sandbox);
  f = fopen (helper, "w");
  CU_ASSERT_FATAL (f != NULL);
  fputs ("#!/bin/sh\nread server\n"
         "case $server in helped:1) echo '{\"ServerURL\":\"helped:1\",\"Username\":\"hu\","
         "\"Secret\":\"hs\"}' ;; tokened:1) echo '{\"Username\":\"<token>\",\"Secret\":\"ht\"}' ;;"
         " *) echo 'credentials not found in native keychain'; exit 1 ;; esac\n",
         f);
  fclose (f);
  chmod (helper, 0755);
  char *oldpath = xstrdup (getenv ("PATH") ? getenv ("PATH") : "/usr/bin:/bin");
  char *newpath = xasprintf ("%s:%s", sandbox, oldpath);
  setenv ("PATH", newpath, 1);
  char *path2 = xasprintf ("%s/config2.json", sandbox);
  f = fopen (path2, "w");
  CU_ASSERT_FATAL (f != NULL);
  fputs ("{\"credHelpers\":{\"helped:1\":\"grtest\",\"tokened:1\":\"grtest\"},"
         "\"auths\":{\"other:1\":{\"auth\":\"dXNlcjpwYTpzcw==\"}}}",
         f);
  fclose (f);
  CU_ASSERT (gr_docker_config_credentials (&u, &p, path2, "helped:1", &err) == 1);
  CU_ASSERT (u && strcmp (u, "hu") == 0 && p && strcmp (p, "hs") == 0);
  free (u);
  free (p);
  u = p = NULL;
  /* a helper's identity token */
  CU_ASSERT (gr_docker_config_credentials (&u, &p, path2, "tokened:1", &err) == 1);
  CU_ASSERT (u && strcmp (u, GR_IDENTITY_TOKEN_USER) == 0 && p && strcmp (p, "ht") == 0);
  free (u);
  free (p);
  u = p = NULL;
  /* not a helper's registry: the auths entry */
  CU_ASSERT (gr_docker_config_credentials (&u, &p, path2, "other:1", &err) == 1);
  CU_ASSERT (u && strcmp (u, "user") == 0);
  free (u);
  free (p);
  u = p = NULL;
  f = fopen (path2, "w");
  fputs ("{\"credsStore\":\"grtest\"}", f);
  fclose (f);
  CU_ASSERT (gr_docker_config_credentials (&u, &p, path2, "helped:1", &err) == 1);
  free (u);
  free (p);
  /* the helper does not know it: no credentials, no error */
  CU_ASSERT (gr_docker_config_credentials (&u, &p, path2, "unknown:1", &err) == 0);
  setenv ("PATH", oldpath, 1);
  free (oldpath);
  free (newpath);
  free (path2);
  free (helper);

  char *missing = xasprintf ("%s/nope.json", sandbox);
  CU_ASSERT (gr_docker_config_credentials (&u, &p, missing, "docker.io", &err) == 0);
  free (missing);
  free (path);
}

static int
suite_init (void)
{
  sandbox = unit_mkdtemp ();
  return 0;
}

static int
suite_clean (void)
{
  unit_rm_rf (sandbox);
  free (sandbox);
  return 0;
}

int
main (void)
{
  if (CU_initialize_registry () != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite ("registry", suite_init, suite_clean);
  CU_add_test (s, "reference parsing", test_reference);
  CU_add_test (s, "WWW-Authenticate parsing", test_www_authenticate);
  CU_add_test (s, "platforms", test_platform);
  CU_add_test (s, "manifests and platform selection", test_manifest);
  CU_add_test (s, "image config and chain IDs", test_image_config);
  CU_add_test (s, "docker config credentials", test_docker_config);
  return unit_run ();
}
