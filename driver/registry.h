/* Registry client (Registry HTTP API v2 / OCI distribution): image
   references, WWW-Authenticate challenges, manifests and platform
   selection (registry-parse.c, pure functions), and the HTTP side
   (registry.c: ping, Bearer/Basic auth, manifests, blobs with retries,
   manual redirects and Range resume).  */
#ifndef GR_REGISTRY_H
#define GR_REGISTRY_H

#include "utils.h"

#include <jansson.h>

#define GR_DEFAULT_DOMAIN "docker.io"
#define GR_MANIFEST_MAX (4 * 1024 * 1024)
#define GR_CONFIG_MAX (8 * 1024 * 1024)

#define GR_MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define GR_MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define GR_MT_DOCKER_V1 "application/vnd.docker.distribution.manifest.v1+json"
#define GR_MT_DOCKER_V1_SIGNED "application/vnd.docker.distribution.manifest.v1+prettyjws"
#define GR_MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define GR_MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define GR_MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"
#define GR_MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"

/* --- references (as docker's distribution/reference ParseNormalizedNamed) --- */

struct gr_reference
{
  char *domain; /* "docker.io", "127.0.0.1:5000", "[::1]:5000" */
  char *path;   /* "library/ubuntu" */
  char *tag;    /* "latest" when neither tag nor digest was given; NULL if digest only */
  char *digest; /* "sha256:<hex>" or NULL */
};

int gr_reference_parse (struct gr_reference **out, const char *s, gr_error_t *err);
void gr_reference_free (struct gr_reference *r);
/* "ubuntu", "user/repo", "127.0.0.1:5000/x": the name dockerd shows and
   keeps in repositories.json.  */
char *gr_reference_familiar_name (const struct gr_reference *r);
/* "docker.io/library/ubuntu": the SourceRepository of v2metadata.  */
char *gr_reference_full_name (const struct gr_reference *r);
/* The familiar name with ":tag" and/or "@digest".  */
char *gr_reference_string (const struct gr_reference *r);
/* The host to talk to: "registry-1.docker.io" for docker.io.  */
const char *gr_reference_api_host (const struct gr_reference *r);

static inline void
gr_cleanup_referencep (struct gr_reference **r)
{
  gr_reference_free (*r);
}
#define cleanup_reference __attribute__ ((cleanup (gr_cleanup_referencep)))

/* --- WWW-Authenticate --- */

struct gr_auth_challenge
{
  char *scheme; /* lowercased: "bearer", "basic" */
  char *realm;
  char *service;
  char *scope;
  char *error;
};

/* Parse a WWW-Authenticate header value (one or more challenges, params
   quoted or not).  */
int gr_auth_challenges_parse (struct gr_auth_challenge **out, size_t *n, const char *value, gr_error_t *err);
void gr_auth_challenges_free (struct gr_auth_challenge *c, size_t n);

/* --- platforms --- */

struct gr_platform
{
  char *os;
  char *arch;
  char *variant; /* may be NULL */
};

/* "os/arch[/variant]", normalised (x86_64 -> amd64, aarch64 -> arm64, ...).  */
int gr_platform_parse (struct gr_platform *out, const char *s, gr_error_t *err);
/* The host's platform (linux/amd64, linux/arm64/v8, ...).  */
void gr_platform_default (struct gr_platform *out);
void gr_platform_clear (struct gr_platform *p);
char *gr_platform_string (const struct gr_platform *p);
/* Does an index entry for OS/ARCH/VARIANT satisfy WANT?  */
bool gr_platform_match (const struct gr_platform *want, const char *os, const char *arch,
                        const char *variant);

/* --- manifests --- */

struct gr_descriptor
{
  char *media_type;
  char *digest;
  int64_t size;
  struct gr_platform platform; /* index entries only; fields may be NULL */
};

enum gr_manifest_kind
{
  GR_MANIFEST_IMAGE,
  GR_MANIFEST_INDEX,
};

struct gr_manifest
{
  enum gr_manifest_kind kind;
  char *media_type;
  struct gr_descriptor config; /* images */
  struct gr_descriptor *layers;
  size_t n_layers;
  struct gr_descriptor *manifests; /* indexes */
  size_t n_manifests;
};

/* Parse a manifest or index.  CONTENT_TYPE (may be NULL) is the response's
   Content-Type; the document's own mediaType wins where present and must
   agree.  Ambiguous documents (an index with layers, an image manifest
   with manifests), schema1 and unknown types are refused.  */
int gr_manifest_parse (struct gr_manifest **out, const char *content_type, const void *data, size_t len,
                       gr_error_t *err);
void gr_manifest_free (struct gr_manifest *m);
/* Pick the entry of index M for platform P.  */
int gr_manifest_select (const struct gr_descriptor **out, const struct gr_manifest *m,
                        const struct gr_platform *p, gr_error_t *err);

static inline void
gr_cleanup_manifestp (struct gr_manifest **m)
{
  gr_manifest_free (*m);
}
#define cleanup_manifest __attribute__ ((cleanup (gr_cleanup_manifestp)))

/* The image config's rootfs.diff_ids (validated sha256 digests) and its
   os/architecture/variant.  */
struct gr_image_config
{
  char **diff_ids;
  size_t n_diff_ids;
  struct gr_platform platform;
};
int gr_image_config_parse (struct gr_image_config **out, const void *data, size_t len, gr_error_t *err);
void gr_image_config_free (struct gr_image_config *c);

/* chainID of DIFF_IDS[0..N-1] into CHAIN (N entries, each "sha256:<hex>").  */
void gr_chain_ids (char **chain, char *const *diff_ids, size_t n);

/* --- the HTTP client --- */

struct gr_registry;

struct gr_registry_opts
{
  const char *username; /* NULL: from the docker config, else anonymous */
  const char *password;
  /* Extra hosts (host[:port]) to talk to over plain http / without TLS
     verification, as dockerd's --insecure-registry.  127.0.0.0/8, ::1
     and localhost always are.  */
  const char *const *insecure;
  size_t n_insecure;
  const char *docker_config; /* config.json path; NULL: $DOCKER_CONFIG or ~/.docker */
  bool verbose;              /* log requests to stderr */
};

/* A client for the repository REF->path on REF's registry.  Does not talk
   to the network yet.  */
int gr_registry_new (struct gr_registry **out, const struct gr_reference *ref,
                     const struct gr_registry_opts *opts, gr_error_t *err);
void gr_registry_free (struct gr_registry *r);
/* GET /v2/ (choosing https or http for insecure hosts) and set up auth.  */
int gr_registry_ping (struct gr_registry *r, gr_error_t *err);
/* "https://host" or "http://host", after ping.  */
const char *gr_registry_base_url (struct gr_registry *r);

/* Fetch a manifest by tag or digest.  By tag, the digest is resolved first
   (HEAD, Docker-Content-Digest) and the document is then fetched by that
   digest; either way the bytes are checked against the digest and bounded
   to GR_MANIFEST_MAX.  *BODY gets the bytes, *MEDIA_TYPE the Content-Type,
   *DIGEST the verified digest.  */
int gr_registry_get_manifest (struct gr_buf *body, char **media_type, char **digest, struct gr_registry *r,
                              const char *tag_or_digest, gr_error_t *err);

/* Fetch a small blob (the config) of SIZE bytes (-1 if unknown) into
   memory, verified, at most MAX bytes.  */
int gr_registry_get_blob (struct gr_buf *body, struct gr_registry *r, const char *digest, int64_t size,
                          size_t max, gr_error_t *err);

/* Receives the blob's bytes in order, each exactly once (also across
   retries).  Returns <0 (filling ERR) to stop the download: no retry.  */
typedef int (*gr_blob_sink) (void *arg, const void *buf, size_t len, gr_error_t *err);

/* Stream the blob DIGEST (SIZE bytes, -1 if unknown) into SINK.  Retries
   on 5xx and connection errors with backoff, resuming with Range where the
   server allows it (else skipping what was delivered), follows redirects
   (credentials only to the registry itself), bounds the size to SIZE and
   verifies the digest at the end: success means the sink got exactly the
   blob.  Thread safe: several downloads may share R.  */
int gr_registry_fetch_blob (struct gr_registry *r, const char *digest, int64_t size, gr_blob_sink sink,
                            void *arg, gr_error_t *err);

/* The username under which credential helpers (and gr_docker_config_
   credentials) hand over an identity token as the password.  */
#define GR_IDENTITY_TOKEN_USER "<token>"

/* Credentials for REGISTRY_DOMAIN from a docker config.json: a credential
   helper (`credHelpers`, `credsStore`), else `auths` (`identitytoken`,
   base64 `auth`, or username/password).  An identity token comes back as
   user GR_IDENTITY_TOKEN_USER with the token as the password; the client
   trades it at the token realm (OAuth2 POST, grant_type=refresh_token, as
   dockerd).  Returns 1 if found, 0 if not.  */
int gr_docker_config_credentials (char **user, char **pass, const char *config_path,
                                  const char *registry_domain, gr_error_t *err);

#endif
