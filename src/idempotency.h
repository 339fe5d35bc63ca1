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

/* events.c */
extern void idem_events_init(void);

#endif							/* IDEMPOTENCY_H */
