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

/*
 * Lock-tag namespaces (locktag_field4 of our advisory lock tags).  Core's
 * advisory locks use 1 and 2 only, so these never collide with the
 * application's pg_advisory_lock() keys.  pg_locks.objsubid is an int2:
 * keep the values below 32768.  Never renumber: the values are visible in
 * pg_locks and are what tools and docs refer to.
 */
#define IDEM_LOCKSPACE_MUTEX		0x4900	/* keyed mutexes (section 3) */
#define IDEM_LOCKSPACE_EVENT		0x4901	/* claims of processed events */
#define IDEM_LOCKSPACE_EVENT_WAIT	0x4902	/* waiters for an event outcome */
#define IDEM_LOCKSPACE_LEASE		0x4903	/* lease changes */
#define IDEM_LOCKSPACE_LEASE_WAIT	0x4904	/* waiters for a lease */
#define IDEM_LOCKSPACE_MUTEX_SESSION 0x4905	/* marks session mutexes */

/* idempotency.c */
extern void idempotency_check_version(void);

/* events.c */
extern void idem_events_init(void);

/* locks.c */
#include "storage/lock.h"
#include "utils/timestamp.h"

typedef struct IdemKeyWait
{
	LOCKTAG		tag;
	bool		active;
} IdemKeyWait;

extern uint64 idem_hash_key(const char *key, int len, uint64 seed);
extern void idem_locktag(LOCKTAG *tag, uint16 lockspace, uint64 hash);
extern void idem_forbid_parallel(const char *what);
extern bool idem_lock_acquire(const LOCKTAG *tag, LOCKMODE mode, bool session,
							  int timeout_ms);
extern int	idem_timeout_ms(int64 usecs);
extern void idem_keywait_begin(IdemKeyWait *w, uint16 lockspace, uint64 hash);
extern bool idem_keywait_sleep(IdemKeyWait *w, TimestampTz until);
extern void idem_keywait_end(IdemKeyWait *w);
extern void idem_keywait_notify(uint16 lockspace, uint64 hash);

#endif							/* IDEMPOTENCY_H */
