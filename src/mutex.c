/*-------------------------------------------------------------------------
 *
 * mutex.c
 *	  Keyed mutexes: any text key, hashed to 64 bits, locked
 *	  in the lock manager under the extension's own lock-tag namespace.
 *
 * A mutex is an advisory lock whose tag is (database, hash >> 32,
 * (uint32) hash, IDEM_LOCKSPACE_MUTEX); see locks.c.  Exclusive mutexes are
 * ExclusiveLock, shared ones ShareLock, the modes pg_advisory_lock and
 * pg_advisory_lock_shared use, so the conflict rules, the FIFO wait queue,
 * the deadlock detector and the re-entrant counting are the lock manager's.
 * Waiting with a timeout is idem_lock_acquire()'s (no polling).
 *
 * Scope.  pg_locks cannot tell a session lock from a transaction lock, and
 * the backend-local lock table that can is private to lock.c.  So every
 * session acquisition is paired with one session-level "marker" lock on the
 * same hash in namespace IDEM_LOCKSPACE_MUTEX_SESSION, in a mode that
 * conflicts with nothing ever taken there (AccessShareLock marks an
 * exclusive mutex, RowShareLock a shared one).  The lock manager counts the
 * marker exactly as it counts the mutex, so "this backend holds a session
 * mutex on key k in mode m" is LockHeldByMe(marker(k), marker mode(m)), and
 * other backends see it in pg_locks (mutex_holders).  pg_advisory_unlock_all
 * and DISCARD ALL release markers and mutexes together.  The marker is taken
 * before the mutex (so a waiting session lock is marked too); if the mutex
 * is not granted the marker is released, and if the wait ends in an error
 * the (sub)transaction abort callback releases it.  The lock manager may
 * grant the mutex in the same instant the wait ends in an error (a cancel,
 * a timeout, statement_timeout): it then keeps the lock granted while the
 * error is raised (LockErrorCleanup), and a session lock survives the
 * abort.  So the callback also releases the mutex when this call is what
 * made it held (it was not held before the call): the caller got an error,
 * not the mutex, and mutex and marker stay paired.
 *
 * idempotency.session_locks = off (idempotency.c) refuses new session
 * mutexes with 55000; unlocking still works, so nothing can be stranded.
 *
 * On a Citus cluster.  Citus does not forward advisory locks, so a mutex
 * taken on one node would not exclude a session on another.  Once
 * idempotency.citus_distribute() has filled and distributed
 * idempotency.mutex_slots (IDEM_CITUS_MUTEX_SLOTS rows, distributed by
 * slot), a key's slot is its hash modulo the slot count, and the node that
 * holds the slot's shard is where the key is locked: mutex_lock() and
 * mutex_try_lock() run, as the table's owner,
 *
 *	SELECT idempotency.mutex_lock_here($1, $2, $3, $4)
 *	  FROM idempotency.mutex_slots WHERE slot = $1 FOR KEY SHARE
 *
 * a router query that Citus sends to that node inside the caller's
 * distributed transaction (the row lock makes Citus open a remote
 * transaction block even outside BEGIN ... COMMIT, in a function), or
 * executes in the caller's own backend when the shard is local.  There
 * mutex_lock_here() takes the same lock as above, with the timeout, in
 * the worker backend that belongs to the distributed transaction, so the
 * mutex is released when that transaction commits or aborts, and its wait
 * is a lock-manager wait of a backend with a distributed transaction id,
 * which Citus's distributed deadlock detection sees.  The full 64-bit hash
 * is locked, so keys sharing a slot do not exclude each other.  Session
 * mutexes are refused on a distributed cluster (the worker connection of a
 * session lock would keep it with whichever transaction uses that
 * connection next), and mutex_holders() reports the owning node's lock
 * table (pids there).  Without Citus, or before citus_distribute(), the
 * cost of the check is one syscache probe per call.
 *
 * Locking.  The lock manager's partition locks protect everything; the
 * pending acquisition (marker and mutex) is backend-local.
 *
 * Memory and lifetime.  Nothing outlives a call but the locks themselves
 * (transaction or session scope) and the pending acquisition, a static
 * that is only meaningful while a session lock is being acquired.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "idempotency.h"
#include "locks.h"
#include "args.h"
#include "citus.h"
#include "plans.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

/* Seed of the key hash: the same text hashes differently in other features. */
#define MUTEX_HASH_SEED		((uint64) IDEM_LOCKSPACE_MUTEX)

#define MUTEX_MODE(shared)	((shared) ? ShareLock : ExclusiveLock)
#define MARKER_MODE(shared)	((shared) ? RowShareLock : AccessShareLock)

/* idempotency.session_locks (defined in idempotency.c). */

/*
 * A session mutex being acquired, while its marker is held (active): the
 * key's hash and the mode, from which both lock tags follow, and whether
 * this backend held the mutex in that mode before the call.
 */
typedef struct PendingMutex
{
	bool		active;
	bool		shared;
	bool		was_held;
	uint64		hash;
} PendingMutex;

static PendingMutex pending;

/* What an error context callback reports. */
typedef struct MutexErrorContext
{
	const char *key;
	int			len;
} MutexErrorContext;

static uint64 mutex_key_hash(FunctionCallInfo fcinfo, int argno,
							 char **key, int *len);
static bool mutex_arg_bool(FunctionCallInfo fcinfo, int argno, const char *name);
static int64 mutex_arg_timeout(FunctionCallInfo fcinfo, int argno, const char *fn);
static bool mutex_acquire(FunctionCallInfo fcinfo, int timeout_arg,
						  int shared_arg, bool session);
static void mutex_error_context(void *arg);
static void mutex_release_pending(bool aborted);
static void mutex_xact_callback(XactEvent event, void *arg);
static void mutex_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
								   SubTransactionId parentSubid, void *arg);
static const char *mutex_mode_name(LOCKMODE mode);
static Datum mutex_holders_local(FunctionCallInfo fcinfo, uint64 hash);
static void mutex_check_internal_caller(const char *fn);

PG_FUNCTION_INFO_V1(idempotency_mutex_lock);
PG_FUNCTION_INFO_V1(idempotency_mutex_try_lock);
PG_FUNCTION_INFO_V1(idempotency_mutex_session_lock);
PG_FUNCTION_INFO_V1(idempotency_mutex_session_try_lock);
PG_FUNCTION_INFO_V1(idempotency_mutex_session_unlock);
PG_FUNCTION_INFO_V1(idempotency_mutex_session_unlock_all);
PG_FUNCTION_INFO_V1(idempotency_mutex_holders);
PG_FUNCTION_INFO_V1(idempotency_mutex_lock_here);
PG_FUNCTION_INFO_V1(idempotency_mutex_holders_here);

/* The statements that send a mutex to the node owning its slot. */
enum
{
	MPLAN_LOCK,
	MPLAN_HOLDERS,
	NUM_MPLANS
};

static SPIPlanPtr mutex_saved_plans[NUM_MPLANS];

static const IdemPlanDef mutex_plan_defs[NUM_MPLANS] = {
	[MPLAN_LOCK] = {
	/* $1 slot, $2 hash, $3 shared, $4 timeout in ms (-1: lock_timeout) */
	"SELECT idempotency.mutex_lock_here($1, $2, $3, $4)"
	" FROM idempotency.mutex_slots WHERE slot OPERATOR(pg_catalog.=) $1"
	" FOR KEY SHARE",
		4, {INT4OID, INT8OID, BOOLOID, INT8OID}
	},
	[MPLAN_HOLDERS] = {
	"SELECT h.pid, h.mode, h.granted, h.scope, h.waiting_since"
	" FROM idempotency.mutex_slots AS s,"
	" idempotency.mutex_holders_here($1, $2) AS h"
	" WHERE s.slot OPERATOR(pg_catalog.=) $1",
		2, {INT4OID, INT8OID}
	},
};

static const IdemPlanSet mutex_plans = {
	"mutexes (Citus)", mutex_plan_defs, mutex_saved_plans, NUM_MPLANS
};

/* The slot of a key hash. */
static int32
mutex_slot(uint64 hash)
{
	return (int32) ((hash >> 32) % IDEM_CITUS_MUTEX_SLOTS);
}

/*
 * Take the mutex on the node owning its slot (see the file header).  The
 * caller has checked that mutex_slots is distributed.
 */
static bool
mutex_acquire_citus(uint64 hash, bool shared, int64 timeout)
{
	IdemSpi		spi;
	Datum		values[4];
	bool		acquired = false;
	bool		isnull = true;
	bool		waited = false;

	values[0] = Int32GetDatum(mutex_slot(hash));
	values[1] = Int64GetDatum((int64) hash);
	values[2] = BoolGetDatum(shared);
	idem_spi_begin(&spi, "mutex_slots", false);

	/*
	 * Try first, as idem_lock_acquire() does for a call being counted: the
	 * wait happens on the node owning the slot, whose backend counts
	 * nothing, so a wait is timed here, around the second statement.
	 */
	values[3] = Int64GetDatum(0);
	for (;;)
	{
		if (idem_plan_exec(&mutex_plans, MPLAN_LOCK, values, NULL, 0) == 1)
			acquired = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
												  SPI_tuptable->tupdesc, 1,
												  &isnull));
		if (waited)
			idem_stats_wait_stop();
		if (acquired || isnull || timeout == 0 || waited)
			break;
		values[3] = Int64GetDatum(timeout);
		isnull = true;
		waited = true;
		idem_stats_wait_start();
	}
	idem_spi_end(&spi);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("mutex slot %d is missing from idempotency.mutex_slots",
						mutex_slot(hash)),
				 errhint("The table must hold the slots 0 to %d that idempotency.citus_distribute() made; do not change it.",
						 IDEM_CITUS_MUTEX_SLOTS - 1)));
	return acquired;
}

/*
 * The key argument: NULL -> 22004, empty -> 22023.  Returns its hash.
 */
static uint64
mutex_key_hash(FunctionCallInfo fcinfo, int argno, char **key, int *len)
{
	static const IdemTextArg spec = {
		"key", "mutex_lock", false, false, 0,
		"Pass a non-empty text that names the resource to serialize on."
	};
	text	   *t = idem_arg_text(fcinfo, argno, &spec);

	*key = VARDATA_ANY(t);
	*len = VARSIZE_ANY_EXHDR(t);
	return idem_hash_key(*key, *len, MUTEX_HASH_SEED);
}

static bool
mutex_arg_bool(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("argument \"%s\" must not be null", name),
				 errhint("Pass true or false, or leave the argument out for its default.")));
	return PG_GETARG_BOOL(argno);
}

/*
 * The timeout argument as idem_lock_acquire() wants it: NULL -> -1 (follow
 * lock_timeout), otherwise milliseconds rounded up, 0 = try.  Negative ->
 * 22023.
 */
static int64
mutex_arg_timeout(FunctionCallInfo fcinfo, int argno, const char *fn)
{
	if (PG_ARGISNULL(argno))
		return -1;
	return idem_timeout_ms(idem_arg_interval(fcinfo, argno, "timeout", fn, true));
}

/* Report the key when the lock manager raises (e.g. out of shared memory). */
static void
mutex_error_context(void *arg)
{
	MutexErrorContext *c = (MutexErrorContext *) arg;
	int			len = pg_mbcliplen(c->key, c->len, 64);

	errcontext("while acquiring idempotency mutex \"%.*s\"%s",
			   len, c->key, len < c->len ? "..." : "");
}

/*
 * Release the marker of a session mutex that was not acquired; after an
 * error (aborted), also the mutex if the lock manager granted it to this
 * call (see the header).
 */
static void
mutex_release_pending(bool aborted)
{
	LOCKTAG		tag;
	LOCKTAG		marker;

	if (!pending.active)
		return;
	pending.active = false;
	idem_locktag(&tag, IDEM_LOCKSPACE_MUTEX, pending.hash);
	idem_locktag(&marker, IDEM_LOCKSPACE_MUTEX_SESSION, pending.hash);
	if (aborted && !pending.was_held &&
		LockHeldByMe(&tag, MUTEX_MODE(pending.shared)))
		LockRelease(&tag, MUTEX_MODE(pending.shared), true);
	LockRelease(&marker, MARKER_MODE(pending.shared), true);
}

/*
 * A session mutex wait that ended in an error (deadlock, lock_timeout,
 * cancel, out of shared memory) leaves its marker, and perhaps the mutex,
 * session locks that no abort releases; release them here.  The
 * subtransaction is idem_lock_acquire()'s own when the wait had a timeout
 * that expired: the call then returns false, with nothing held.
 */
/* Called once from _PG_init(). */
void
idem_mutex_init(void)
{
	RegisterXactCallback(mutex_xact_callback, NULL);
	RegisterSubXactCallback(mutex_subxact_callback, NULL);
}

static void
mutex_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		mutex_release_pending(true);
}

static void
mutex_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		mutex_release_pending(true);
}

/*
 * The common body of the four lock functions: the key is argument 0, the
 * timeout argument timeout_arg (-1: none, only try), the mode shared_arg.
 */
static bool
mutex_acquire(FunctionCallInfo fcinfo, int timeout_arg, int shared_arg,
			  bool session)
{
	const char *fn;
	int64		timeout;
	char	   *key;
	int			len;
	uint64		hash;
	bool		shared;
	LOCKTAG		tag;
	LOCKTAG		marker;
	bool		acquired;
	TimestampTz deadline;
	MutexErrorContext ctx;
	ErrorContextCallback errcb;

	idem_stats_begin(session
					 ? (timeout_arg < 0 ? IDEM_OP_MUTEX_SESSION_TRY_LOCK : IDEM_OP_MUTEX_SESSION_LOCK)
					 : (timeout_arg < 0 ? IDEM_OP_MUTEX_TRY_LOCK : IDEM_OP_MUTEX_LOCK));
	idempotency_check_version();
	fn = session
		? (timeout_arg < 0 ? "mutex_session_try_lock" : "mutex_session_lock")
		: (timeout_arg < 0 ? "mutex_try_lock" : "mutex_lock");
	if (session && !idem_session_locks)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("session mutexes are disabled by idempotency.session_locks"),
				 errdetail("%s() takes a mutex that outlives the transaction; behind a transaction-pooling proxy it would stay with the server connection, held for whichever client gets that connection next.",
						   fn),
				 errhint("Use idempotency.mutex_lock() or idempotency.mutex_try_lock(), whose mutex is released at COMMIT or ROLLBACK.")));
	idem_forbid_parallel(fn);
	hash = mutex_key_hash(fcinfo, 0, &key, &len);
	timeout = timeout_arg < 0 ? 0 : mutex_arg_timeout(fcinfo, timeout_arg, fn);
	shared = mutex_arg_bool(fcinfo, shared_arg, "shared");
	idem_locktag(&tag, IDEM_LOCKSPACE_MUTEX, hash);

	if (idem_citus_distributed("mutex_slots"))
	{
		if (session)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("session mutexes are not supported on a Citus cluster"),
					 errdetail("On a distributed cluster a mutex is locked on the node owning its slot, in the worker connection of the current distributed transaction, which cannot keep a lock beyond the transaction."),
					 errhint("Use idempotency.mutex_lock() or idempotency.mutex_try_lock() inside the transaction that needs the mutex, or idempotency.lease_acquire() for a lock that outlives transactions.")));
		acquired = mutex_acquire_citus(hash, shared, timeout_arg < 0 ? 0 : timeout);
		idem_stats_end(acquired ? IDEM_OC_ACQUIRED
					   : timeout_arg < 0 ? IDEM_OC_NOT_ACQUIRED : IDEM_OC_TIMED_OUT);
		return acquired;
	}

	ctx.key = key;
	ctx.len = len;
	errcb.callback = mutex_error_context;
	errcb.arg = &ctx;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	/*
	 * A session mutex waits one lock_timeout round (INT_MAX ms at most) per
	 * call of idem_lock_acquire(): a round that times out aborts its
	 * internal subtransaction, whose abort callback releases the marker,
	 * so each further round takes the marker again.  (idem_lock_acquire()
	 * would go on to the next round by itself, without a marker.)
	 */
	deadline = session && timeout > INT_MAX
		? GetCurrentTimestamp() + timeout * 1000 : 0;
	for (;;)
	{
		int64		round = timeout;

		if (session)
		{
			pending.hash = hash;
			pending.shared = shared;
			pending.was_held = LockHeldByMe(&tag, MUTEX_MODE(shared));
			idem_locktag(&marker, IDEM_LOCKSPACE_MUTEX_SESSION, hash);
			/* Nothing conflicting is ever taken on markers: never waits. */
			(void) LockAcquire(&marker, MARKER_MODE(shared), true, false);
			pending.active = true;
			round = Min(timeout, (int64) INT_MAX);
		}

		acquired = idem_lock_acquire(&tag, MUTEX_MODE(shared), session, round);

		if (session)
		{
			if (acquired)
				pending.active = false; /* keep the marker */
			else
				mutex_release_pending(false);
		}
		if (acquired || round == timeout)
			break;
		/* a session wait longer than one round: the rest */
		timeout = idem_timeout_ms(deadline - GetCurrentTimestamp());
		if (timeout <= 0)
			break;
	}

	error_context_stack = errcb.previous;
	idem_stats_end(acquired ? IDEM_OC_ACQUIRED
				   : timeout_arg < 0 ? IDEM_OC_NOT_ACQUIRED : IDEM_OC_TIMED_OUT);
	return acquired;
}

/* mutex_lock(key text, timeout interval, shared boolean) */
Datum
idempotency_mutex_lock(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(mutex_acquire(fcinfo, 1, 2, false));
}

/* mutex_try_lock(key text, shared boolean) */
Datum
idempotency_mutex_try_lock(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(mutex_acquire(fcinfo, -1, 1, false));
}

/* mutex_session_lock(key text, timeout interval, shared boolean) */
Datum
idempotency_mutex_session_lock(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(mutex_acquire(fcinfo, 1, 2, true));
}

/* mutex_session_try_lock(key text, shared boolean) */
Datum
idempotency_mutex_session_try_lock(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(mutex_acquire(fcinfo, -1, 1, true));
}

/*
 * mutex_session_unlock(key text, shared boolean)
 *
 * Releases one count of a session mutex.  Returns false, without the
 * WARNING pg_advisory_unlock gives, when no session mutex on the key is held
 * in that mode: "not held" is an outcome, reported as a value.
 */
Datum
idempotency_mutex_session_unlock(PG_FUNCTION_ARGS)
{
	char	   *key;
	int			len;
	uint64		hash;
	bool		shared;
	LOCKTAG		tag;
	LOCKTAG		marker;

	idempotency_check_version();
	idem_forbid_parallel("mutex_session_unlock");
	hash = mutex_key_hash(fcinfo, 0, &key, &len);
	shared = mutex_arg_bool(fcinfo, 1, "shared");
	idem_locktag(&tag, IDEM_LOCKSPACE_MUTEX, hash);
	idem_locktag(&marker, IDEM_LOCKSPACE_MUTEX_SESSION, hash);

	if (!LockHeldByMe(&marker, MARKER_MODE(shared)))
		PG_RETURN_BOOL(false);
	LockRelease(&tag, MUTEX_MODE(shared), true);
	LockRelease(&marker, MARKER_MODE(shared), true);
	PG_RETURN_BOOL(true);
}

/*
 * mutex_session_unlock_all()
 *
 * Releases every session mutex of this backend (all counts, both modes),
 * and nothing else: the application's own advisory locks stay.
 */
Datum
idempotency_mutex_session_unlock_all(PG_FUNCTION_ARGS)
{
	LockData   *data;
	int			i;

	idempotency_check_version();
	idem_forbid_parallel("mutex_session_unlock_all");

	data = GetLockStatusData();
	for (i = 0; i < data->nelements; i++)
	{
		LockInstanceData *inst = &data->locks[i];
		LOCKTAG		tag;
		int			s;

		if (inst->pid != MyProcPid ||
			inst->locktag.locktag_type != LOCKTAG_ADVISORY ||
			inst->locktag.locktag_lockmethodid != USER_LOCKMETHOD ||
			inst->locktag.locktag_field1 != MyDatabaseId ||
			inst->locktag.locktag_field4 != IDEM_LOCKSPACE_MUTEX_SESSION)
			continue;

		tag = inst->locktag;
		tag.locktag_field4 = IDEM_LOCKSPACE_MUTEX;
		for (s = 0; s <= 1; s++)
		{
			while (LockHeldByMe(&inst->locktag, MARKER_MODE(s)))
			{
				LockRelease(&tag, MUTEX_MODE(s), true);
				LockRelease(&inst->locktag, MARKER_MODE(s), true);
			}
		}
	}
	PG_RETURN_VOID();
}

static const char *
mutex_mode_name(LOCKMODE mode)
{
	return mode == ShareLock ? "shared" : "exclusive";
}

/*
 * mutex_holders(key text)
 *	RETURNS TABLE (pid int, mode text, granted boolean, scope text,
 *				   waiting_since timestamptz)
 *
 * One row per backend and mode held, and one per backend waiting, from the
 * lock manager's status (what pg_locks shows).  scope is 'session' when the
 * backend holds (or waits for) the mutex through mutex_session_lock,
 * 'transaction' otherwise; a backend holding the same key in the same mode
 * in both scopes shows as 'session'.  waiting_since is NULL for holders.
 */
Datum
idempotency_mutex_holders(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *key;
	int			len;
	uint64		hash;

	idempotency_check_version();
	hash = mutex_key_hash(fcinfo, 0, &key, &len);

	if (idem_citus_distributed("mutex_slots"))
	{
		IdemSpi		spi;
		Datum		values[2];
		uint64		n;
		uint64		r;
		MemoryContext callcxt = CurrentMemoryContext;

		InitMaterializedSRF(fcinfo, 0);
		values[0] = Int32GetDatum(mutex_slot(hash));
		values[1] = Int64GetDatum((int64) hash);
		idem_spi_begin(&spi, "mutex_slots", false);
		n = idem_plan_exec(&mutex_plans, MPLAN_HOLDERS, values, NULL, 0);
		MemoryContextSwitchTo(callcxt);
		for (r = 0; r < n; r++)
		{
			Datum		v[5];
			bool		nl[5];
			int			c;

			for (c = 0; c < 5; c++)
				v[c] = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc,
									 c + 1, &nl[c]);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, nl);
		}
		idem_spi_end(&spi);
		return (Datum) 0;
	}
	return mutex_holders_local(fcinfo, hash);
}

/*
 * mutex_lock_here(slot int, hash bigint, shared boolean, timeout_ms int)
 *
 * The lock of a distributed mutex, taken by the node owning the slot (see
 * the file header): transaction scope, timeout_ms < 0 follows lock_timeout,
 * 0 only tries.
 */
Datum
idempotency_mutex_lock_here(PG_FUNCTION_ARGS)
{
	uint64		hash = (uint64) PG_GETARG_INT64(1);
	bool		shared = PG_GETARG_BOOL(2);
	int64		timeout = PG_GETARG_INT64(3);
	LOCKTAG		tag;

	idempotency_check_version();
	mutex_check_internal_caller("mutex_lock_here");
	idem_forbid_parallel("mutex_lock_here");
	if (timeout > IDEM_MAX_INTERVAL_USECS / 1000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout_ms must be at most %lld",
						(long long) (IDEM_MAX_INTERVAL_USECS / 1000)),
				 errhint("mutex_lock_here() is internal: call idempotency.mutex_lock().")));
	idem_locktag(&tag, IDEM_LOCKSPACE_MUTEX, hash);
	PG_RETURN_BOOL(idem_lock_acquire(&tag, MUTEX_MODE(shared), false,
									 timeout < 0 ? -1 : timeout));
}

/*
 * The two functions above run in the statements mutex_lock() and
 * mutex_holders() send, as the owner of idempotency.mutex_slots (on this
 * node, or on the node Citus routes them to, where they connect as that
 * role).  Called directly by another role they would take or show a mutex
 * past a REVOKE EXECUTE on mutex_lock() or mutex_holders(): refused.
 */
static void
mutex_check_internal_caller(const char *fn)
{
	Oid			owner;

	(void) idem_table_lookup("mutex_slots", false, &owner);
	if (!has_privs_of_role(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function %s", fn),
				 errdetail("%s() is internal: it runs as the owner of idempotency.mutex_slots, in the statements that idempotency.mutex_lock() and idempotency.mutex_holders() send.",
						   fn),
				 errhint("Call idempotency.mutex_lock(), idempotency.mutex_try_lock() or idempotency.mutex_holders() instead.")));
}

/* mutex_holders_here(slot int, hash bigint): mutex_holders() on this node. */
Datum
idempotency_mutex_holders_here(PG_FUNCTION_ARGS)
{
	idempotency_check_version();
	mutex_check_internal_caller("mutex_holders_here");
	return mutex_holders_local(fcinfo, (uint64) PG_GETARG_INT64(1));
}

/* The holders and waiters of the mutex with this hash in this node's lock table. */
static Datum
mutex_holders_local(FunctionCallInfo fcinfo, uint64 hash)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	LOCKTAG		tag;
	LOCKTAG		marker;
	LockData   *data;
	int			i;

	idem_locktag(&tag, IDEM_LOCKSPACE_MUTEX, hash);
	idem_locktag(&marker, IDEM_LOCKSPACE_MUTEX_SESSION, hash);

	InitMaterializedSRF(fcinfo, 0);

	data = GetLockStatusData();
	for (i = 0; i < data->nelements; i++)
	{
		LockInstanceData *inst = &data->locks[i];
		LOCKMASK	marks = 0;
		int			j;
		int			s;

		if (memcmp(&inst->locktag, &tag, sizeof(LOCKTAG)) != 0)
			continue;

		/* The same backend's session markers on this key. */
		for (j = 0; j < data->nelements; j++)
			if (data->locks[j].pid == inst->pid &&
				memcmp(&data->locks[j].locktag, &marker, sizeof(LOCKTAG)) == 0)
				marks |= data->locks[j].holdMask;

		for (s = 0; s <= 2; s++)
		{
			/* s = 0: exclusive held, 1: shared held, 2: waiting */
			LOCKMODE	mode;
			bool		granted = (s < 2);
			Datum		values[5];
			bool		nulls[5] = {false, false, false, false, false};

			if (granted)
			{
				mode = MUTEX_MODE(s == 1);
				if (!(inst->holdMask & LOCKBIT_ON(mode)))
					continue;
			}
			else
			{
				mode = inst->waitLockMode;
				if (mode == NoLock)
					continue;
			}

			values[0] = Int32GetDatum(inst->pid);
			values[1] = CStringGetTextDatum(mutex_mode_name(mode));
			values[2] = BoolGetDatum(granted);
			values[3] = CStringGetTextDatum((marks & LOCKBIT_ON(MARKER_MODE(mode == ShareLock)))
											? "session" : "transaction");
			if (granted || inst->waitStart == 0)
				nulls[4] = true;
			else
				values[4] = TimestampTzGetDatum(inst->waitStart);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	return (Datum) 0;
}
