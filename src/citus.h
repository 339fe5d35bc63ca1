/*-------------------------------------------------------------------------
 *
 * citus.h
 *	  What the extension needs to know about Citus (src/citus.c): is a
 *	  given table one of its tables, and of which kind.
 *
 * Nothing here links against Citus: its metadata is read from its catalog
 * table (pg_catalog.pg_dist_partition) by name, so the library loads and
 * runs the same with or without Citus.
 *
 *-------------------------------------------------------------------------
 */
#ifndef IDEMPOTENCY_CITUS_H
#define IDEMPOTENCY_CITUS_H

#include "utils/uuid.h"

/* What Citus makes of a table. */
typedef enum IdemCitusKind
{
	IDEM_CITUS_NONE = 0,		/* no Citus here, or a plain PostgreSQL table */
	IDEM_CITUS_LOCAL,			/* a Citus local table (coordinator only) */
	IDEM_CITUS_REFERENCE,		/* a reference table (copy on every node) */
	IDEM_CITUS_DISTRIBUTED		/* distributed (hash, range, append, or one
								 * shard without a shard key) */
} IdemCitusKind;

extern bool idem_citus_installed(void);
extern IdemCitusKind idem_citus_table_kind(Oid relid);
extern const char *idem_citus_kind_name(IdemCitusKind kind);
extern bool idem_citus_distributed(const char *table);
extern void idem_random_uuid(pg_uuid_t *uuid);

/*
 * On a distributed table, a release on one node cannot wake a waiter on
 * another (the key waits of locks.c are node-local), so waits there also
 * look again at least this often.
 */
#define IDEM_CITUS_POLL_MS	100

/* Rows of idempotency.mutex_slots made by citus_distribute() (0 .. n-1). */
#define IDEM_CITUS_MUTEX_SLOTS	256

#endif							/* IDEMPOTENCY_CITUS_H */
