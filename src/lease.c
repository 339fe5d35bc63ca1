/*-------------------------------------------------------------------------
 *
 * lease.c
 *	  Durable leases: table-backed locks with an ETag-like token and a
 *	  fencing token.
 *
 * A lease is a row of idempotency.leases.  Because it is a row, it survives
 * the end of the transaction, of the connection and of the server; it ends
 * when it is released or when its expires_at (database clock,
 * clock_timestamp()) has passed.  An expired lease is free.
 *
 * Rows are never deleted by these functions.  Releasing a lease clears
 * token, holder and timestamps but keeps the row, because the row carries
 * the key's fencing counter: every successful acquire sets
 * fencing_token = fencing_token + 1 on the locked row, so the counter is
 * strictly increasing per key, transactional with the lease it belongs to
 * (a fencing token is durable exactly when its lease is), and survives
 * crashes through the WAL like any row.  A sequence was rejected: its value
 * is drawn before the row is locked (an INSERT's VALUES are computed before
 * ON CONFLICT looks for the row), so two acquirers could commit their leases
 * in the opposite order of their fencing tokens; and one global sequence
 * page would be a hot spot shared by all keys.  The price is one row per key
 * ever used (as in ShedLock); a row may only be deleted by the table owner,
 * and doing so restarts that key's fencing tokens (see the README).
 *
 * Concurrency.  Every change is a single UPDATE (or INSERT ... ON CONFLICT DO
 * NOTHING for a key never seen) whose WHERE clause restates the condition
 * under which the change is allowed ("free, expired, or token = if_match";
 * "token = mine and not expired").  The row lock taken by the UPDATE
 * serializes concurrent writers of a key; under READ COMMITTED a writer that
 * waited re-evaluates the WHERE clause against the newest row version
 * (EvalPlanQual), so of two racing acquirers exactly one updates the row and
 * the other finds no row to update, re-reads the row and reports
 * 'conflict'.  An acquire tries the UPDATE first (one statement in the
 * common case) and only reads the row to explain a failure; an UPDATE whose
 * WHERE clause is false for the committed row version takes no row lock, so
 * a failed acquire does not block the holder (ON CONFLICT DO UPDATE would:
 * it locks the conflicting row before evaluating its WHERE clause, blocking
 * the holder's renew and release until the loser's transaction ends).  A
 * lock is kept only when the WHERE clause became false while the UPDATE
 * waited for a concurrent writer of the same row (EvalPlanQual), until the
 * loser's transaction ends: call the functions in their own transactions.
 * Under REPEATABLE READ / SERIALIZABLE a concurrent change raises 40001, as
 * plain SQL does.
 *
 * Without the executor.  LP_TAKE, LP_RELEASE and LP_RENEW are made by
 * src/rows.c where it can (lease_edit: their WHERE and SET in C; the row
 * found by a search of leases_pkey): the same row versions, locks and
 * waits.  A row changed by another transaction while the change waited
 * for it makes rows.c decline, and the statement, run afresh, decides as
 * EvalPlanQual would have.  LP_INSERT (a key never seen) and the reads run
 * as statements.
 *
 * Waiting.  lease_acquire(..., wait => ...) uses the key waits of locks.c:
 * it registers on the key's LEASE_WAIT tag before its first check, then
 * sleeps until the earliest of its deadline and the holder's expires_at;
 * release, renew and hand-over call idem_keywait_notify(), which wakes the
 * waiters when that transaction commits.  No polling of the table (on one
 * server: on a Citus-distributed leases table a release through another
 * node cannot wake us, key waits being node-local, so a waiter there also
 * looks again every IDEM_CITUS_POLL_MS).  While
 * waiting, each attempt runs in a subtransaction that is rolled back when it
 * does not win, so a waiter never sleeps on a row lock left behind by a lost
 * race (that would block the holder's release for the whole wait).
 *
 * lease_assert() reads the row FOR SHARE: until the asserting transaction
 * ends, no acquire, hand-over or release of that key can commit, so a write
 * guarded by lease_assert() commits only while the asserted lease is the
 * current one.
 *
 * Locking summary: row locks of idempotency.leases protect each lease;
 * LEASE_WAIT advisory ShareLocks only advertise waiters.  Saved SPI plans
 * are backend-local.
 *
 * Privileges.  The statements run as the table's owner (idem_spi_begin,
 * src/plans.c): nobody else may read or write idempotency.leases directly,
 * so a fencing counter only ever moves forward, by these functions.  The
 * table has no CHECK constraints (they cost every write); the rules they
 * stated are kept by the statements and checked on every read
 * (lease_check_row(), lease_check_fencing()).
 *
 * Memory and lifetime.  The saved plans (lease_saved_plans) live for the
 * backend; rows read are copied into the calling function's context and
 * live for one call.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "idempotency.h"
#include "locks.h"
#include "args.h"
#include "plans.h"
#include "rows.h"
#include "citus.h"

#include "access/xact.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

PG_FUNCTION_INFO_V1(idempotency_lease_acquire);
PG_FUNCTION_INFO_V1(idempotency_lease_renew);
PG_FUNCTION_INFO_V1(idempotency_lease_release);
PG_FUNCTION_INFO_V1(idempotency_lease_status);
PG_FUNCTION_INFO_V1(idempotency_lease_assert);

/* Largest key and holder accepted, in bytes (keeps index tuples small). */
#define LEASE_MAX_KEY		1024
#define LEASE_MAX_HOLDER	1024

/* Attempts of one lease_acquire() call that lost a race before it gives up. */
#define LEASE_MAX_RETRIES	1000

/* Seed of the key hash used for the wait tags. */
#define LEASE_HASH_SEED		UINT64CONST(0x4c45415345)	/* "LEASE" */

/* The saved plans, prepared on first use. */
typedef enum LeasePlan
{
	LP_SELECT,					/* the row, live or not */
	LP_TAKE,					/* acquire an existing row */
	LP_INSERT,					/* acquire a key never seen */
	LP_RELEASE,
	LP_RENEW,
	LP_STATUS,
	LP_ASSERT,
	LP_COUNT
} LeasePlan;

#define LEASE_COLS "token, fencing_token, holder, acquired_at, expires_at"

static const IdemPlanDef lease_plan_defs[LP_COUNT] = {
	[LP_SELECT] = {
		"SELECT " LEASE_COLS " FROM ONLY idempotency.leases"
		" WHERE key OPERATOR(pg_catalog.=) $1",
		1, {TEXTOID}
	},
	[LP_TAKE] = {
		"UPDATE ONLY idempotency.leases SET token = $2,"
		" fencing_token = fencing_token OPERATOR(pg_catalog.+) 1,"
		" holder = $3, acquired_at = $4, expires_at = $5"
		" WHERE key OPERATOR(pg_catalog.=) $1"
		" AND (token IS NULL OR expires_at OPERATOR(pg_catalog.<=) $4"
		" OR token OPERATOR(pg_catalog.=) $6)"
		" RETURNING fencing_token",
		6, {TEXTOID, UUIDOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, UUIDOID}
	},
	[LP_INSERT] = {
		"INSERT INTO idempotency.leases AS l"
		" (key, token, fencing_token, holder, acquired_at, expires_at)"
		" VALUES ($1, $2, 1, $3, $4, $5) ON CONFLICT (key) DO NOTHING"
		" RETURNING l.fencing_token",
		5, {TEXTOID, UUIDOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID}
	},
	[LP_RELEASE] = {
		"UPDATE ONLY idempotency.leases SET token = NULL, holder = NULL,"
		" acquired_at = NULL, expires_at = NULL"
		" WHERE key OPERATOR(pg_catalog.=) $1 AND token IS NOT NULL"
		" AND expires_at OPERATOR(pg_catalog.>) $3"
		" AND ($2 IS NULL OR token OPERATOR(pg_catalog.=) $2)"
		" RETURNING fencing_token",
		3, {TEXTOID, UUIDOID, TIMESTAMPTZOID}
	},
	[LP_RENEW] = {
		"UPDATE ONLY idempotency.leases SET expires_at = $3"
		" WHERE key OPERATOR(pg_catalog.=) $1"
		" AND token OPERATOR(pg_catalog.=) $2"
		" AND expires_at OPERATOR(pg_catalog.>) $4"
		" RETURNING expires_at",
		4, {TEXTOID, UUIDOID, TIMESTAMPTZOID, TIMESTAMPTZOID}
	},
	[LP_STATUS] = {
		"SELECT " LEASE_COLS " FROM ONLY idempotency.leases"
		" WHERE key OPERATOR(pg_catalog.=) $1 AND token IS NOT NULL"
		" AND expires_at OPERATOR(pg_catalog.>) $2",
		2, {TEXTOID, TIMESTAMPTZOID}
	},
	[LP_ASSERT] = {
		"SELECT fencing_token FROM ONLY idempotency.leases"
		" WHERE key OPERATOR(pg_catalog.=) $1"
		" AND token OPERATOR(pg_catalog.=) $2"
		" AND expires_at OPERATOR(pg_catalog.>) $3 FOR SHARE",
		3, {TEXTOID, UUIDOID, TIMESTAMPTZOID}
	},
};

static SPIPlanPtr lease_saved_plans[LP_COUNT];

static const IdemPlanSet lease_plans = {
	"lease", lease_plan_defs, lease_saved_plans, LP_COUNT
};

/* A lease row as read from the table, copied out of SPI memory. */
typedef struct LeaseRow
{
	bool		found;			/* a row exists for the key */
	bool		live;			/* ... and holds a lease that has not expired */
	Datum		values[5];		/* token, fencing_token, holder, acquired_at,
								 * expires_at */
	bool		nulls[5];
	MemoryContext cxt;			/* where lease_read() copies the values */
} LeaseRow;

#define LR_TOKEN		0
#define LR_FENCING		1
#define LR_HOLDER		2
#define LR_ACQUIRED		3
#define LR_EXPIRES		4

typedef enum AcquireStatus
{
	ACQ_ACQUIRED,
	ACQ_CONFLICT,
	ACQ_PRECONDITION_FAILED,
	ACQ_RETRY					/* lost a race: read the row again */
} AcquireStatus;

static const char *const acquire_status_names[] = {
	"acquired", "conflict", "precondition_failed", NULL
};

/* The columns of the rows of lease_acquire(), lease_renew(), lease_status() */
static const Oid lease_acquire_types[] = {
	TEXTOID, UUIDOID, INT8OID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID
};
static const Oid lease_renew_types[] = {TEXTOID, TIMESTAMPTZOID};
static const Oid lease_status_types[] = {
	UUIDOID, INT8OID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID
};

static int	lease_exec(LeasePlan which, Datum *values, const char *nulls,
					   long count);
static text *lease_key_arg(FunctionCallInfo fcinfo, int argno, const char *fn);
static text *lease_holder_arg(FunctionCallInfo fcinfo, int argno);
static pg_uuid_t *lease_token_arg(FunctionCallInfo fcinfo, int argno,
								  const char *what, bool required);
static pg_uuid_t *lease_new_token(void);
static uint64 lease_key_hash(text *key);
static void lease_read(text *key, TimestampTz now, LeaseRow *row);
static int64 lease_check_fencing(text *key, Datum fencing, bool isnull);
static void lease_check_row(text *key, const Datum *values, const bool *nulls);
static AcquireStatus lease_try_acquire(IdemSpi *spi, text *key, text *holder,
									   pg_uuid_t *if_match, int64 ttl,
									   LeaseRow *row);
static AcquireStatus lease_try_acquire_subxact(IdemSpi *spi, text *key,
											   text *holder,
											   pg_uuid_t *if_match, int64 ttl,
											   LeaseRow *row);

/* Run a saved plan; returns the number of rows processed. */
static int
lease_exec(LeasePlan which, Datum *values, const char *nulls, long count)
{
	return (int) idem_plan_exec(&lease_plans, which, values, nulls, count);
}

/*
 * LP_TAKE, LP_RELEASE and LP_RENEW without the executor where src/rows.c
 * can (see there): the columns they read and set, and their WHERE and SET.
 */
enum
{
	LCOL_KEY,
	LCOL_TOKEN,
	LCOL_FENCING,
	LCOL_HOLDER,
	LCOL_ACQUIRED,
	LCOL_EXPIRES,
	LCOL_COUNT
};

static const IdemRowCol lease_cols[LCOL_COUNT] = {
	[LCOL_KEY] = {"key", TEXTOID, DEFAULT_COLLATION_OID},
	[LCOL_TOKEN] = {"token", UUIDOID, InvalidOid},
	[LCOL_FENCING] = {"fencing_token", INT8OID, InvalidOid},
	[LCOL_HOLDER] = {"holder", TEXTOID, DEFAULT_COLLATION_OID},
	[LCOL_ACQUIRED] = {"acquired_at", TIMESTAMPTZOID, InvalidOid},
	[LCOL_EXPIRES] = {"expires_at", TIMESTAMPTZOID, InvalidOid},
};

static IdemRowShape lease_shape = {lease_cols, LCOL_COUNT};

/* A statement's parameters, as lease_exec() takes them, and its RETURNING. */
typedef struct LeaseChange
{
	LeasePlan	which;
	Datum	   *args;
	const char *nulls;			/* NULL: none */
	Datum		ret;
	bool		ret_null;
} LeaseChange;

static IdemRowEditResult
lease_edit(void *arg, const AttrNumber *att, Datum *values, bool *isnull)
{
	LeaseChange *lc = (LeaseChange *) arg;
	Datum	   *p = lc->args;
	int			c;

#define LCOL(c) (att[(c)] - 1)
#define ARG_NULL(i) (lc->nulls != NULL && lc->nulls[(i)] == 'n')
#define TOKEN_IS(i) (!isnull[LCOL(LCOL_TOKEN)] && !ARG_NULL(i) && \
	memcmp(DatumGetUUIDP(values[LCOL(LCOL_TOKEN)]), DatumGetUUIDP(p[(i)]), \
		   UUID_LEN) == 0)
#define EXPIRES_CMP(op, i) (!isnull[LCOL(LCOL_EXPIRES)] && \
	DatumGetTimestampTz(values[LCOL(LCOL_EXPIRES)]) op DatumGetTimestampTz(p[(i)]))
	switch (lc->which)
	{
		case LP_TAKE:
			/* WHERE token IS NULL OR expires_at <= $4 OR token = $6 */
			if (!isnull[LCOL(LCOL_TOKEN)] && !EXPIRES_CMP(<=, 3) && !TOKEN_IS(5))
				return IDEM_EDIT_SKIP;
			/* fencing_token + 1: the statement raises the overflow */
			if (!isnull[LCOL(LCOL_FENCING)] &&
				DatumGetInt64(values[LCOL(LCOL_FENCING)]) == PG_INT64_MAX)
				return IDEM_EDIT_FALLBACK;
			/* SET token = $2, fencing_token + 1, holder = $3, $4, $5 */
			values[LCOL(LCOL_TOKEN)] = p[1];
			isnull[LCOL(LCOL_TOKEN)] = false;
			if (!isnull[LCOL(LCOL_FENCING)])
				values[LCOL(LCOL_FENCING)] =
					Int64GetDatum(DatumGetInt64(values[LCOL(LCOL_FENCING)]) + 1);
			values[LCOL(LCOL_HOLDER)] = p[2];
			isnull[LCOL(LCOL_HOLDER)] = ARG_NULL(2);
			values[LCOL(LCOL_ACQUIRED)] = p[3];
			isnull[LCOL(LCOL_ACQUIRED)] = false;
			values[LCOL(LCOL_EXPIRES)] = p[4];
			isnull[LCOL(LCOL_EXPIRES)] = false;
			lc->ret = values[LCOL(LCOL_FENCING)];
			lc->ret_null = isnull[LCOL(LCOL_FENCING)];
			break;
		case LP_RELEASE:
			/* WHERE token IS NOT NULL AND expires_at > $3 AND ($2 IS NULL OR token = $2) */
			if (isnull[LCOL(LCOL_TOKEN)] || !EXPIRES_CMP(>, 2) ||
				!(ARG_NULL(1) || TOKEN_IS(1)))
				return IDEM_EDIT_SKIP;
			for (c = LCOL_TOKEN; c < LCOL_COUNT; c++)
			{
				if (c == LCOL_FENCING)
					continue;
				values[LCOL(c)] = (Datum) 0;
				isnull[LCOL(c)] = true;
			}
			lc->ret = values[LCOL(LCOL_FENCING)];
			lc->ret_null = isnull[LCOL(LCOL_FENCING)];
			break;
		case LP_RENEW:
			/* WHERE token = $2 AND expires_at > $4; SET expires_at = $3 */
			if (!TOKEN_IS(1) || !EXPIRES_CMP(>, 3))
				return IDEM_EDIT_SKIP;
			values[LCOL(LCOL_EXPIRES)] = p[2];
			lc->ret = p[2];
			lc->ret_null = false;
			break;
		default:
			elog(ERROR, "lease statement %d has no direct change", (int) lc->which);
	}
#undef EXPIRES_CMP
#undef TOKEN_IS
#undef ARG_NULL
#undef LCOL
	return IDEM_EDIT_CHANGE;
}

/*
 * Run LP_TAKE, LP_RELEASE or LP_RENEW: the number of rows it changed, and
 * on a change *ret and *ret_null, the (by-value) column it returns.  The
 * SPI result, if any, is freed.
 */
static int
lease_change(IdemSpi *spi, LeasePlan which, Datum *args, const char *nulls,
			 Datum *ret, bool *ret_null)
{
	LeaseChange lc = {which, args, nulls, (Datum) 0, true};
	IdemRowTarget target = {NULL, "leases_pkey", LCOL_KEY, F_TEXTEQ, args[0]};
	int			n;

	n = idem_row_count(idem_row_update(spi, &lease_shape, &target,
									   lease_edit, &lc));
	if (n >= 0)
	{
		*ret = lc.ret;
		*ret_null = lc.ret_null;
		return n;
	}
	n = lease_exec(which, args, nulls, 1);
	if (n > 0)
		*ret = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
							 ret_null);
	SPI_freetuptable(SPI_tuptable);
	return n;
}

static text *
lease_key_arg(FunctionCallInfo fcinfo, int argno, const char *fn)
{
	IdemTextArg spec = {
		"key", fn, false, false, LEASE_MAX_KEY,
		"Pass the name of the resource the lease protects, for example 'report:2024-06'."
	};

	return idem_arg_text(fcinfo, argno, &spec);
}

static text *
lease_holder_arg(FunctionCallInfo fcinfo, int argno)
{
	static const IdemTextArg spec = {
		"holder", "lease_acquire", true, true, LEASE_MAX_HOLDER,
		"Pass a short description of the holder, such as host name and process id."
	};

	return idem_arg_text(fcinfo, argno, &spec);
}

static pg_uuid_t *
lease_token_arg(FunctionCallInfo fcinfo, int argno, const char *what,
				bool required)
{
	if (PG_ARGISNULL(argno))
	{
		if (required)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not be null", what),
					 errhint("Pass the token that lease_acquire() returned.")));
		return NULL;
	}
	return PG_GETARG_UUID_P(argno);
}

/* A random (version 4) UUID, as gen_random_uuid() makes. */
static pg_uuid_t *
lease_new_token(void)
{
	pg_uuid_t  *uuid = palloc(sizeof(pg_uuid_t));

	idem_random_uuid(uuid);
	return uuid;
}

static uint64
lease_key_hash(text *key)
{
	return idem_hash_key(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key),
						 LEASE_HASH_SEED);
}

/*
 * The rules of a lease row, which the table does not enforce with CHECK
 * constraints (evaluating them would cost every acquire and release): a
 * fencing token is positive, and a held row (token set) has both its
 * timestamps.  The functions write only such rows and nobody but the
 * table's owner may write the table; a row the owner wrote by hand that
 * breaks a rule is refused wherever it is read, before anything is
 * decided or returned from it.
 */
static int64
lease_check_fencing(text *key, Datum fencing, bool isnull)
{
	if (isnull || DatumGetInt64(fencing) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("lease \"%s\" has an invalid fencing token",
						text_to_cstring(key)),
				 errdetail("Fencing tokens in idempotency.leases are positive; this row was not written by the idempotency functions."),
				 errhint("As the owner of idempotency.leases, set fencing_token to a value above every fencing token already issued for the key.")));
	return DatumGetInt64(fencing);
}

static void
lease_check_row(text *key, const Datum *values, const bool *nulls)
{
	lease_check_fencing(key, values[LR_FENCING], nulls[LR_FENCING]);
	if (!nulls[LR_TOKEN] && (nulls[LR_ACQUIRED] || nulls[LR_EXPIRES]))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("lease \"%s\" is held without an acquisition or expiry time",
						text_to_cstring(key)),
				 errdetail("A row of idempotency.leases with a token has acquired_at and expires_at; this row was not written by the idempotency functions."),
				 errhint("As the owner of idempotency.leases, set both columns, or set token, holder, acquired_at and expires_at to null to free the lease.")));
}

/*
 * Read the key's row (any state) into *row, copying the values into
 * row->cxt; the statement's result is freed (a wait on a Citus cluster
 * reads every 100 ms).  "live" is judged against now.
 */
static void
lease_read(text *key, TimestampTz now, LeaseRow *row)
{
	Datum		args[1];
	MemoryContext old;
	int			i;

	args[0] = PointerGetDatum(key);
	row->found = row->live = false;
	for (i = 0; i < 5; i++)
	{
		row->values[i] = (Datum) 0;
		row->nulls[i] = true;
	}
	if (lease_exec(LP_SELECT, args, NULL, 1) == 0)
	{
		SPI_freetuptable(SPI_tuptable);
		return;
	}

	row->found = true;
	old = MemoryContextSwitchTo(row->cxt);
	for (i = 0; i < 5; i++)
	{
		Form_pg_attribute att = TupleDescAttr(SPI_tuptable->tupdesc, i);
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0],
									  SPI_tuptable->tupdesc, i + 1,
									  &row->nulls[i]);

		row->values[i] = row->nulls[i] ? (Datum) 0
			: datumCopy(d, att->attbyval, att->attlen);
	}
	MemoryContextSwitchTo(old);
	SPI_freetuptable(SPI_tuptable);
	lease_check_row(key, row->values, row->nulls);
	row->live = !row->nulls[LR_TOKEN] &&
		DatumGetTimestampTz(row->values[LR_EXPIRES]) > now;
}

/*
 * One attempt to acquire.  On ACQ_ACQUIRED *row describes the new lease; on
 * ACQ_CONFLICT and ACQ_PRECONDITION_FAILED the current holder's lease.
 * ACQ_RETRY means the row changed between the UPDATE and the read that
 * explains its failure (someone else committed a change): try again.
 */
static AcquireStatus
lease_try_acquire(IdemSpi *spi, text *key, text *holder, pg_uuid_t *if_match,
				  int64 ttl, LeaseRow *row)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz expires = idem_time_add(now, ttl, "ttl", "lease_acquire");
	pg_uuid_t  *token;
	Datum		args[6];
	char		nulls[6] = "      ";
	Datum		fencing = (Datum) 0;
	bool		isnull;
	int			n;

	token = lease_new_token();
	args[0] = PointerGetDatum(key);
	args[1] = UUIDPGetDatum(token);
	args[2] = PointerGetDatum(holder);
	nulls[2] = holder ? ' ' : 'n';
	args[3] = TimestampTzGetDatum(now);
	args[4] = TimestampTzGetDatum(expires);
	args[5] = UUIDPGetDatum(if_match);
	nulls[5] = if_match ? ' ' : 'n';

	/*
	 * The common case first: the key's row exists and is free, expired or
	 * ours to hand over.  The UPDATE only locks the row when its committed
	 * version satisfies the WHERE clause, so a conflict takes no lock.
	 */
	n = lease_change(spi, LP_TAKE, args, nulls, &fencing, &isnull);
	if (n == 0)
	{
		/* Why not?  Held by someone else, or never leased. */
		lease_read(key, now, row);
		if (row->live)
		{
			if (if_match == NULL)
				return ACQ_CONFLICT;
			if (memcmp(DatumGetUUIDP(row->values[LR_TOKEN])->data,
					   if_match->data, UUID_LEN) != 0)
				return ACQ_PRECONDITION_FAILED;
			return ACQ_RETRY;	/* handed to if_match since the UPDATE */
		}
		if (row->found)
			return ACQ_RETRY;	/* released or expired since the UPDATE */
		if (lease_exec(LP_INSERT, args, nulls, 1) == 0)
		{
			SPI_freetuptable(SPI_tuptable);
			return ACQ_RETRY;	/* inserted concurrently */
		}
		fencing = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
								1, &isnull);
		SPI_freetuptable(SPI_tuptable);
	}

	row->found = row->live = true;
	row->values[LR_FENCING] = fencing;
	lease_check_fencing(key, row->values[LR_FENCING], isnull);
	row->values[LR_TOKEN] = UUIDPGetDatum(token);
	row->values[LR_HOLDER] = PointerGetDatum(holder);
	row->values[LR_ACQUIRED] = TimestampTzGetDatum(now);
	row->values[LR_EXPIRES] = TimestampTzGetDatum(expires);
	memset(row->nulls, false, sizeof(row->nulls));
	row->nulls[LR_HOLDER] = (holder == NULL);

	/* A hand-over may shorten the expiry waiters are sleeping towards. */
	if (if_match != NULL)
		idem_keywait_notify(IDEM_LOCKSPACE_LEASE_WAIT, lease_key_hash(key));
	return ACQ_ACQUIRED;
}

/* Argument of lease_try_acquire_body(). */
typedef struct LeaseAttempt
{
	IdemSpi    *spi;
	text	   *key;
	text	   *holder;
	pg_uuid_t  *if_match;
	int64		ttl;
	LeaseRow   *row;
	AcquireStatus status;
} LeaseAttempt;

static bool
lease_try_acquire_body(void *arg)
{
	LeaseAttempt *a = (LeaseAttempt *) arg;

	a->status = lease_try_acquire(a->spi, a->key, a->holder, a->if_match,
								  a->ttl, a->row);
	/* Keep the work only when the lease was acquired. */
	return a->status == ACQ_ACQUIRED;
}

/*
 * lease_try_acquire() in a subtransaction that is rolled back unless the
 * lease was acquired, so that no row lock from a lost race outlives the
 * attempt.  Used by waiting acquires, which sleep between attempts.  An
 * error rolls the subtransaction back before it reaches the caller.
 */
static AcquireStatus
lease_try_acquire_subxact(IdemSpi *spi, text *key, text *holder,
						  pg_uuid_t *if_match, int64 ttl, LeaseRow *row)
{
	LeaseAttempt a;

	a.spi = spi;
	a.key = key;
	a.holder = holder;
	a.if_match = if_match;
	a.ttl = ttl;
	a.row = row;
	a.status = ACQ_RETRY;
	(void) idem_subxact_run(lease_try_acquire_body, NULL, &a, 0, NULL);
	return a.status;
}

/*
 * lease_acquire(key text, ttl interval, holder text, if_match uuid,
 *				 wait interval)
 *	  RETURNS TABLE (status, token, fencing_token, holder, acquired_at,
 *					 expires_at)
 */
Datum
idempotency_lease_acquire(PG_FUNCTION_ARGS)
{
	IdemSpi		spi;
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	text	   *key;
	int64		ttl;
	text	   *holder;
	pg_uuid_t  *if_match;
	int64		wait;
	TimestampTz deadline = 0;
	IdemKeyWait w;
	LeaseRow	row;
	AcquireStatus status;
	Datum		values[6];
	bool		nulls[6];
	int			retries = 0;
	bool		distributed;

	idem_stats_begin(IDEM_OP_LEASE_ACQUIRE);
	idempotency_check_version();
	idem_check_writable("lease_acquire");
	idem_forbid_parallel("lease_acquire()");
	key = lease_key_arg(fcinfo, 0, "lease_acquire");
	ttl = idem_arg_interval(fcinfo, 1, "ttl", "lease_acquire", false);
	holder = lease_holder_arg(fcinfo, 2);
	if_match = lease_token_arg(fcinfo, 3, "if_match", false);
	wait = idem_arg_interval(fcinfo, 4, "wait", "lease_acquire", true);

	if (wait > 0)
	{
		if (IsolationUsesXactSnapshot())
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("lease_acquire() cannot wait in a %s transaction",
							IsolationIsSerializable() ? "SERIALIZABLE" : "REPEATABLE READ"),
					 errdetail("The transaction's snapshot would never show the lease being released."),
					 errhint("Call lease_acquire() with a wait in its own READ COMMITTED transaction, or pass wait => '0'.")));
		deadline = idem_time_add(GetCurrentTimestamp(), wait, "wait", "lease_acquire");
		idem_keywait_begin(&w, IDEM_LOCKSPACE_LEASE_WAIT, lease_key_hash(key));
	}

	idem_init_srf(fcinfo, lease_acquire_types, lengthof(lease_acquire_types),
				  "lease_acquire");

	distributed = (wait > 0) && idem_citus_distributed("leases");
	/*
	 * Each round's reads in a context emptied before the next round (a
	 * wait on a Citus cluster reads every 100 ms, for as long as the
	 * wait); the last round's row is what the call returns.
	 */
	row.cxt = AllocSetContextCreate(CurrentMemoryContext,
									"idempotency lease round",
									ALLOCSET_SMALL_SIZES);
	idem_spi_begin(&spi, "leases", true);

	for (;;)
	{
		TimestampTz now;
		TimestampTz until;

		MemoryContextReset(row.cxt);
		MemoryContextSwitchTo(row.cxt);
		if (wait > 0)
			status = lease_try_acquire_subxact(&spi, key, holder, if_match,
											   ttl, &row);
		else
			status = lease_try_acquire(&spi, key, holder, if_match, ttl, &row);
		if (status == ACQ_RETRY)
		{
			/* Each retry follows a committed change by someone else. */
			if (++retries > LEASE_MAX_RETRIES)
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("lease \"%s\" kept changing while it was being acquired",
								text_to_cstring(key)),
						 errdetail("The lease changed hands %d times during one call.",
								   LEASE_MAX_RETRIES),
						 errhint("Retry the call.  If this repeats, check for row level security or triggers on idempotency.leases.")));
			CHECK_FOR_INTERRUPTS();
			continue;
		}
		if (status != ACQ_CONFLICT || wait == 0)
			break;
		now = GetCurrentTimestamp();
		if (now >= deadline)
			break;
		until = Min(deadline, DatumGetTimestampTz(row.values[LR_EXPIRES]));
		/* A release on another node does not wake us: look again soon. */
		if (distributed)
			until = Min(until, TimestampTzPlusMilliseconds(now, IDEM_CITUS_POLL_MS));
		(void) idem_keywait_sleep(&w, until);
	}

	if (wait > 0)
		idem_keywait_end(&w);

	values[0] = CStringGetTextDatum(acquire_status_names[status]);
	nulls[0] = false;
	memcpy(&values[1], row.values, sizeof(row.values));
	memcpy(&nulls[1], row.nulls, sizeof(row.nulls));
	idem_put_result_row(rsinfo, values, nulls, lengthof(values));

	idem_spi_end(&spi);
	idem_stats_end_status(acquire_status_names[status]);
	return (Datum) 0;
}

/*
 * lease_renew(key text, token uuid, ttl interval)
 *	  RETURNS TABLE (status text, expires_at timestamptz)
 *
 * Strict: a lease whose expires_at has passed is lost even if nobody has
 * taken it yet, because from that moment another session may.
 */
Datum
idempotency_lease_renew(PG_FUNCTION_ARGS)
{
	IdemSpi		spi;
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	text	   *key;
	pg_uuid_t  *token;
	int64		ttl;
	TimestampTz now;
	TimestampTz expires;
	Datum		args[4];
	Datum		values[2];
	bool		nulls[2] = {false, false};
	Datum		ret;
	bool		ret_null;

	idem_stats_begin(IDEM_OP_LEASE_RENEW);
	idempotency_check_version();
	idem_check_writable("lease_renew");
	idem_forbid_parallel("lease_renew()");
	key = lease_key_arg(fcinfo, 0, "lease_renew");
	token = lease_token_arg(fcinfo, 1, "lease token", true);
	ttl = idem_arg_interval(fcinfo, 2, "ttl", "lease_renew", false);

	idem_init_srf(fcinfo, lease_renew_types, lengthof(lease_renew_types),
				  "lease_renew");
	idem_spi_begin(&spi, "leases", true);

	now = GetCurrentTimestamp();
	expires = idem_time_add(now, ttl, "ttl", "lease_renew");
	args[0] = PointerGetDatum(key);
	args[1] = UUIDPGetDatum(token);
	args[2] = TimestampTzGetDatum(expires);
	args[3] = TimestampTzGetDatum(now);
	if (lease_change(&spi, LP_RENEW, args, NULL, &ret, &ret_null) > 0)
	{
		values[0] = CStringGetTextDatum("renewed");
		values[1] = TimestampTzGetDatum(expires);
		/* A shorter ttl can move the expiry earlier: let waiters re-check. */
		idem_keywait_notify(IDEM_LOCKSPACE_LEASE_WAIT, lease_key_hash(key));
	}
	else
	{
		values[0] = CStringGetTextDatum("lost");
		nulls[1] = true;
	}
	idem_put_result_row(rsinfo, values, nulls, lengthof(values));

	idem_spi_end(&spi);
	idem_stats_end(nulls[1] ? IDEM_OC_LOST : IDEM_OC_RENEWED);
	return (Datum) 0;
}

/*
 * lease_release(key text, token uuid DEFAULT NULL) RETURNS text
 *	  'released' | 'not_found' | 'precondition_failed'
 */
Datum
idempotency_lease_release(PG_FUNCTION_ARGS)
{
	IdemSpi		spi;
	text	   *key;
	pg_uuid_t  *token;
	const char *result;
	Datum		args[3];
	char		nulls[3] = "   ";
	Datum		ret;
	bool		ret_null;
	int			retries = 0;

	idem_stats_begin(IDEM_OP_LEASE_RELEASE);
	idempotency_check_version();
	idem_check_writable("lease_release");
	idem_forbid_parallel("lease_release()");
	key = lease_key_arg(fcinfo, 0, "lease_release");
	token = lease_token_arg(fcinfo, 1, "lease token", false);

	idem_spi_begin(&spi, "leases", true);

	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();
		LeaseRow	row;

		row.cxt = CurrentMemoryContext;
		args[0] = PointerGetDatum(key);
		args[1] = UUIDPGetDatum(token);
		nulls[1] = token ? ' ' : 'n';
		args[2] = TimestampTzGetDatum(now);
		if (lease_change(&spi, LP_RELEASE, args, nulls, &ret, &ret_null) > 0)
		{
			result = "released";
			idem_keywait_notify(IDEM_LOCKSPACE_LEASE_WAIT, lease_key_hash(key));
			break;
		}

		/* Nothing released: free, or held under another token? */
		lease_read(key, now, &row);
		if (!row.live)
		{
			result = "not_found";
			break;
		}
		if (token != NULL &&
			memcmp(DatumGetUUIDP(row.values[LR_TOKEN])->data, token->data,
				   UUID_LEN) != 0)
		{
			result = "precondition_failed";
			break;
		}
		/* Acquired (or handed over) between our two statements: again. */
		if (++retries > LEASE_MAX_RETRIES)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("lease \"%s\" kept changing while it was being released",
							text_to_cstring(key)),
					 errhint("Retry the call.  If this repeats, check for row level security or triggers on idempotency.leases.")));
		CHECK_FOR_INTERRUPTS();
	}

	idem_spi_end(&spi);
	idem_stats_end_status(result);
	PG_RETURN_TEXT_P(cstring_to_text(result));
}

/*
 * lease_status(key text) RETURNS TABLE (token, fencing_token, holder,
 *										 acquired_at, expires_at)
 *	  One row while the lease is held, none when it is free.
 */
Datum
idempotency_lease_status(PG_FUNCTION_ARGS)
{
	IdemSpi		spi;
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	text	   *key;
	Datum		args[2];

	idempotency_check_version();
	key = lease_key_arg(fcinfo, 0, "lease_status");

	idem_init_srf(fcinfo, lease_status_types, lengthof(lease_status_types),
				  "lease_status");
	idem_spi_begin(&spi, "leases", false);

	args[0] = PointerGetDatum(key);
	args[1] = TimestampTzGetDatum(GetCurrentTimestamp());
	if (lease_exec(LP_STATUS, args, NULL, 1) > 0)
	{
		Datum		values[5];
		bool		nulls[5];

		heap_deform_tuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
						  values, nulls);
		lease_check_row(key, values, nulls);
		idem_put_result_row(rsinfo, values, nulls, lengthof(values));
	}

	idem_spi_end(&spi);
	return (Datum) 0;
}

/*
 * lease_assert(key text, token uuid) RETURNS bigint
 *	  The fencing token of the caller's live lease, locked FOR SHARE until
 *	  the end of the transaction; 55P03 when the lease is not the caller's.
 */
Datum
idempotency_lease_assert(PG_FUNCTION_ARGS)
{
	IdemSpi		spi;
	text	   *key;
	pg_uuid_t  *token;
	TimestampTz now;
	Datum		args[3];
	int64		fencing;
	bool		isnull;
	LeaseRow	row;
	char	   *keystr;
	char	   *tokstr;

	idem_stats_begin(IDEM_OP_LEASE_ASSERT);
	idempotency_check_version();
	idem_check_writable("lease_assert");
	idem_forbid_parallel("lease_assert()");
	key = lease_key_arg(fcinfo, 0, "lease_assert");
	token = lease_token_arg(fcinfo, 1, "lease token", true);

	idem_spi_begin(&spi, "leases", false);

	now = GetCurrentTimestamp();
	args[0] = PointerGetDatum(key);
	args[1] = UUIDPGetDatum(token);
	args[2] = TimestampTzGetDatum(now);
	if (lease_exec(LP_ASSERT, args, NULL, 1) > 0)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0],
									  SPI_tuptable->tupdesc, 1, &isnull);

		fencing = lease_check_fencing(key, d, isnull);
		idem_spi_end(&spi);
		idem_stats_end(IDEM_OC_OK);
		PG_RETURN_INT64(fencing);
	}

	/* Not held: say why. */
	row.cxt = CurrentMemoryContext;
	lease_read(key, GetCurrentTimestamp(), &row);
	keystr = text_to_cstring(key);
	tokstr = DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(token)));
	if (row.live &&
		memcmp(DatumGetUUIDP(row.values[LR_TOKEN])->data, token->data,
			   UUID_LEN) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
				 errmsg("lease \"%s\" is not held by token %s", keystr, tokstr),
				 errdetail("The lease is held by another token with fencing token " INT64_FORMAT ", until %s.",
						   DatumGetInt64(row.values[LR_FENCING]),
						   timestamptz_to_str(DatumGetTimestampTz(row.values[LR_EXPIRES]))),
				 errhint("The caller lost the lease; stop writing and acquire the lease \"%s\" again.", keystr)));
	else if (!row.nulls[LR_TOKEN] &&
			 memcmp(DatumGetUUIDP(row.values[LR_TOKEN])->data, token->data,
					UUID_LEN) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
				 errmsg("lease \"%s\" held by token %s has expired", keystr, tokstr),
				 errdetail("The lease expired at %s.",
						   timestamptz_to_str(DatumGetTimestampTz(row.values[LR_EXPIRES]))),
				 errhint("Renew leases well before they expire; acquire the lease \"%s\" again.", keystr)));
	else
		ereport(ERROR,
				(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
				 errmsg("lease \"%s\" is not held by token %s", keystr, tokstr),
				 errdetail("The lease is free."),
				 errhint("Acquire the lease \"%s\" before writing.", keystr)));
	PG_RETURN_NULL();			/* not reached */
}
