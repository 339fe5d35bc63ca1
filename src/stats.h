/*-------------------------------------------------------------------------
 *
 * stats.h
 *	  Counters behind the idempotency.stats view (see stats.c).
 *
 * How a feature uses it: idem_stats_begin(op) first thing in the SQL entry
 * point; idem_stats_end(outcome) where the call's outcome is known and the
 * call returns.  Where the outcome is decided deeper down (or a call has
 * several, one per element or row), the code that decides calls
 * idem_stats_note(outcome) / idem_stats_note_n(outcome, n) and the entry
 * point ends with idem_stats_end(IDEM_OC_NONE).  A call that ends in an
 * ERROR is counted as 'error' by the (sub)transaction abort callback; no
 * PG_TRY is needed.  Waits are timed by locks.c with idem_stats_wait_start()
 * and idem_stats_wait_stop().
 *
 * Every inline below costs one branch when idempotency.track is off.
 *
 *-------------------------------------------------------------------------
 */
#ifndef IDEMPOTENCY_STATS_H
#define IDEMPOTENCY_STATS_H

#include "postgres.h"

/* Operations: the view's "operation" column (names in stats.c). */
typedef enum IdemStatsOp
{
	IDEM_OP_UPSERT,
	IDEM_OP_GET_OR_CREATE,
	IDEM_OP_UPDATE_OR_CREATE,
	IDEM_OP_UPSERT_MANY,
	IDEM_OP_MARK_PROCESSED,
	IDEM_OP_CLAIM,
	IDEM_OP_COMPLETE,
	IDEM_OP_FAIL,
	IDEM_OP_PURGE,
	IDEM_OP_MUTEX_LOCK,
	IDEM_OP_MUTEX_TRY_LOCK,
	IDEM_OP_MUTEX_SESSION_LOCK,
	IDEM_OP_MUTEX_SESSION_TRY_LOCK,
	IDEM_OP_LEASE_ACQUIRE,
	IDEM_OP_LEASE_RENEW,
	IDEM_OP_LEASE_RELEASE,
	IDEM_OP_LEASE_ASSERT,
	IDEM_OP_COUNT
} IdemStatsOp;

/* Outcomes: the view's "outcome" column (names in stats.c). */
typedef enum IdemStatsOutcome
{
	IDEM_OC_NONE = -1,			/* idem_stats_end(): outcome already noted */
	IDEM_OC_ERROR = 0,
	IDEM_OC_INSERTED,
	IDEM_OC_EXISTING,
	IDEM_OC_CONFLICT,
	IDEM_OC_UPDATED,
	IDEM_OC_NEW,
	IDEM_OC_DUPLICATE,
	IDEM_OC_CLAIMED,
	IDEM_OC_TAKEOVER,
	IDEM_OC_COMPLETED,
	IDEM_OC_FAILED,
	IDEM_OC_IN_PROGRESS,
	IDEM_OC_MISMATCH,
	IDEM_OC_OK,
	IDEM_OC_ROWS,
	IDEM_OC_ACQUIRED,
	IDEM_OC_TIMED_OUT,
	IDEM_OC_NOT_ACQUIRED,
	IDEM_OC_PRECONDITION_FAILED,
	IDEM_OC_RENEWED,
	IDEM_OC_LOST,
	IDEM_OC_RELEASED,
	IDEM_OC_NOT_FOUND,
	IDEM_OC_COUNT
} IdemStatsOutcome;

/* GUC idempotency.track */
extern PGDLLIMPORT bool idem_stats_track;

/* Calls in flight in this backend (0 when nothing is being tracked). */
extern PGDLLIMPORT int idem_stats_depth;

extern void idem_stats_init(void);
extern void idem_stats_push(IdemStatsOp op);
extern void idem_stats_tally(IdemStatsOutcome oc, uint64 n);
extern void idem_stats_pop(IdemStatsOutcome oc);
extern IdemStatsOutcome idem_stats_outcome_by_name(const char *name);
extern void idem_stats_wait_start_(void);
extern void idem_stats_wait_stop_(void);

static inline void
idem_stats_begin(IdemStatsOp op)
{
	if (idem_stats_track)
		idem_stats_push(op);
}

static inline void
idem_stats_note(IdemStatsOutcome oc)
{
	if (idem_stats_track)
		idem_stats_tally(oc, 1);
}

static inline void
idem_stats_note_n(IdemStatsOutcome oc, uint64 n)
{
	if (idem_stats_track)
		idem_stats_tally(oc, n);
}

static inline void
idem_stats_end(IdemStatsOutcome oc)
{
	if (idem_stats_track)
		idem_stats_pop(oc);
}

/* End with the outcome named as the function returns it ("acquired" ...). */
static inline void
idem_stats_end_status(const char *status)
{
	if (idem_stats_track)
		idem_stats_pop(idem_stats_outcome_by_name(status));
}

/* Time a wait of the call in flight (locks.c). */
static inline void
idem_stats_wait_start(void)
{
	if (idem_stats_depth > 0)
		idem_stats_wait_start_();
}

static inline void
idem_stats_wait_stop(void)
{
	if (idem_stats_depth > 0)
		idem_stats_wait_stop_();
}

#endif							/* IDEMPOTENCY_STATS_H */
