/*-------------------------------------------------------------------------
 *
 * idempotency.h
 *	  Declarations shared between the extension's source files.
 *
 *-------------------------------------------------------------------------
 */
#ifndef IDEMPOTENCY_H
#define IDEMPOTENCY_H

#include "compat.h"
#include "stats.h"

#ifndef IDEMPOTENCY_VERSION
#error "IDEMPOTENCY_VERSION must be defined by the build (see Makefile)"
#endif

/* Name of the extension and of its schema (fixed: relocatable = false). */
#define IDEMPOTENCY_EXTNAME		"idempotency"
#define IDEMPOTENCY_SCHEMA		"idempotency"

/* idempotency.c */
extern void idempotency_check_version(void);
extern void idem_check_writable(const char *fn);
extern bool idem_session_locks;	/* GUC idempotency.session_locks */
extern bool idem_call_scan;	/* GUC idempotency.call_scan */

/*
 * The relcache invalidation handlers of the backend-local caches, called by
 * the one relcache callback idempotency.c registers (InvalidOid: every
 * relation).  A backend has ten relcache callback slots, Citus takes five
 * and PostgreSQL two, and the eleventh registration is a FATAL error, so
 * the caches share a slot.  Each handler may run before its cache exists,
 * and must neither fail nor read the catalogs.
 */
extern void idem_tables_relcache_inval(Oid relid);	/* plans.c */
extern void idem_citus_relcache_inval(Oid relid);	/* citus.c */
extern void idem_events_relcache_inval(Oid relid);	/* events.c */
extern void idem_rows_relcache_inval(Oid relid);	/* rows.c */
extern void idem_upsert_relcache_inval(Oid relid);	/* upsert.c */


/* Called once from _PG_init(): each file's transaction callbacks. */
extern void idem_events_init(void);
extern void idem_upsert_init(void);
extern void idem_mutex_init(void);
extern void idem_locks_init(void);
extern void idem_callscan_init(void);	/* callscan.c: the planner hook */
/* callscan.c: the relation the executor opened for this call, if any */
extern Relation idem_callscan_relation(FunctionCallInfo fcinfo);

/* upsert.c: the upserts' planner support function (callscan.c finds it) */
extern Datum idempotency_upsert_support(PG_FUNCTION_ARGS);

#endif							/* IDEMPOTENCY_H */
