/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  Per (operation, outcome) counters and latency histograms behind the
 *	  idempotency.stats view, idempotency.stats_reset() and
 *	  idempotency.stats_scope().
 *
 * Cells.  The set of rows is fixed: every operation has at most
 * STATS_SLOTS outcomes (slot 0 is 'error' for all of them), listed in
 * op_outcomes[][] below, so the counters are one static 2-D array of cells,
 * cells[operation][slot]; no hash table and no allocation after start-up.
 * A cell holds the total and the maximum duration, the number of calls that
 * waited and their wait time, and a histogram of durations whose buckets
 * are 8 per power of two (bucket i >= 8 covers [(8+s) << (k-3),
 * (9+s) << (k-3)) nanoseconds with k = i/8 + 2 and s = i%8): neighbouring
 * bounds differ by a factor of at most 9/8.  "calls" is the sum of the
 * buckets.  A percentile is the geometric middle of the bucket holding the
 * nearest-rank value, clamped to the maximum, so it is within 6.1 % of the
 * exact value.  Durations are measured in nanoseconds (INSTR_TIME, a
 * monotonic clock): calls that take a few microseconds would otherwise fall
 * into buckets far wider than 10 %.
 *
 * Where the cells live.  With the library in shared_preload_libraries they
 * are in shared memory (requested by the shmem_request hook, created by the
 * shmem_startup hook, like pg_stat_statements does) and count the whole
 * cluster; otherwise the same struct is allocated in TopMemoryContext on
 * first use and counts this backend only.  stats_scope() says which.
 * Shared or not, every counter is a pg_atomic_uint64 updated with
 * fetch-add (the maximum with compare-and-swap): no lock on the hot path.
 * A reader sees each counter atomically but not the cell as a whole; a
 * reset (atomic writes of 0) racing with calls can leave a cell whose
 * counters disagree by those calls, which the next reset clears.  The
 * shared struct is created and zeroed once, under AddinShmemInitLock, and
 * lives as long as the shared memory (a restart, or a crash and
 * reinitialization, zeroes it); the local one is allocated when the
 * backend first counts, reads or resets, and lives as long as the backend.
 * After creation only the counters change; the layout never does.
 *
 * Calls in flight.  idem_stats_begin() pushes the operation, its start
 * time and the current subtransaction id on a small backend-local stack;
 * idem_stats_end() pops it and adds the call to its cell(s).  Calls nest
 * (an upsert fired by a trigger inside another upsert), hence a stack.  A
 * call that ends by an ERROR never reaches idem_stats_end(): the
 * subtransaction abort callback pops every entry begun in the aborted
 * subtransaction or its children (their subtransaction ids are >= the
 * aborted one's, as ids are assigned in increasing order) and counts it as
 * 'error'; the transaction abort callback does so for all of them.  Entries
 * begun outside the subtransaction stay: the internal subtransactions that
 * locks.c and lease.c roll back on purpose do not end the call around
 * them.  The stack is backend-local and needs no lock; STATS_MAX_DEPTH
 * nested calls are tracked, deeper ones are not counted.
 *
 * Calls with several outcomes.  A batch (idempotent_upsert_many) notes an
 * outcome per element and purge notes the rows it deleted; the call is then
 * counted once per element or row, its duration and wait split evenly among
 * them (so mean and percentiles are per element).  An error counts once.
 *
 * Waits.  locks.c brackets each sleep (lock manager waits, key waits) with
 * idem_stats_wait_start/stop(); the time adds to the call in flight, which
 * adds 1 to wait_calls and the total to wait_ms when it is counted.  A wait
 * that an ERROR interrupts is closed by the abort callback.
 *
 * idempotency.track = off: begin, note and end cost one branch each and
 * nothing is pushed, so nothing is counted.  The three functions test the
 * setting each time, so a function declared SET idempotency.track = off
 * that runs inside a counted call pushes and pops nothing, and the call
 * around it is counted normally.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "idempotency.h"
#include "stats.h"

#include "access/xact.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "port/pg_bitutils.h"
#include "portability/instr_time.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"

PG_FUNCTION_INFO_V1(idempotency_stats_read);
PG_FUNCTION_INFO_V1(idempotency_stats_reset);
PG_FUNCTION_INFO_V1(idempotency_stats_scope);

/* Outcomes per operation, slot 0 always 'error'. */
#define STATS_SLOTS			8

/* Histogram: 8 buckets per power of two, up to 2^42 ns (73 minutes). */
#define STATS_SUB_BITS		3
#define STATS_SUB			(1 << STATS_SUB_BITS)
#define STATS_MAX_MSB		41
#define STATS_NBUCKETS		((STATS_MAX_MSB - STATS_SUB_BITS + 2) * STATS_SUB)

/* Nested calls tracked at once. */
#define STATS_MAX_DEPTH		32

#define STATS_SHMEM_NAME	"idempotency stats"

typedef struct StatsCell
{
	pg_atomic_uint64 total_ns;
	pg_atomic_uint64 max_ns;
	pg_atomic_uint64 wait_calls;
	pg_atomic_uint64 wait_ns;
	pg_atomic_uint64 buckets[STATS_NBUCKETS];
} StatsCell;

typedef struct StatsData
{
	StatsCell	cells[IDEM_OP_COUNT][STATS_SLOTS];
} StatsData;

/* A call in flight. */
typedef struct StatsCall
{
	IdemStatsOp op;
	SubTransactionId subid;		/* subtransaction it began in */
	bool		waiting;		/* inside a wait now */
	bool		waited;			/* waited at all */
	instr_time	start;
	instr_time	wait_start;
	uint64		wait_ns;
	uint64		tally[STATS_SLOTS]; /* outcomes noted so far */
} StatsCall;

static const char *const op_names[IDEM_OP_COUNT] = {
	[IDEM_OP_UPSERT] = "idempotent_upsert",
	[IDEM_OP_GET_OR_CREATE] = "get_or_create",
	[IDEM_OP_UPDATE_OR_CREATE] = "update_or_create",
	[IDEM_OP_UPSERT_MANY] = "idempotent_upsert_many",
	[IDEM_OP_MARK_PROCESSED] = "mark_processed",
	[IDEM_OP_CLAIM] = "claim",
	[IDEM_OP_COMPLETE] = "complete",
	[IDEM_OP_FAIL] = "fail",
	[IDEM_OP_PURGE] = "purge",
	[IDEM_OP_MUTEX_LOCK] = "mutex_lock",
	[IDEM_OP_MUTEX_TRY_LOCK] = "mutex_try_lock",
	[IDEM_OP_MUTEX_SESSION_LOCK] = "mutex_session_lock",
	[IDEM_OP_MUTEX_SESSION_TRY_LOCK] = "mutex_session_try_lock",
	[IDEM_OP_LEASE_ACQUIRE] = "lease_acquire",
	[IDEM_OP_LEASE_RENEW] = "lease_renew",
	[IDEM_OP_LEASE_RELEASE] = "lease_release",
	[IDEM_OP_LEASE_ASSERT] = "lease_assert",
};

static const char *const outcome_names[IDEM_OC_COUNT] = {
	[IDEM_OC_ERROR] = "error",
	[IDEM_OC_INSERTED] = "inserted",
	[IDEM_OC_EXISTING] = "existing",
	[IDEM_OC_CONFLICT] = "conflict",
	[IDEM_OC_UPDATED] = "updated",
	[IDEM_OC_NEW] = "new",
	[IDEM_OC_DUPLICATE] = "duplicate",
	[IDEM_OC_CLAIMED] = "claimed",
	[IDEM_OC_TAKEOVER] = "takeover",
	[IDEM_OC_COMPLETED] = "completed",
	[IDEM_OC_FAILED] = "failed",
	[IDEM_OC_IN_PROGRESS] = "in_progress",
	[IDEM_OC_MISMATCH] = "mismatch",
	[IDEM_OC_OK] = "ok",
	[IDEM_OC_ROWS] = "rows",
	[IDEM_OC_ACQUIRED] = "acquired",
	[IDEM_OC_TIMED_OUT] = "timed_out",
	[IDEM_OC_NOT_ACQUIRED] = "not_acquired",
	[IDEM_OC_PRECONDITION_FAILED] = "precondition_failed",
	[IDEM_OC_RENEWED] = "renewed",
	[IDEM_OC_LOST] = "lost",
	[IDEM_OC_RELEASED] = "released",
	[IDEM_OC_NOT_FOUND] = "not_found",
};

/*
 * The outcomes of each operation, in view order; unused slots are
 * IDEM_OC_NONE.  Designated initializers leave them 0 (= error), so every
 * row is spelt out in full.
 */
#define N_	IDEM_OC_NONE
static const IdemStatsOutcome op_outcomes[IDEM_OP_COUNT][STATS_SLOTS] = {
	[IDEM_OP_UPSERT] = {IDEM_OC_ERROR, IDEM_OC_INSERTED, IDEM_OC_EXISTING, IDEM_OC_CONFLICT, N_, N_, N_, N_},
	[IDEM_OP_GET_OR_CREATE] = {IDEM_OC_ERROR, IDEM_OC_INSERTED, IDEM_OC_EXISTING, IDEM_OC_CONFLICT, N_, N_, N_, N_},
	[IDEM_OP_UPDATE_OR_CREATE] = {IDEM_OC_ERROR, IDEM_OC_INSERTED, IDEM_OC_EXISTING, IDEM_OC_CONFLICT, IDEM_OC_UPDATED, N_, N_, N_},
	[IDEM_OP_UPSERT_MANY] = {IDEM_OC_ERROR, IDEM_OC_INSERTED, IDEM_OC_EXISTING, IDEM_OC_CONFLICT, N_, N_, N_, N_},
	[IDEM_OP_MARK_PROCESSED] = {IDEM_OC_ERROR, IDEM_OC_NEW, IDEM_OC_DUPLICATE, N_, N_, N_, N_, N_},
	[IDEM_OP_CLAIM] = {IDEM_OC_ERROR, IDEM_OC_CLAIMED, IDEM_OC_TAKEOVER, IDEM_OC_COMPLETED, IDEM_OC_FAILED, IDEM_OC_IN_PROGRESS, IDEM_OC_MISMATCH, N_},
	[IDEM_OP_COMPLETE] = {IDEM_OC_ERROR, IDEM_OC_OK, N_, N_, N_, N_, N_, N_},
	[IDEM_OP_FAIL] = {IDEM_OC_ERROR, IDEM_OC_OK, N_, N_, N_, N_, N_, N_},
	[IDEM_OP_PURGE] = {IDEM_OC_ERROR, IDEM_OC_ROWS, N_, N_, N_, N_, N_, N_},
	[IDEM_OP_MUTEX_LOCK] = {IDEM_OC_ERROR, IDEM_OC_ACQUIRED, IDEM_OC_TIMED_OUT, N_, N_, N_, N_, N_},
	[IDEM_OP_MUTEX_TRY_LOCK] = {IDEM_OC_ERROR, IDEM_OC_ACQUIRED, IDEM_OC_NOT_ACQUIRED, N_, N_, N_, N_, N_},
	[IDEM_OP_MUTEX_SESSION_LOCK] = {IDEM_OC_ERROR, IDEM_OC_ACQUIRED, IDEM_OC_TIMED_OUT, N_, N_, N_, N_, N_},
	[IDEM_OP_MUTEX_SESSION_TRY_LOCK] = {IDEM_OC_ERROR, IDEM_OC_ACQUIRED, IDEM_OC_NOT_ACQUIRED, N_, N_, N_, N_, N_},
	[IDEM_OP_LEASE_ACQUIRE] = {IDEM_OC_ERROR, IDEM_OC_ACQUIRED, IDEM_OC_CONFLICT, IDEM_OC_PRECONDITION_FAILED, N_, N_, N_, N_},
	[IDEM_OP_LEASE_RENEW] = {IDEM_OC_ERROR, IDEM_OC_RENEWED, IDEM_OC_LOST, N_, N_, N_, N_, N_},
	[IDEM_OP_LEASE_RELEASE] = {IDEM_OC_ERROR, IDEM_OC_RELEASED, IDEM_OC_NOT_FOUND, IDEM_OC_PRECONDITION_FAILED, N_, N_, N_, N_},
	[IDEM_OP_LEASE_ASSERT] = {IDEM_OC_ERROR, IDEM_OC_OK, N_, N_, N_, N_, N_, N_},
};
#undef N_

bool		idem_stats_track = true;
int			idem_stats_depth = 0;

/* The cells: in shared memory, or backend-local, or not yet set up. */
static StatsData *stats = NULL;
static bool stats_shared = false;

static StatsCall calls[STATS_MAX_DEPTH];
static int	calls_untracked = 0;	/* nested deeper than STATS_MAX_DEPTH */

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static inline StatsCall *stats_innermost(void);
static void stats_close_wait(StatsCall *call);
static void stats_shmem_request(void);
static void stats_shmem_startup(void);
static void stats_xact_callback(XactEvent event, void *arg);
static void stats_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
								   SubTransactionId parentSubid, void *arg);

/* Set every counter to 0; init: for the first time (a new struct). */
static void
stats_zero(StatsData *data, bool init)
{
	int			o,
				s;
	size_t		i;

	for (o = 0; o < IDEM_OP_COUNT; o++)
		for (s = 0; s < STATS_SLOTS; s++)
		{
			StatsCell  *c = &data->cells[o][s];
			pg_atomic_uint64 *counters[] = {&c->total_ns, &c->max_ns,
			&c->wait_calls, &c->wait_ns};

			for (i = 0; i < lengthof(counters) + STATS_NBUCKETS; i++)
			{
				pg_atomic_uint64 *a = (i < lengthof(counters))
				? counters[i] : &c->buckets[i - lengthof(counters)];

				if (init)
					pg_atomic_init_u64(a, 0);
				else
					pg_atomic_write_u64(a, 0);
			}
		}
}

/* The cells of this backend: shared, or allocated here on first use. */
static StatsData *
stats_data(void)
{
	if (unlikely(stats == NULL))
	{
		StatsData  *data = MemoryContextAlloc(TopMemoryContext, sizeof(StatsData));

		stats_zero(data, true);
		stats = data;
	}
	return stats;
}

/*
 * Called from _PG_init (before the GUC prefix is reserved, so that a value
 * set before the library was loaded is kept).
 */
void
idem_stats_init(void)
{
	DefineCustomBoolVariable("idempotency.track",
							 "Collects the counters of the idempotency.stats view.",
							 "When off, calls are not counted.",
							 &idem_stats_track,
							 true,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	RegisterXactCallback(stats_xact_callback, NULL);
	RegisterSubXactCallback(stats_subxact_callback, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = stats_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = stats_shmem_startup;
}

static void
stats_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(StatsData)));
}

static void
stats_shmem_startup(void)
{
	bool		found;
	StatsData  *data;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	data = ShmemInitStruct(STATS_SHMEM_NAME, sizeof(StatsData), &found);
	if (!found)
		stats_zero(data, true);
	LWLockRelease(AddinShmemInitLock);

	stats = data;
	stats_shared = true;
}

/* ---------------------------------------------------------------------
 * Counting
 * --------------------------------------------------------------------- */

static inline int
stats_bucket(uint64 ns)
{
	int			msb;

	if (ns < STATS_SUB)
		return (int) ns;
	msb = pg_leftmost_one_pos64(ns);
	if (msb > STATS_MAX_MSB)
		return STATS_NBUCKETS - 1;
	return (msb - STATS_SUB_BITS + 1) * STATS_SUB +
		(int) ((ns >> (msb - STATS_SUB_BITS)) & (STATS_SUB - 1));
}

/* Bounds [lo, hi) of bucket i, in nanoseconds. */
static void
stats_bucket_bounds(int i, double *lo, double *hi)
{
	int			msb;
	int			sub;

	if (i < STATS_SUB)
	{
		*lo = i;
		*hi = i + 1;
		return;
	}
	msb = i / STATS_SUB + STATS_SUB_BITS - 1;
	sub = i % STATS_SUB;
	*lo = ldexp((double) (STATS_SUB + sub), msb - STATS_SUB_BITS);
	*hi = ldexp((double) (STATS_SUB + sub + 1), msb - STATS_SUB_BITS);
}

static inline uint64
stats_elapsed_ns(const instr_time *since)
{
	instr_time	now;

	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, *since);
	return IdemInstrTimeGetNanosec(now);
}

/*
 * Add n calls of total duration dur_ns (wait_ns of it waiting, by calls
 * that waited when waited) to a cell.
 */
static void
stats_add(StatsCell *c, uint64 n, uint64 dur_ns, bool waited, uint64 wait_ns)
{
	uint64		each = dur_ns / n;
	uint64		max;

	pg_atomic_fetch_add_u64(&c->buckets[stats_bucket(each)], n);
	pg_atomic_fetch_add_u64(&c->total_ns, dur_ns);
	max = pg_atomic_read_u64(&c->max_ns);
	while (each > max &&
		   !pg_atomic_compare_exchange_u64(&c->max_ns, &max, each))
		;
	if (waited)
	{
		pg_atomic_fetch_add_u64(&c->wait_calls, n);
		pg_atomic_fetch_add_u64(&c->wait_ns, wait_ns);
	}
}

static int
stats_slot(IdemStatsOp op, IdemStatsOutcome oc)
{
	int			s;

	for (s = 0; s < STATS_SLOTS; s++)
		if (op_outcomes[op][s] == oc)
			return s;
	return -1;
}

/* Count a call taken off the stack: as its noted outcomes, or as an error. */
static void
stats_count(StatsCall *call, bool error)
{
	StatsData  *data = stats;
	uint64		dur = stats_elapsed_ns(&call->start);
	uint64		n = 0;
	int			s;

	stats_close_wait(call);
	if (error)
	{
		stats_add(&data->cells[call->op][0], 1, dur, call->waited, call->wait_ns);
		return;
	}

	for (s = 1; s < STATS_SLOTS; s++)
		n += call->tally[s];
	if (n == 0)
		return;
	if (n == 1)
	{
		for (s = 1; call->tally[s] == 0; s++)
			;
		stats_add(&data->cells[call->op][s], 1, dur, call->waited, call->wait_ns);
		return;
	}
	/* Several elements or rows: split the time evenly among them. */
	for (s = 1; s < STATS_SLOTS; s++)
		if (call->tally[s] > 0)
			stats_add(&data->cells[call->op][s], call->tally[s],
					  (uint64) ((double) dur * call->tally[s] / n),
					  call->waited,
					  (uint64) ((double) call->wait_ns * call->tally[s] / n));
}

void
idem_stats_push(IdemStatsOp op)
{
	StatsCall  *call;

	if (idem_stats_depth >= STATS_MAX_DEPTH)
	{
		calls_untracked++;
		return;
	}
	if (unlikely(stats == NULL))
		(void) stats_data();	/* allocate now, not in an abort callback */
	call = &calls[idem_stats_depth];
	call->op = op;
	call->subid = GetCurrentSubTransactionId();
	call->waiting = false;
	call->waited = false;
	call->wait_ns = 0;
	memset(call->tally, 0, sizeof(call->tally));
	INSTR_TIME_SET_CURRENT(call->start);
	idem_stats_depth++;
}

void
idem_stats_tally(IdemStatsOutcome oc, uint64 n)
{
	StatsCall  *call = stats_innermost();
	int			s;

	if (call == NULL)
		return;
	s = stats_slot(call->op, oc);
	/* Not an outcome of the innermost call (track was turned on inside it)? */
	if (s > 0)
		call->tally[s] += n;
}

void
idem_stats_pop(IdemStatsOutcome oc)
{
	StatsCall  *call;

	if (calls_untracked > 0)
	{
		calls_untracked--;
		return;
	}
	if (idem_stats_depth == 0)
		return;
	call = &calls[idem_stats_depth - 1];
	if (oc != IDEM_OC_NONE)
	{
		int			s = stats_slot(call->op, oc);

			if (s > 0)
			call->tally[s]++;
	}
	idem_stats_depth--;
	stats_count(call, false);
}

IdemStatsOutcome
idem_stats_outcome_by_name(const char *name)
{
	int			i;

	for (i = 0; i < IDEM_OC_COUNT; i++)
		if (strcmp(outcome_names[i], name) == 0)
			return (IdemStatsOutcome) i;
	return IDEM_OC_NONE;
}

/* The innermost call in flight, if it is tracked. */
static inline StatsCall *
stats_innermost(void)
{
	if (idem_stats_depth == 0 || calls_untracked > 0)
		return NULL;
	return &calls[idem_stats_depth - 1];
}

/* Add the wait in progress, if any, to the call's wait time. */
static void
stats_close_wait(StatsCall *call)
{
	if (call->waiting)
	{
		call->wait_ns += stats_elapsed_ns(&call->wait_start);
		call->waiting = false;
	}
}

void
idem_stats_wait_start_(void)
{
	StatsCall  *call = stats_innermost();

	if (call == NULL)
		return;
	INSTR_TIME_SET_CURRENT(call->wait_start);
	call->waiting = true;
	call->waited = true;
}

void
idem_stats_wait_stop_(void)
{
	StatsCall  *call = stats_innermost();

	if (call != NULL)
		stats_close_wait(call);
}

/*
 * An ERROR ended the calls begun in the aborted (sub)transaction: count
 * them as errors.  Whatever is left at commit was never ended (a call
 * nested deeper than we track, or idempotency.track changed between a
 * call's begin and end): drop it.
 */
static void
stats_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			while (idem_stats_depth > 0)
			{
				idem_stats_depth--;
				stats_count(&calls[idem_stats_depth], true);
			}
			calls_untracked = 0;
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			idem_stats_depth = 0;
			calls_untracked = 0;
			break;
		default:
			break;
	}
}

static void
stats_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	if (event != SUBXACT_EVENT_ABORT_SUB)
		return;
	/* Untracked calls are the innermost; they cannot be told apart. */
	calls_untracked = 0;
	while (idem_stats_depth > 0 &&
		   calls[idem_stats_depth - 1].subid >= mySubid)
	{
		idem_stats_depth--;
		stats_count(&calls[idem_stats_depth], true);
	}
}

/* ---------------------------------------------------------------------
 * SQL-callable functions
 * --------------------------------------------------------------------- */

/* The value of percentile p (0 < p <= 1) of a cell's histogram, in ns. */
static double
stats_percentile(const uint64 *buckets, uint64 total, double p, double max)
{
	uint64		rank = (uint64) ceil(p * (double) total);
	uint64		seen = 0;
	int			i;

	if (rank < 1)
		rank = 1;
	for (i = 0; i < STATS_NBUCKETS; i++)
	{
		seen += buckets[i];
		if (seen >= rank)
		{
			double		lo,
						hi;
			double		v;

			stats_bucket_bounds(i, &lo, &hi);
			v = (lo > 0) ? sqrt(lo * hi) : hi / 2;
			return Min(v, max);
		}
	}
	return max;
}

/*
 * idempotency.stats_read() -> SETOF (operation, outcome, calls, total_ms,
 * mean_ms, p50_ms, p95_ms, p99_ms, max_ms, wait_calls, wait_ms): the rows
 * of the idempotency.stats view, one per cell with calls.
 */
Datum
idempotency_stats_read(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	StatsData  *data;
	uint64		buckets[STATS_NBUCKETS];
	int			o,
				s,
				b;

	idempotency_check_version();
	InitMaterializedSRF(fcinfo, 0);
	data = stats_data();

	for (o = 0; o < IDEM_OP_COUNT; o++)
		for (s = 0; s < STATS_SLOTS; s++)
		{
			StatsCell  *c = &data->cells[o][s];
			IdemStatsOutcome oc = op_outcomes[o][s];
			uint64		n = 0;
			double		total,
						max;
			Datum		values[11];
			bool		nulls[11] = {0};

			if (oc == IDEM_OC_NONE)
				continue;
			for (b = 0; b < STATS_NBUCKETS; b++)
			{
				buckets[b] = pg_atomic_read_u64(&c->buckets[b]);
				n += buckets[b];
			}
			if (n == 0)
				continue;
			total = (double) pg_atomic_read_u64(&c->total_ns);
			max = (double) pg_atomic_read_u64(&c->max_ns);

			values[0] = CStringGetTextDatum(op_names[o]);
			values[1] = CStringGetTextDatum(outcome_names[oc]);
			values[2] = Int64GetDatum((int64) n);
			values[3] = Float8GetDatum(total / 1e6);
			values[4] = Float8GetDatum(total / 1e6 / (double) n);
			values[5] = Float8GetDatum(stats_percentile(buckets, n, 0.50, max) / 1e6);
			values[6] = Float8GetDatum(stats_percentile(buckets, n, 0.95, max) / 1e6);
			values[7] = Float8GetDatum(stats_percentile(buckets, n, 0.99, max) / 1e6);
			values[8] = Float8GetDatum(max / 1e6);
			values[9] = Int64GetDatum((int64) pg_atomic_read_u64(&c->wait_calls));
			values[10] = Float8GetDatum((double) pg_atomic_read_u64(&c->wait_ns) / 1e6);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	return (Datum) 0;
}

/*
 * idempotency.stats_reset(): zero every counter (the cluster's, or this
 * session's).  EXECUTE is revoked from PUBLIC by the install script.
 */
Datum
idempotency_stats_reset(PG_FUNCTION_ARGS)
{
	idempotency_check_version();
	stats_zero(stats_data(), false);
	PG_RETURN_VOID();
}

/* idempotency.stats_scope(): 'cluster' (shared memory) or 'session'. */
Datum
idempotency_stats_scope(PG_FUNCTION_ARGS)
{
	idempotency_check_version();
	PG_RETURN_TEXT_P(cstring_to_text(stats_shared ? "cluster" : "session"));
}

