/*-------------------------------------------------------------------------
 *
 * locks.h
 *	  Lock-manager building blocks (src/locks.c): private lock-tag
 *	  namespaces, lock acquisition with a timeout that returns false, and
 *	  waits for a key to change with wake-ups at commit (COMMIT PREPARED
 *	  included).
 *
 *-------------------------------------------------------------------------
 */
#ifndef IDEMPOTENCY_LOCKS_H
#define IDEMPOTENCY_LOCKS_H

#include "storage/lock.h"
#include "utils/timestamp.h"

/*
 * Lock-tag namespaces (locktag_field4 of our advisory lock tags).  Core's
 * advisory locks use 1 and 2 only, so these never collide with the
 * application's pg_advisory_lock() keys.  pg_locks.objsubid is an int2:
 * keep the values below 32768.  Never renumber: the values are visible in
 * pg_locks and are what tools and docs refer to.
 */
#define IDEM_LOCKSPACE_MUTEX		0x4900	/* keyed mutexes */
#define IDEM_LOCKSPACE_EVENT		0x4901	/* claims of processed events */
#define IDEM_LOCKSPACE_EVENT_WAIT	0x4902	/* waiters for an event outcome */
#define IDEM_LOCKSPACE_LEASE		0x4903	/* lease changes */
#define IDEM_LOCKSPACE_LEASE_WAIT	0x4904	/* waiters for a lease */
#define IDEM_LOCKSPACE_MUTEX_SESSION 0x4905	/* marks session mutexes */

/*
 * A prepared transaction that changed a key holds, until COMMIT/ROLLBACK
 * PREPARED, a lock on the key's wait tag moved into this offset of the
 * namespace (0x4912 for EVENT_WAIT, 0x4914 for LEASE_WAIT).
 */
#define IDEM_LOCKSPACE_PREPARED_OFFSET 0x10

typedef struct IdemKeyWait
{
	LOCKTAG		tag;
	bool		active;
} IdemKeyWait;

extern uint64 idem_hash_key(const char *key, int len, uint64 seed);
extern void idem_locktag(LOCKTAG *tag, uint16 lockspace, uint64 hash);
extern void idem_forbid_parallel(const char *what);
extern bool idem_lock_acquire(const LOCKTAG *tag, LOCKMODE mode, bool session,
							  int64 timeout_ms);
extern int64 idem_timeout_ms(int64 usecs);
extern void idem_keywait_begin(IdemKeyWait *w, uint16 lockspace, uint64 hash);
extern bool idem_keywait_sleep(IdemKeyWait *w, TimestampTz until);
extern void idem_keywait_end(IdemKeyWait *w);
extern void idem_keywait_notify(uint16 lockspace, uint64 hash);

#endif							/* IDEMPOTENCY_LOCKS_H */
