/* dockerd's reference store: `image/<D>/repositories.json`, and the
   reference names it uses (normalized and familiar).  */
#ifndef GR_REFSTORE_H
#define GR_REFSTORE_H

#include "graphroot.h"

#include <jansson.h>

/* Normalize a repository name as docker does: "ubuntu" ->
   "docker.io/library/ubuntu", "u/r" -> "docker.io/u/r",
   "index.docker.io/x" -> "docker.io/library/x"; a first component with a
   '.' or ':' or equal to "localhost" is a registry host and stays.  No tag
   or digest in NAME.  Fails on an invalid name (uppercase, bad chars).  */
int gr_ref_normalize (char **out, const char *name, gr_error_t *err);
/* The familiar form of a (normalized or not) name: docker.io/library/x ->
   "x", docker.io/u/r -> "u/r", anything else unchanged.  */
int gr_ref_familiar (char **out, const char *name, gr_error_t *err);

/* Add NAME:TAG (TAG may be NULL) and NAME@DIGEST (DIGEST, the manifest
   digest, may be NULL) -> IMAGE_ID to repositories.json, as dockerd's
   AddTag(force) / AddDigest: keys are familiar names, every other entry
   is kept, written atomically (0600) under the root's lock.  */
int gr_refstore_add (struct gr_graphroot *root, const char *name, const char *tag, const char *digest,
                     const char *image_id, gr_error_t *err);
/* Image ID of REF ("name:tag" or "name@sha256:..", any name form; a name
   without tag means :latest).  Returns 1 and *IMAGE_ID if found, 0 if
   not.  */
int gr_refstore_lookup (struct gr_graphroot *root, char **image_id, const char *ref, gr_error_t *err);
/* The whole {"Repositories":{...}} object (an empty one if no file).  */
int gr_refstore_load (struct gr_graphroot *root, json_t **out, gr_error_t *err);

#endif
