/*-------------------------------------------------------------------------
 *
 * locks.c
 *	  Lock-manager building blocks shared by the mutexes, the processed-events
 *	  tracker and the leases: private lock-tag namespaces, lock acquisition
 *	  with a timeout that returns false instead of raising, and "wait until a
 *	  key changes" with a wake-up sent when the changing transaction commits.
 *
 * Lock tags.  An extension cannot add a lock method (LockMethods[] is static
 * in lock.c), so our locks are advisory locks (USER_LOCKMETHOD) whose
 * locktag_field4 holds one of the IDEM_LOCKSPACE_* values of idempotency.h.
 * Core's advisory locks only ever use field4 = 1 (one int8 key) or 2 (two
 * int4 keys), so our tags can never equal the application's own
 * pg_advisory_lock() tags.  field1 is the database (locks are per database,
 * as advisory locks are); field2/field3 are the two halves of a 64-bit hash
 * of the key text.  In pg_locks they show as locktype 'advisory' with
 * classid/objid = the hash halves and objsubid = the namespace.  Because they
 * are advisory locks, pg_advisory_unlock_all() and DISCARD ALL release the
 * session-level ones too, like any advisory lock.
 *
 * Timeouts.  A lock wait in the lock manager can only end in an ERROR
 * (lock_timeout, statement_timeout, cancel, deadlock).  To turn "the timeout
 * ran out" into a false result that leaves the caller's transaction usable,
 * idem_lock_acquire() with a timeout first tries without waiting (the fast
 * path: no subtransaction), and only when it has to wait does so inside an internal
 * subtransaction with LockTimeout set to the caller's timeout; a
 * lock-not-available error rolls the subtransaction back and becomes false,
 * every other error is re-thrown (a wait that follows lock_timeout, whose
 * expiry is an error anyway, is one plain LockAcquire).  A lock granted inside the subtransaction
 * is handed to the parent resource owner when the subtransaction commits.
 * LockTimeout is an int: a timeout longer than INT_MAX milliseconds (about
 * 24.8 days) waits in as many such subtransactions as it takes.
 * The wait itself is the lock manager's: FIFO, deadlock detection, visible in
 * pg_locks and pg_stat_activity.
 *
 * Key waits.  Some waits are not for a lock but for a row to change state:
 * a lease to be released, a claimed idempotency key to be completed.  Those
 * states live in committed rows whose owners hold no lock, so the lock
 * manager cannot queue us.  Instead a waiter advertises itself by holding a
 * transaction-level ShareLock on a tag in a "wait" namespace, re-checks its
 * condition, and sleeps on its latch until woken or until its deadline.  A
 * transaction that changes the state of a key calls idem_keywait_notify();
 * when (and only when) that transaction commits, the transaction callback
 * finds the holders of the wait tag with GetLockConflicts() and sets their
 * latches.  Waking at commit, not at the change, is what makes it free of
 * lost wake-ups: a waiter that re-checks after being woken sees the
 * committed state.  A waiter that registered after the commit sees the new
 * state on its first check.  Wake-ups may be spurious (a hash collision, a
 * latch set for another reason); callers always re-check in a loop.  No
 * shared memory of our own is needed, so none of this requires
 * shared_preload_libraries.
 *
 * Prepared transactions.  A change made by a transaction that is then
 * prepared becomes visible at COMMIT PREPARED, which runs no callback of
 * ours (and may run in another backend, or after a restart).  At PREPARE
 * the transaction therefore takes each changed key's "prepared" tag (the
 * wait tag moved by IDEM_LOCKSPACE_PREPARED_OFFSET) in RowExclusiveLock;
 * the prepared transaction keeps it, like any of its locks, until COMMIT or
 * ROLLBACK PREPARED releases it after recording the outcome.  It then wakes
 * the waiters, which, before each sleep, look for a held prepared tag and
 * queue on it in the lock manager (ShareLock, which conflicts) instead of
 * sleeping on their latch.  Preparers' modes do not conflict with each
 * other; but a waiter already queued for a key's prepared tag (behind one
 * prepared transaction) makes a second PREPARE of a change of that key
 * queue behind it, until the first prepared transaction is finished (the
 * lock manager grants no mode that conflicts with a queued request).
 *
 * Deadlines.  Every sleep is computed from an absolute deadline in int64
 * microseconds and clamped to INT_MAX milliseconds, the most WaitLatch()
 * and LockTimeout take; a longer wait simply sleeps again.
 *
 * Locking.  The lock manager's own partition locks protect the tags; the
 * pending-notify list is backend-local.
 *
 * Memory and lifetime.  The pending-notify list lives in
 * TopTransactionContext; the transaction callback empties it at commit,
 * abort and prepare, before that context goes.  Locks taken here belong to
 * the current (sub)transaction's resource owner, session locks to the
 * session.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "idempotency.h"
#include "locks.h"
#include "plans.h"

#include "access/parallel.h"
#include "access/xact.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "storage/sinvaladt.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

/* Tags whose waiters are to be woken when the current transaction commits. */
typedef struct PendingNotify
{
	LOCKTAG		tag;
	struct PendingNotify *next;
} PendingNotify;

static PendingNotify *pending_notifies = NULL;

static void keywait_xact_callback(XactEvent event, void *arg);
static void keywait_wake(const LOCKTAG *tag);
static bool lock_wait_body(void *arg);
static void lock_wait_cleanup(void *arg);

/*
 * 64-bit hash of a key.  The seed separates uses that must not share
 * hashes even when the texts are equal.
 */
uint64
idem_hash_key(const char *key, int len, uint64 seed)
{
	return hash_bytes_extended((const unsigned char *) key, len, seed);
}

void
idem_locktag(LOCKTAG *tag, uint16 lockspace, uint64 hash)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId,
						 (uint32) (hash >> 32), (uint32) hash, lockspace);
}

/*
 * Refuse to run in a parallel worker or in parallel mode: locks taken there
 * belong to the wrong process, and subtransactions cannot be started.
 */
void
idem_forbid_parallel(const char *what)
{
	if (IsInParallelMode() || IsParallelWorker())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("cannot call %s during a parallel operation", what),
				 errhint("Call it outside parallel queries; it is marked PARALLEL UNSAFE, so a planner will not parallelize it unless that marking was changed.")));
}

/* Argument of lock_wait_body() and lock_wait_cleanup(). */
typedef struct LockWait
{
	const LOCKTAG *tag;
	LOCKMODE	mode;
	bool		session;
	int			timeout_ms;
	int			save_timeout;
} LockWait;

static bool
lock_wait_body(void *arg)
{
	LockWait   *w = (LockWait *) arg;

	w->save_timeout = LockTimeout;
	LockTimeout = w->timeout_ms;
	idem_stats_wait_start();
	(void) LockAcquire(w->tag, w->mode, w->session, false);
	return true;
}

static void
lock_wait_cleanup(void *arg)
{
	LockWait   *w = (LockWait *) arg;

	idem_stats_wait_stop();
	LockTimeout = w->save_timeout;
}

/*
 * Acquire a lock, waiting at most timeout_ms.
 *
 *	timeout_ms < 0	wait as the server's lock_timeout says (its expiry raises
 *					55P03, exactly as pg_advisory_lock does)
 *	timeout_ms = 0	only try
 *	timeout_ms > 0	wait up to that many milliseconds
 *
 * Returns true when the lock was acquired (or was already held: locks are
 * counted, like advisory locks), false when it was not free in time.  Any
 * other way the wait can end (deadlock 40P01, statement_timeout, cancel) is
 * raised.  The lock manager may grant the lock in the same instant the wait
 * ends in an error (false or raised): it keeps that grant, and while an
 * aborted (sub)transaction takes a transaction lock with it, a session lock
 * stays.  A caller asking for a session lock releases it on abort itself
 * (mutex.c's abort callbacks).
 */
bool
idem_lock_acquire(const LOCKTAG *tag, LOCKMODE mode, bool session, int64 timeout_ms)
{
	LockWait	w;
	TimestampTz deadline;

	/*
	 * Waiting as lock_timeout says needs no subtransaction: one LockAcquire
	 * (a separate try first would take the partition lock twice on every
	 * contended call).
	 */
	if (timeout_ms < 0)
	{
		/* A call being counted tries first, to learn whether it waits. */
		if (idem_stats_depth > 0 &&
			LockAcquire(tag, mode, session, true) != LOCKACQUIRE_NOT_AVAIL)
			return true;
		idem_stats_wait_start();
		(void) LockAcquire(tag, mode, session, false);
		idem_stats_wait_stop();
		return true;
	}

	/* Fast path: free (or ours already), no subtransaction needed. */
	if (LockAcquire(tag, mode, session, true) != LOCKACQUIRE_NOT_AVAIL)
		return true;
	if (timeout_ms == 0)
		return false;

	/*
	 * Slow path: wait in a subtransaction so that the lock timeout's ERROR
	 * can be turned into "false" with the caller's transaction intact.  A
	 * lock granted inside it is handed to the parent when it commits.
	 */
	w.tag = tag;
	w.mode = mode;
	w.session = session;
	w.save_timeout = LockTimeout;
	deadline = GetCurrentTimestamp() + timeout_ms * 1000;
	for (;;)
	{
		w.timeout_ms = (int) Min(timeout_ms, (int64) INT_MAX);
		if (idem_subxact_run(lock_wait_body, lock_wait_cleanup, &w,
							 ERRCODE_LOCK_NOT_AVAILABLE, NULL))
			return true;
		if (timeout_ms <= INT_MAX)
			return false;
		/* a longer timeout than LockTimeout holds: wait again for the rest */
		timeout_ms = idem_timeout_ms(deadline - GetCurrentTimestamp());
		if (timeout_ms <= 0)
			return false;
	}
}

/*
 * Convert an interval-like number of microseconds to the milliseconds
 * idem_lock_acquire() takes, rounding up so that 1 us still waits.
 */
int64
idem_timeout_ms(int64 usecs)
{
	if (usecs <= 0)
		return 0;
	return (usecs + 999) / 1000;
}

/*
 * Start waiting for changes of the key whose wait tag is (lockspace, hash).
 * Call before checking the condition, so that a change committed after the
 * check wakes us.
 */
void
idem_keywait_begin(IdemKeyWait *w, uint16 lockspace, uint64 hash)
{
	idem_locktag(&w->tag, lockspace, hash);
	/* Only ShareLocks are ever taken on wait tags: this never blocks. */
	(void) LockAcquire(&w->tag, ShareLock, false, false);
	w->active = true;
}

/*
 * Sleep until woken or until "until" (an absolute time from
 * GetCurrentTimestamp(), the clock clock_timestamp() reads).  Returns false,
 * without sleeping, when "until" has already passed.  Interrupts (cancel,
 * statement_timeout, termination) are served.
 */
bool
idem_keywait_sleep(IdemKeyWait *w, TimestampTz until)
{
	TimestampTz now = GetCurrentTimestamp();
	int64		ms;
	LOCKTAG		prepared;
	ResourceOwner save_owner;

	Assert(w->active);
	if (now >= until)
		return false;
	/* Rounded up, and clamped: WaitLatch() and LockTimeout take an int. */
	ms = (until - now + 999) / 1000;
	if (ms > INT_MAX)
		ms = INT_MAX;

	/*
	 * A prepared transaction that changed the key holds its "prepared" tag
	 * until COMMIT or ROLLBACK PREPARED, which may run in another backend,
	 * long after, or after a restart: nothing would set our latch then.  So
	 * when that tag is taken, wait for it in the lock manager instead, which
	 * wakes us when it is released (after the outcome is visible).
	 */
	prepared = w->tag;
	prepared.locktag_field4 += IDEM_LOCKSPACE_PREPARED_OFFSET;
	save_owner = CurrentResourceOwner;
	/* where idem_lock_acquire()'s subtransaction hands a granted lock */
	CurrentResourceOwner = CurTransactionResourceOwner;
	if (LockAcquire(&prepared, ShareLock, false, true) == LOCKACQUIRE_NOT_AVAIL)
	{
		bool		got = idem_lock_acquire(&prepared, ShareLock, false, (int) ms);

		if (got)
			LockRelease(&prepared, ShareLock, false);
		CurrentResourceOwner = save_owner;
		CHECK_FOR_INTERRUPTS();
		return true;
	}
	LockRelease(&prepared, ShareLock, false);
	CurrentResourceOwner = save_owner;

	idem_stats_wait_start();
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 (long) ms, PG_WAIT_EXTENSION);
	idem_stats_wait_stop();
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	return true;
}

/* Stop waiting; releases the wait tag. */
void
idem_keywait_end(IdemKeyWait *w)
{
	if (w->active)
	{
		LockRelease(&w->tag, ShareLock, false);
		w->active = false;
	}
}

/*
 * Ask for the waiters on (lockspace, hash) to be woken when the current
 * transaction commits.  Nothing happens if it aborts.
 */
void
idem_keywait_notify(uint16 lockspace, uint64 hash)
{
	PendingNotify *n;
	LOCKTAG		tag;

	idem_locktag(&tag, lockspace, hash);
	for (n = pending_notifies; n != NULL; n = n->next)
		if (memcmp(&n->tag, &tag, sizeof(LOCKTAG)) == 0)
			return;

	n = MemoryContextAlloc(TopTransactionContext, sizeof(PendingNotify));
	n->tag = tag;
	n->next = pending_notifies;
	pending_notifies = n;
}

/* Set the latch of every backend waiting on tag. */
static void
keywait_wake(const LOCKTAG *tag)
{
	VirtualTransactionId *vxids;
	int			count;
	int			i;

	vxids = GetLockConflicts(tag, ExclusiveLock, &count);
	for (i = 0; i < count; i++)
	{
		PGPROC	   *proc = IdemVxidGetProc(vxids[i]);

		/*
		 * The backend may have exited and its slot been reused since; then we
		 * set an unrelated latch, which is harmless (latch wake-ups may
		 * always be spurious).
		 */
		if (proc != NULL)
			SetLatch(&proc->procLatch);
	}
	/* vxids is in the transaction's memory, freed with it. */
}

/* Called once from _PG_init(). */
void
idem_locks_init(void)
{
	RegisterXactCallback(keywait_xact_callback, NULL);
}

static void
keywait_xact_callback(XactEvent event, void *arg)
{
	PendingNotify *n;

	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			/*
			 * Our changes are visible to others by now (the callback runs
			 * after ProcArrayEndTransaction) and the list lives in
			 * TopTransactionContext, which is still there.
			 */
			for (n = pending_notifies; n != NULL; n = n->next)
				keywait_wake(&n->tag);
			pending_notifies = NULL;
			break;
		case XACT_EVENT_PRE_PREPARE:
			/*
			 * The outcome becomes visible at COMMIT PREPARED, where no
			 * callback of ours runs.  Take each key's "prepared" tag in a
			 * mode that conflicts with the waiters' ShareLock but not with
			 * other preparers; PREPARE hands it to the prepared transaction,
			 * and COMMIT/ROLLBACK PREPARED releases it after the outcome is
			 * recorded, waking the waiters queued on it.
			 */
			for (n = pending_notifies; n != NULL; n = n->next)
			{
				LOCKTAG		prepared = n->tag;

				prepared.locktag_field4 += IDEM_LOCKSPACE_PREPARED_OFFSET;
				(void) LockAcquire(&prepared, RowExclusiveLock, false, false);
			}
			break;
		case XACT_EVENT_PREPARE:
			/*
			 * Wake the waiters now, so that they stop sleeping on their
			 * latch and queue on the prepared tag instead.
			 */
			for (n = pending_notifies; n != NULL; n = n->next)
				keywait_wake(&n->tag);
			pending_notifies = NULL;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* Nothing changed. */
			pending_notifies = NULL;
			break;
		default:
			break;
	}
}
