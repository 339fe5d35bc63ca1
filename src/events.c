/*-------------------------------------------------------------------------
 *
 * events.c
 *	  Processed events and idempotency keys: mark_processed,
 *	  claim, complete, fail and forget on idempotency.processed_events.
 *
 * Keys.  A record is identified by (owner, scope, key), owner being the
 * current user: roles cannot collide with or probe each other's keys.  The
 * functions are SECURITY INVOKER; their statements run through SPI as the
 * table's owner (plans.c) and always name the caller as the owner, and row
 * level security keeps a role reading the table out of other roles' rows.
 *
 * Claims in one transaction.  claim() reads the row (no lock); when the key
 * looks free (no row, an expired row, a lease that ran out) it takes an
 * ExclusiveLock on the key's tag in IDEM_LOCKSPACE_EVENT (transaction
 * scope) and writes its claim, keeping the lock when it returns 'claimed'.
 * A concurrent claim of the same key sees no row (the holder's insert is not
 * visible), so it queues for that lock in the lock manager (FIFO, deadlock
 * detection, visible in pg_locks) until the holder's transaction ends; its
 * INSERT ... ON CONFLICT DO NOTHING then finds the committed row (or, after
 * a rollback, inserts: 'claimed'), and it reads the row again with a fresh
 * snapshot to return the committed outcome ('completed' + result).
 * idem_lock_acquire() bounds that wait by `wait` and returns false on expiry
 * without aborting the caller, which then gets 'in_progress'.  We chose the
 * lock over bounding the INSERT's own wait for the conflicting transaction:
 * an INSERT wait can only end in an error, and the lock also serializes the
 * writes of expired rows and takeovers, which are compare-and-swap UPDATEs on
 * the fencing token that was read.  Outcomes other than 'claimed' never hold
 * the lock, so a replay in a long transaction never blocks anybody.
 *
 * Claims across transactions (leases).  A claim that commits leaves the row
 * 'in_progress' with locked_until = now + lease and a token.  A later claim
 * finds a live lease and returns 'in_progress', or waits: it advertises itself
 * with idem_keywait_begin() in IDEM_LOCKSPACE_EVENT_WAIT before it checks,
 * and sleeps until min(its deadline, locked_until); complete/fail/forget call
 * idem_keywait_notify(), which wakes it when their transaction commits.  Once
 * the lease has run out, the next claim takes the key over: attempts + 1, a
 * new token and a new fencing token (a sequence, so strictly increasing).
 * complete/fail update the row only WHERE token = the caller's token, so a
 * stale worker can never overwrite anything.
 *
 * Without the executor.  The claim's INSERT of a key without a record
 * (PLAN_INSERT_CLAIM), mark_processed's INSERT (PLAN_MARK_INSERT) and the
 * finish of a claim of this transaction (PLAN_FINISH_TID) are made by
 * src/rows.c where it can (event_insert_fill, event_mark_fill,
 * event_finish_edit: the statements' VALUES, WHERE and SET in C), with the
 * statements' own effects; everywhere else, and whenever rows.c declines,
 * the statements run.
 *
 * Replays.  A finished, unexpired record never changes except by forget or
 * purge, so a replay ('completed', 'failed', 'mismatch') costs one index
 * lookup and no lock.
 *
 * Claims of this transaction.  Every 'claimed' outcome is remembered in a
 * backend-local list (TopTransactionContext) with the subtransaction that
 * made it, and complete/fail/forget mark it done in theirs.  The list lets
 * complete/fail without a token act on a claim made in the same
 * transaction (and only on such a claim), and implements require_complete:
 * the pre-commit callback refuses to commit while a claim made with
 * require_complete is not done.  Subtransaction abort drops the claims (their
 * rows are gone) and undoes "done" marks made in it; subtransaction commit
 * hands both to the parent.  A claim also remembers the ctid of the row
 * version it wrote (plain table): complete/fail of that claim update the
 * row by that address (PLAN_FINISH_TID, a TID scan), which finds it unless
 * this transaction changed the row since; then the search by key runs.
 *
 * Locking summary: the EVENT lock (transaction scope) serializes claims of a
 * key; row locks taken by UPDATE/DELETE serialize complete/fail/forget/purge
 * against each other and against claims; the list is backend-local.
 *
 * Statements.  They run as the table's owner (idem_spi_begin, src/plans.c):
 * nobody else may write the table.  The caller's role is read first and is
 * a parameter of every statement ($1 owner), so a role acts on its own
 * records only; purge() passes the caller for its membership test.
 *
 * The lookup.  claim() and the error path of complete/fail read the row
 * with a direct probe of processed_events_pkey (event_probe: index scan
 * with GetTransactionSnapshot(), no SPI, no executor), which returns what
 * PLAN_LOOKUP run as the owner would.  event_probe_direct_ok() says where
 * it is the same thing; elsewhere (a Citus table, SERIALIZABLE, FORCE ROW
 * LEVEL SECURITY, inheritance children, an index that is not the primary
 * key we created) PLAN_LOOKUP runs through SPI.  The probe holds the
 * AccessShareLocks the SELECT would take and releases its buffer pin and
 * snapshot before it returns; what it read is copied out of the buffer.
 *
 * Owners.  The owner column holds the role's name as text, so that it
 * means the same on every node of a Citus cluster, where role OIDs differ
 * (text rather than name, whose 64 bytes would widen every row and index
 * entry).  0.1.0 stored a regrole: the same statements with $1 of that
 * type serve a database not yet updated (event_table_kind()).
 *
 * On Citus.  When processed_events is distributed (idem_citus_distributed(),
 * checked per call, cached per table), every statement goes through Citus
 * (never the direct probe) and the ones Citus would refuse have variants
 * (event_citus_plan_defs): uuid tokens, times and fencing tokens come from
 * here (fencing: the row's + 1, at least the clock in microseconds, so it
 * grows per key across nodes and across a delete and re-insert), the
 * compare-and-swap of a claim is on (updated_at, fencing_token, status)
 * instead of xmin, complete/fail read the row and compute the expiry here,
 * and purge reads a batch of keys then deletes by key.  The EVENT lock
 * stays node-local: it serializes claims made through one node; claims
 * through different nodes are serialized by the shard's primary key (the
 * INSERT waits for the other transaction) and by the row lock of the
 * UPDATE.  Key waits are node-local too, so on Citus a waiter also looks
 * again every IDEM_CITUS_POLL_MS.
 *
 * Tokens are random UUIDs made here (idem_random_uuid()) and passed to
 * the statements, on every kind of table.
 *
 * Memory and lifetime.  The saved plans (event_saved_plans) live for the
 * backend.  claim()'s result row type lives in the call's FmgrInfo
 * (fn_extra).  The claims of the transaction (xact_claims) live in
 * TopTransactionContext; the transaction callbacks reset the list at every
 * end of transaction, so it never points to freed memory.  Everything else
 * lives in the calling function's memory context for one call.
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

#include <math.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_class.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "catalog/namespace.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

PG_FUNCTION_INFO_V1(idempotency_mark_processed);
PG_FUNCTION_INFO_V1(idempotency_claim);
PG_FUNCTION_INFO_V1(idempotency_complete);
PG_FUNCTION_INFO_V1(idempotency_fail);
PG_FUNCTION_INFO_V1(idempotency_forget);
PG_FUNCTION_INFO_V1(idempotency_purge);

/* Longest accepted key and scope, in bytes (well below the btree limit). */
#define EVENT_MAX_KEY_BYTES		1024
#define EVENT_MAX_SCOPE_BYTES	256

/* Seed separating our key hashes from other users of idem_hash_key(). */
#define EVENT_HASH_SEED			UINT64CONST(0x45564e5453494445)

/* The key a call works on. */
typedef struct EventKey
{
	Oid			owner;			/* the caller's role */
	text	   *owner_name;		/* its name: what the table stores */
	Datum		owner_datum;	/* $1 of the statements */
	text	   *scope;
	text	   *key;
	uint64		hash;
} EventKey;

/* A claim made by the current transaction (see the file header). */
typedef struct XactClaim
{
	Oid			owner;
	char	   *scope;
	char	   *key;
	pg_uuid_t	token;
	TimestampTz locked_until;	/* as the claim wrote them */
	TimestampTz expires_at;
	ItemPointerData tid;		/* the row version it wrote (plain table) */
	bool		has_tid;
	bool		require_complete;
	SubTransactionId subid;		/* subtransaction that claimed */
	SubTransactionId done_subid;	/* that completed it, or Invalid */
	struct XactClaim *next;
} XactClaim;

/* The row as claim() reads it. */
typedef struct EventRow
{
	bool		found;
	char		status;			/* 'i'n_progress, 'c'ompleted, 'f'ailed */
	bytea	   *fingerprint;
	Datum		result;
	bool		result_null;
	Datum		error;
	bool		error_null;
	int64		fencing_token;
	bool		fencing_null;
	int32		attempts;
	TimestampTz locked_until;
	bool		locked_null;
	TimestampTz expires_at;
	TransactionId xmin;			/* row version read (plain table) */
	TimestampTz updated_at;		/* the same, on a distributed table */
} EventRow;

/* claim()'s result row. */
typedef struct ClaimResult
{
	const char *status;
	Datum		result;
	bool		result_null;
	Datum		error;
	bool		error_null;
	pg_uuid_t	token;
	bool		has_token;
	int64		fencing;
	bool		fencing_null;
	int32		attempts;
	bool		attempts_null;
	TimestampTz expires;
	bool		expires_null;
} ClaimResult;

/* Everything one claim() call works with. */
typedef struct ClaimState
{
	FunctionCallInfo fcinfo;
	EventKey	ek;
	bytea	   *fingerprint;	/* of the payload, or NULL */
	int64		lease;			/* microseconds */
	int64		ttl;
	int64		wait;
	bool		require_complete;
	TimestampTz deadline;		/* end of the wait */
	LOCKTAG		tag;			/* the key's claim lock */
	IdemKeyWait kw;				/* registered as a waiter (wait > 0) */
	EventRow	row;			/* as last read */
	ClaimResult res;
	IdemSpi    *spi;			/* processed_events, opened for writing */
} ClaimState;

/* What claim() does next. */
typedef enum ClaimStep
{
	CLAIM_DONE,					/* st->res is the answer */
	CLAIM_WRITE,				/* the key looks free: write the claim */
	CLAIM_AGAIN					/* read the row again */
} ClaimStep;

/* Prepared statements, kept for the life of the backend. */
enum
{
	PLAN_LOOKUP,
	PLAN_INSERT_CLAIM,
	PLAN_RECLAIM,
	PLAN_FINISH,
	PLAN_FINISH_TID,
	PLAN_RELEASE,
	PLAN_FORGET,
	PLAN_MARK_INSERT,
	PLAN_MARK_REPLACE,
	PLAN_PURGE,
	NUM_PLANS
};

static SPIPlanPtr event_saved_plans[NUM_PLANS];

/*
 * On a Citus-distributed processed_events, the statements that differ
 * (src/citus.c decides per call).  Citus refuses volatile functions in an
 * UPDATE, stable functions of columns and non-immutable functions in CASE,
 * and FOR UPDATE in a multi-shard query; and a node-local sequence or a
 * row's xmin means nothing on another node.  So tokens, times and fencing
 * tokens come from here as parameters, a claim's compare-and-swap is on
 * (updated_at, fencing_token, status), complete() reads the row first and
 * computes the new expiry here, and purge() reads a batch of keys and
 * deletes them by key.
 */
enum
{
	CPLAN_LOOKUP,
	CPLAN_INSERT_CLAIM,
	CPLAN_RECLAIM,
	CPLAN_FINISH,
	CPLAN_PURGE_KEYS,
	CPLAN_PURGE_DELETE,
	CPLAN_MEMBER_OF,
	NUM_CPLANS
};

static SPIPlanPtr event_citus_saved_plans[NUM_CPLANS];

/*
 * Is processed_events distributed by Citus?  Set by every entry point for
 * the duration of its call (event_begin_call()).
 */
static bool event_citus = false;

static XactClaim *xact_claims = NULL;

static void event_key_from_args(EventKey *ek, FunctionCallInfo fcinfo,
								int keyarg, int scopearg, const char *fn);
static bytea *event_fingerprint(Jsonb *payload);
static bool event_fingerprint_mismatch(bytea *stored, bytea *given);
static uint64 event_exec(int which, Datum *values, const char *nulls);
static void event_table_kind(void);
static int64 event_purge_citus(Oid caller, bool all, int32 batch);
static Datum event_member_of(Oid caller);
static char event_status_code(EventKey *ek, text *status);
static void event_lookup(EventKey *ek, EventRow *row);
static uint64 event_mark_insert(IdemSpi *spi, Datum *values);
static bool event_claim_matches(XactClaim *c, EventKey *ek);
static XactClaim *event_find_claim(EventKey *ek, bool only_open);
static void event_remember_claim(EventKey *ek, pg_uuid_t *token,
								 TimestampTz locked_until,
								 TimestampTz expires_at,
								 ItemPointer tid,
								 bool require_complete);
static void event_claims_done(EventKey *ek);
static void event_finish_claim(FunctionCallInfo fcinfo, EventKey *ek,
							   Datum token, bool token_null, char status,
							   Datum value, bool value_null, bool retryable);
static bool event_lock(const LOCKTAG *tag, int64 timeout_ms);
static bool event_lock_now(const LOCKTAG *tag);
static void event_unlock(const LOCKTAG *tag);
static void event_xact_callback(XactEvent event, void *arg);
static void event_subxact_callback(SubXactEvent event,
								   SubTransactionId mySubid,
								   SubTransactionId parentSubid, void *arg);
static Datum claim_form_result(FunctionCallInfo fcinfo, const ClaimResult *r);
static void claim_result_from_row(ClaimState *st, const char *status,
								  IdemStatsOutcome oc);
static void claim_read_args(FunctionCallInfo fcinfo, ClaimState *st);
static ClaimStep claim_examine(ClaimState *st, bool *takeover);
static ClaimStep claim_write(ClaimState *st, bool takeover,
							 MemoryContext callcxt);

/* The statements; $1 owner, $2 scope, $3 key always. */
static const IdemPlanDef event_plan_defs[NUM_PLANS] = {
	[PLAN_LOOKUP] = {
	/* xmin identifies the row version read, for PLAN_RECLAIM */
	"SELECT status, fingerprint, result, error, fencing_token, attempts,"
	" locked_until, expires_at, xmin FROM ONLY idempotency.processed_events"
	" WHERE owner OPERATOR(pg_catalog.=) $1 AND scope OPERATOR(pg_catalog.=) $2"
	" AND key OPERATOR(pg_catalog.=) $3",
		3, {TEXTOID, TEXTOID, TEXTOID}
	},
	[PLAN_INSERT_CLAIM] = {
	/*
	 * $4 fingerprint, $5 now, $6 locked_until, $7 expires_at, $8 token
	 * (idem_random_uuid()).  The row's ctid is for PLAN_FINISH_TID.
	 */
	"INSERT INTO idempotency.processed_events AS p (owner, scope, key, status,"
	" fingerprint, token, fencing_token, attempts, created_at, updated_at,"
	" locked_until, expires_at) VALUES ($1, $2, $3, 'in_progress', $4, $8,"
	" pg_catalog.nextval('idempotency.processed_events_fencing_seq'::pg_catalog.regclass),"
	" 1, $5, $5, $6, $7) ON CONFLICT DO NOTHING"
	" RETURNING p.token, p.fencing_token, p.attempts, p.ctid",
		8, {TEXTOID, TEXTOID, TEXTOID, BYTEAOID, TIMESTAMPTZOID,
			TIMESTAMPTZOID, TIMESTAMPTZOID, UUIDOID}
	},
	[PLAN_RECLAIM] = {
	/*
	 * $4 fingerprint, $5 now, $6 locked_until, $7 expires_at,
	 * $8 takeover (keep attempts + 1 and the old fingerprint if none given),
	 * $9 the xmin of the row version read (compare-and-swap: any change
	 * since, by a claim, mark_processed, complete or a purge and re-insert,
	 * makes a new row version, which EvalPlanQual re-checks and rejects),
	 * $10 the new token.
	 */
	"UPDATE ONLY idempotency.processed_events AS p SET status = 'in_progress',"
	" fingerprint = CASE WHEN $8 AND $4 IS NULL THEN p.fingerprint ELSE $4 END,"
	" result = NULL, error = NULL, token = $10,"
	" fencing_token = pg_catalog.nextval('idempotency.processed_events_fencing_seq'::pg_catalog.regclass),"
	" attempts = CASE WHEN $8 THEN p.attempts OPERATOR(pg_catalog.+) 1 ELSE 1 END,"
	" created_at = CASE WHEN $8 THEN p.created_at ELSE $5 END,"
	" updated_at = $5, locked_until = $6, expires_at = $7"
	" WHERE p.owner OPERATOR(pg_catalog.=) $1 AND p.scope OPERATOR(pg_catalog.=) $2"
	" AND p.key OPERATOR(pg_catalog.=) $3"
	" AND p.xmin OPERATOR(pg_catalog.=) $9"
	" RETURNING p.token, p.fencing_token, p.attempts, p.ctid",
		10, {TEXTOID, TEXTOID, TEXTOID, BYTEAOID, TIMESTAMPTZOID,
			 TIMESTAMPTZOID, TIMESTAMPTZOID, BOOLOID, XIDOID, UUIDOID}
	},
	[PLAN_FINISH] = {
	/*
	 * $4 token, $5 status, $6 result, $7 error, $8 now.  The ttl
	 * of an in_progress row is expires_at - locked_until.  Within the lease
	 * the row's expires_at (lease end + ttl) already keeps the record at
	 * least ttl from now, and leaving the indexed column alone lets the
	 * UPDATE be a HOT update; after the lease it becomes now + ttl.
	 */
	"UPDATE ONLY idempotency.processed_events AS p SET status = $5, result = $6,"
	" error = $7, updated_at = $8, locked_until = NULL,"
	" expires_at = CASE WHEN p.locked_until OPERATOR(pg_catalog.>) $8 THEN p.expires_at"
	" ELSE $8 OPERATOR(pg_catalog.+) (p.expires_at OPERATOR(pg_catalog.-) p.locked_until) END"
	" WHERE p.owner OPERATOR(pg_catalog.=) $1 AND p.scope OPERATOR(pg_catalog.=) $2"
	" AND p.key OPERATOR(pg_catalog.=) $3 AND p.status OPERATOR(pg_catalog.=) 'in_progress'"
	" AND p.token OPERATOR(pg_catalog.=) $4",
		8, {TEXTOID, TEXTOID, TEXTOID, UUIDOID, TEXTOID, JSONBOID, JSONBOID,
			TIMESTAMPTZOID}
	},
	[PLAN_FINISH_TID] = {
	/*
	 * PLAN_FINISH for a claim of this transaction (not on Citus), $9 the
	 * ctid its claim returned: the row is fetched by its address (a TID
	 * scan) instead of a search of the primary key.  The row version there,
	 * if our snapshot still sees it, is the one the claim wrote, unchanged
	 * (any change, which only this transaction can have made, makes a new
	 * version; its owner, scope and key are the claim's), so $10 is the
	 * expiry PLAN_FINISH would compute from it (event_finish_expiry()).
	 * When the version moved (a change by this transaction since), this
	 * finds nothing and PLAN_FINISH runs.  ($1-$3 are unused.)
	 */
	"UPDATE ONLY idempotency.processed_events AS p SET status = $5, result = $6,"
	" error = $7, updated_at = $8, locked_until = NULL, expires_at = $10"
	" WHERE p.ctid OPERATOR(pg_catalog.=) $9"
	" AND p.token OPERATOR(pg_catalog.=) $4"
	" AND p.status OPERATOR(pg_catalog.=) 'in_progress'",
		10, {TEXTOID, TEXTOID, TEXTOID, UUIDOID, TEXTOID, JSONBOID, JSONBOID,
			 TIMESTAMPTZOID, TIDOID, TIMESTAMPTZOID}
	},
	[PLAN_RELEASE] = {
	/* $4 token */
	"DELETE FROM ONLY idempotency.processed_events AS p"
	" WHERE p.owner OPERATOR(pg_catalog.=) $1 AND p.scope OPERATOR(pg_catalog.=) $2"
	" AND p.key OPERATOR(pg_catalog.=) $3 AND p.status OPERATOR(pg_catalog.=) 'in_progress'"
	" AND p.token OPERATOR(pg_catalog.=) $4",
		4, {TEXTOID, TEXTOID, TEXTOID, UUIDOID}
	},
	[PLAN_FORGET] = {
	"DELETE FROM ONLY idempotency.processed_events AS p"
	" WHERE p.owner OPERATOR(pg_catalog.=) $1 AND p.scope OPERATOR(pg_catalog.=) $2"
	" AND p.key OPERATOR(pg_catalog.=) $3",
		3, {TEXTOID, TEXTOID, TEXTOID}
	},
	[PLAN_MARK_INSERT] = {
	/* $4 now, $5 expires_at */
	"INSERT INTO idempotency.processed_events (owner, scope, key, status,"
	" attempts, created_at, updated_at, expires_at)"
	" VALUES ($1, $2, $3, 'completed', 1, $4, $4, $5) ON CONFLICT DO NOTHING",
		5, {TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID}
	},
	[PLAN_MARK_REPLACE] = {
	/* $4 now, $5 expires_at; only an expired row */
	"UPDATE ONLY idempotency.processed_events AS p SET status = 'completed',"
	" fingerprint = NULL, result = NULL, error = NULL, token = NULL,"
	" fencing_token = NULL, attempts = 1, created_at = $4, updated_at = $4,"
	" locked_until = NULL, expires_at = $5"
	" WHERE p.owner OPERATOR(pg_catalog.=) $1 AND p.scope OPERATOR(pg_catalog.=) $2"
	" AND p.key OPERATOR(pg_catalog.=) $3 AND p.expires_at OPERATOR(pg_catalog.<=) $4",
		5, {TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID}
	},
	[PLAN_PURGE] = {
	/*
	 * The exception to the parameter rule: $1 now, $2 the names of the
	 * roles the caller is a member of, $3 every row (else only rows of
	 * those roles), $4 batch.  owner::text is the name for both column
	 * types (regrole in 0.1.0).
	 */
	"DELETE FROM ONLY idempotency.processed_events AS p"
	" WHERE p.ctid OPERATOR(pg_catalog.=) ANY (ARRAY("
	"  SELECT v.ctid FROM ONLY idempotency.processed_events AS v"
	"  WHERE v.expires_at OPERATOR(pg_catalog.<=) $1"
	"  AND ($3 OR v.owner::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($2))"
	"  LIMIT $4 FOR UPDATE SKIP LOCKED))"
	" AND p.expires_at OPERATOR(pg_catalog.<=) $1",
		4, {TIMESTAMPTZOID, TEXTARRAYOID, BOOLOID, INT4OID}
	},
};

static const IdemPlanSet event_plans = {
	"processed events", event_plan_defs, event_saved_plans, NUM_PLANS
};

/*
 * A database not yet updated from 0.1.0 stores the owner as regrole: the
 * same statements with $1 of that type (built from event_plan_defs on
 * first use), and the owner passed as its OID.
 */
static IdemPlanDef event_legacy_defs[NUM_PLANS];
static SPIPlanPtr event_legacy_saved_plans[NUM_PLANS];
static bool event_legacy_ready = false;
static const IdemPlanSet event_legacy_plans = {
	"processed events (0.1.0)", event_legacy_defs, event_legacy_saved_plans,
	NUM_PLANS
};
static bool event_legacy = false;

/* The statements for a distributed table; $1 owner, $2 scope, $3 key. */
static const IdemPlanDef event_citus_plan_defs[NUM_CPLANS] = {
	[CPLAN_LOOKUP] = {
	/* updated_at identifies the row version read, for CPLAN_RECLAIM */
	"SELECT status, fingerprint, result, error, fencing_token, attempts,"
	" locked_until, expires_at, updated_at FROM idempotency.processed_events"
	" WHERE owner OPERATOR(pg_catalog.=) $1 AND scope OPERATOR(pg_catalog.=) $2"
	" AND key OPERATOR(pg_catalog.=) $3",
		3, {TEXTOID, TEXTOID, TEXTOID}
	},
	[CPLAN_INSERT_CLAIM] = {
	/* $4 fingerprint, $5 now, $6 locked_until, $7 expires_at, $8 token, $9 fencing */
	"INSERT INTO idempotency.processed_events AS p (owner, scope, key, status,"
	" fingerprint, token, fencing_token, attempts, created_at, updated_at,"
	" locked_until, expires_at) VALUES ($1, $2, $3, 'in_progress', $4, $8, $9,"
	" 1, $5, $5, $6, $7) ON CONFLICT DO NOTHING"
	" RETURNING p.token, p.fencing_token, p.attempts",
		9, {TEXTOID, TEXTOID, TEXTOID, BYTEAOID, TIMESTAMPTZOID,
			TIMESTAMPTZOID, TIMESTAMPTZOID, UUIDOID, INT8OID}
	},
	[CPLAN_RECLAIM] = {
	/*
	 * $4 fingerprint, $5 now, $6 locked_until, $7 expires_at, $8 takeover,
	 * $9 updated_at, $10 fencing_token and $11 status read (the
	 * compare-and-swap: every write of the row sets updated_at, every claim
	 * a new fencing token), $12 the new token, $13 the clock in
	 * microseconds: the fencing token is one more than the row's, and at
	 * least the clock, so that it also grows over a purge and re-insert.
	 */
	"UPDATE idempotency.processed_events AS p SET status = 'in_progress',"
	" fingerprint = CASE WHEN $8 AND $4 IS NULL THEN p.fingerprint ELSE $4 END,"
	" result = NULL, error = NULL, token = $12,"
	" fencing_token = GREATEST(COALESCE(p.fencing_token, 0) OPERATOR(pg_catalog.+) 1, $13),"
	" attempts = CASE WHEN $8 THEN p.attempts OPERATOR(pg_catalog.+) 1 ELSE 1 END,"
	" created_at = CASE WHEN $8 THEN p.created_at ELSE $5 END,"
	" updated_at = $5, locked_until = $6, expires_at = $7"
	" WHERE p.owner OPERATOR(pg_catalog.=) $1 AND p.scope OPERATOR(pg_catalog.=) $2"
	" AND p.key OPERATOR(pg_catalog.=) $3"
	" AND p.updated_at OPERATOR(pg_catalog.=) $9"
	/* not IS NOT DISTINCT FROM: it finds its = through the search_path */
	" AND (p.fencing_token OPERATOR(pg_catalog.=) $10"
	" OR (p.fencing_token IS NULL AND $10 IS NULL))"
	" AND p.status OPERATOR(pg_catalog.=) $11"
	" RETURNING p.token, p.fencing_token, p.attempts",
		13, {TEXTOID, TEXTOID, TEXTOID, BYTEAOID, TIMESTAMPTZOID,
			 TIMESTAMPTZOID, TIMESTAMPTZOID, BOOLOID, TIMESTAMPTZOID, INT8OID,
			 TEXTOID, UUIDOID, INT8OID}
	},
	[CPLAN_FINISH] = {
	/*
	 * $4 token, $5 status, $6 result, $7 error, $8 now, $9 new expires_at,
	 * computed from $10 locked_until and $11 expires_at as read (a claim's
	 * token never comes back with other values).
	 */
	"UPDATE idempotency.processed_events AS p SET status = $5, result = $6,"
	" error = $7, updated_at = $8, locked_until = NULL, expires_at = $9"
	" WHERE p.owner OPERATOR(pg_catalog.=) $1 AND p.scope OPERATOR(pg_catalog.=) $2"
	" AND p.key OPERATOR(pg_catalog.=) $3 AND p.status OPERATOR(pg_catalog.=) 'in_progress'"
	" AND p.token OPERATOR(pg_catalog.=) $4"
	" AND p.locked_until OPERATOR(pg_catalog.=) $10"
	" AND p.expires_at OPERATOR(pg_catalog.=) $11",
		11, {TEXTOID, TEXTOID, TEXTOID, UUIDOID, TEXTOID, JSONBOID, JSONBOID,
			 TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID}
	},
	[CPLAN_PURGE_KEYS] = {
	/* $1 now, $2 every row, $3 the roles whose rows we may purge, $4 batch */
	"SELECT v.key FROM idempotency.processed_events AS v"
	" WHERE v.expires_at OPERATOR(pg_catalog.<=) $1"
	" AND ($2 OR v.owner::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($3)) LIMIT $4",
		4, {TIMESTAMPTZOID, BOOLOID, TEXTARRAYOID, INT4OID}
	},
	[CPLAN_PURGE_DELETE] = {
	/* $1 keys; the conditions of CPLAN_PURGE_KEYS are checked again */
	"DELETE FROM idempotency.processed_events AS p"
	" WHERE p.key OPERATOR(pg_catalog.=) ANY ($1)"
	" AND p.expires_at OPERATOR(pg_catalog.<=) $2"
	" AND ($3 OR p.owner::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($4))",
		4, {TEXTARRAYOID, TIMESTAMPTZOID, BOOLOID, TEXTARRAYOID}
	},
	[CPLAN_MEMBER_OF] = {
	/* the roles $1 is a member of (local catalogs; names match on every node) */
	"SELECT pg_catalog.array_agg(r.rolname::pg_catalog.text) FROM pg_catalog.pg_roles AS r"
	" WHERE pg_catalog.pg_has_role($1, r.oid, 'MEMBER')",
		1, {OIDOID}
	},
};

static const IdemPlanSet event_citus_plans = {
	"processed events (Citus)", event_citus_plan_defs, event_citus_saved_plans,
	NUM_CPLANS
};

/* Called once from _PG_init(). */
void
idem_events_init(void)
{
	RegisterXactCallback(event_xact_callback, NULL);
	RegisterSubXactCallback(event_subxact_callback, NULL);
}

/*
 * Validate key and scope and compute the key's hash.  The hash covers the
 * owner too, so that equal keys of different roles do not share lock tags.
 */
static void
event_key_from_args(EventKey *ek, FunctionCallInfo fcinfo, int keyarg,
					int scopearg, const char *fn)
{
	IdemTextArg keyspec = {
		"key", fn, false, false, EVENT_MAX_KEY_BYTES,
		"Pass the idempotency key, for example the event id or the Idempotency-Key header."
	};
	IdemTextArg scopespec = {
		"scope", fn, false, true, EVENT_MAX_SCOPE_BYTES,
		"Pass '' (the default) for no scope."
	};
	uint64		h;

	ek->key = idem_arg_text(fcinfo, keyarg, &keyspec);
	ek->scope = idem_arg_text(fcinfo, scopearg, &scopespec);
	ek->owner = GetUserId();
	ek->owner_name = cstring_to_text(GetUserNameFromId(ek->owner, false));
	event_table_kind();
	ek->owner_datum = event_legacy ? ObjectIdGetDatum(ek->owner)
		: PointerGetDatum(ek->owner_name);
	h = idem_hash_key(VARDATA_ANY(ek->scope), VARSIZE_ANY_EXHDR(ek->scope),
					  EVENT_HASH_SEED ^ (uint64) ek->owner);
	ek->hash = idem_hash_key(VARDATA_ANY(ek->key), VARSIZE_ANY_EXHDR(ek->key), h);
}

/* SHA-256 of the canonical text of a jsonb object payload. */
static bytea *
event_fingerprint(Jsonb *payload)
{
	StringInfoData buf;
	pg_cryptohash_ctx *ctx;
	bytea	   *digest;

	if (!JB_ROOT_IS_OBJECT(payload))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("payload must be a JSON object"),
				 errdetail("The payload was a JSON %s.",
						   JB_ROOT_IS_SCALAR(payload) ? "scalar" : "array"),
				 errhint("Pass the request body as a jsonb object to idempotency.claim(), for example jsonb_build_object('body', x), or NULL to skip the payload check.")));

	initStringInfo(&buf);
	(void) JsonbToCString(&buf, &payload->root, VARSIZE(payload));

	digest = palloc(VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
	SET_VARSIZE(digest, VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
	ctx = pg_cryptohash_create(PG_SHA256);
	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (uint8 *) buf.data, buf.len) < 0 ||
		pg_cryptohash_final(ctx, (uint8 *) VARDATA(digest),
							PG_SHA256_DIGEST_LENGTH) < 0)
		elog(ERROR, "could not compute the payload fingerprint: %s",
			 pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
	pfree(buf.data);
	return digest;
}

static uint64
event_exec(int which, Datum *values, const char *nulls)
{
	return idem_plan_exec(event_legacy ? &event_legacy_plans : &event_plans,
						  which, values, nulls, 0);
}

/*
 * The type of processed_events.owner, cached for the table event_kind_relid
 * until a relcache invalidation of it (ALTER EXTENSION ... UPDATE changes
 * the column's type).
 */
static Oid	event_kind_relid = InvalidOid;
static bool event_kind_legacy = false;

void
idem_events_relcache_inval(Oid relid)
{
	if (relid == InvalidOid || relid == event_kind_relid)
		event_kind_relid = InvalidOid;
}

/*
 * What processed_events is, for this call: distributed by Citus
 * (event_citus), or still 0.1.0's with a regrole owner (event_legacy).
 */
static void
event_table_kind(void)
{
	Oid			owner;
	Oid			relid = idem_table_lookup("processed_events", false, &owner);

	event_citus = idem_citus_distributed("processed_events");
	if (relid != event_kind_relid)
	{
		AttrNumber	att = get_attnum(relid, "owner");

		event_kind_legacy = (att != InvalidAttrNumber &&
							 get_atttype(relid, att) == REGROLEOID);
		event_kind_relid = relid;
	}
	event_legacy = event_kind_legacy;
	if (event_legacy && !event_legacy_ready)
	{
		int			i;

		memcpy(event_legacy_defs, event_plan_defs, sizeof(event_legacy_defs));
		for (i = 0; i < NUM_PLANS; i++)
			if (i != PLAN_PURGE)
				event_legacy_defs[i].argtypes[0] = REGROLEOID;
		event_legacy_ready = true;
	}
}

static uint64
event_cexec(int which, Datum *values, const char *nulls)
{
	return idem_plan_exec(&event_citus_plans, which, values, nulls, 0);
}

/* The clock in microseconds since 2000: the floor of a Citus fencing token. */
static int64
event_clock_fencing(TimestampTz now)
{
	return Max((int64) now, (int64) 1);
}

/*
 * The status column as 'i', 'c' or 'f'.  The table has no CHECK constraint
 * on it (it would cost every write to evaluate): the functions write only
 * these three values, and nobody else may write the table but its owner.
 * A row the owner wrote by hand with anything else is refused here.
 */
static char
event_status_code(EventKey *ek, text *status)
{
	const char *s = VARDATA_ANY(status);
	int			len = VARSIZE_ANY_EXHDR(status);

	if (len == 11 && memcmp(s, "in_progress", 11) == 0)
		return 'i';
	if (len == 9 && memcmp(s, "completed", 9) == 0)
		return 'c';
	if (len == 6 && memcmp(s, "failed", 6) == 0)
		return 'f';
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("idempotency key \"%s\" has an invalid status \"%s\"",
					text_to_cstring(ek->key), text_to_cstring(status)),
			 errdetail("The status of a record in idempotency.processed_events is one of in_progress, completed or failed; this row was not written by the idempotency functions."),
			 errhint("Delete the row, for example with idempotency.forget(), or correct its status.")));
	return 0;					/* keep the compiler quiet */
}

/*
 * The direct probe: PLAN_LOOKUP without SPI and the executor, a scan of
 * processed_events_pkey with the snapshot the SELECT would take.  The
 * columns it reads, by name; their numbers are looked up once and checked
 * against the table's descriptor on every call.
 */
enum
{
	EP_OWNER, EP_SCOPE, EP_KEY, EP_STATUS, EP_FINGERPRINT, EP_RESULT,
	EP_ERROR, EP_FENCING, EP_ATTEMPTS, EP_LOCKED, EP_EXPIRES, EP_NCOLS
};
static const char *const event_probe_colnames[EP_NCOLS] = {
	"owner", "scope", "key", "status", "fingerprint", "result", "error",
	"fencing_token", "attempts", "locked_until", "expires_at"
};
static AttrNumber event_probe_attnums[EP_NCOLS];

/* Find the columns in desc (their numbers in event_probe_attnums). */
static bool
event_probe_columns(TupleDesc desc)
{
	int			i;
	int			j;

	for (i = 0; i < EP_NCOLS; i++)
	{
		AttrNumber	a = event_probe_attnums[i];
		Form_pg_attribute att;

		if (a > 0 && a <= desc->natts)
		{
			att = TupleDescAttr(desc, a - 1);
			if (!att->attisdropped &&
				strcmp(NameStr(att->attname), event_probe_colnames[i]) == 0)
				continue;
		}
		event_probe_attnums[i] = InvalidAttrNumber;
		for (j = 0; j < desc->natts; j++)
		{
			att = TupleDescAttr(desc, j);
			if (!att->attisdropped &&
				strcmp(NameStr(att->attname), event_probe_colnames[i]) == 0)
			{
				event_probe_attnums[i] = att->attnum;
				break;
			}
		}
		if (event_probe_attnums[i] == InvalidAttrNumber)
			return false;
	}
	return true;
}

/*
 * May the lookup be a direct probe of the primary key, with the same
 * answer as PLAN_LOOKUP run as the table's owner?  Not for a table that
 * Citus manages (its rows may live on other nodes), nor under SERIALIZABLE
 * (the SELECT's predicate locks), nor when the owner is subject to row level
 * security (FORCE ROW LEVEL SECURITY) or the table has inheritance children
 * (the SELECT would read those too), nor when the index is not a primary
 * key on exactly owner, scope and key.  Their order is the index's: 0.2.0
 * creates (key, scope, owner), 0.1.0 created (owner, scope, key), and a
 * database not yet updated is served too.  order[] receives, for each
 * column of the index, which of EP_OWNER, EP_SCOPE and EP_KEY it is.
 */
static bool
event_probe_direct_ok(Relation rel, Relation index, int order[3])
{
	Form_pg_index ix = index->rd_index;
	bool		seen[3] = {false, false, false};
	int			i;
	int			col;

	if (IsolationIsSerializable() ||
		idem_citus_table_kind(RelationGetRelid(rel)) != IDEM_CITUS_NONE ||
		rel->rd_rel->relforcerowsecurity || rel->rd_rel->relhassubclass)
		return false;
	/* (an expression column has indkey 0, which matches no column below) */
	if (ix->indrelid != RelationGetRelid(rel) || !ix->indisprimary ||
		!ix->indisvalid || !ix->indimmediate || ix->indnatts != 3 ||
		RelationGetIndexPredicate(index) != NIL)
		return false;
	if (!event_probe_columns(RelationGetDescr(rel)))
		return false;
	StaticAssertStmt(EP_OWNER == 0 && EP_SCOPE == 1 && EP_KEY == 2,
					 "the key columns come first in event_probe_colnames");
	for (i = 0; i < 3; i++)
	{
		for (col = EP_OWNER; col <= EP_KEY; col++)
			if (ix->indkey.values[i] == event_probe_attnums[col])
				break;
		if (col > EP_KEY || seen[col])
			return false;
		seen[col] = true;
		order[i] = col;
	}
	return true;
}

/*
 * The direct probe; false (nothing read) where it does not apply.  Like the
 * SELECT that SPI would run (read-write, READ COMMITTED or REPEATABLE
 * READ), it advances the command counter, so that this transaction's own
 * earlier writes are visible (SPI has already done so after each of our
 * statements; the caller's may not have), and scans with
 * GetTransactionSnapshot().
 */
static bool
event_probe(EventKey *ek, EventRow *row)
{
	Oid			owner;			/* not needed here */
	Oid			relid = idem_table_lookup("processed_events", false, &owner);
	Oid			indexoid = idem_table_lookup("processed_events_pkey", true, &owner);
	Relation	rel;
	Relation	index;
	Snapshot	snap;
	TupleTableSlot *slot;
	IndexScanDesc scan;
	ScanKeyData keys[3];
	int			order[3];		/* the index's columns: EP_OWNER etc. */
	bool		found;
	int			i;

	if (!OidIsValid(indexoid))
		return false;
	rel = table_open(relid, AccessShareLock);
	/* index_open(), but falling back if it is not an index */
	index = relation_open(indexoid, AccessShareLock);
	if (index->rd_rel->relkind != RELKIND_INDEX ||
		!event_probe_direct_ok(rel, index, order))
	{
		relation_close(index, NoLock);
		table_close(rel, NoLock);
		return false;
	}

	CommandCounterIncrement();
	snap = RegisterSnapshot(GetTransactionSnapshot());
	slot = table_slot_create(rel, NULL);
	scan = index_beginscan(rel, index, snap, 3, 0);
	/* One scan key per index column, in the index's order. */
	for (i = 0; i < 3; i++)
	{
		switch (order[i])
		{
			case EP_OWNER:
				/* the role's name (text), or 0.1.0's regrole (an OID) */
				if (event_legacy)
					ScanKeyInit(&keys[i], i + 1, BTEqualStrategyNumber,
								F_OIDEQ, ObjectIdGetDatum(ek->owner));
				else
					ScanKeyInit(&keys[i], i + 1, BTEqualStrategyNumber,
								F_TEXTEQ, PointerGetDatum(ek->owner_name));
				break;
			case EP_SCOPE:
				ScanKeyInit(&keys[i], i + 1, BTEqualStrategyNumber, F_TEXTEQ,
							PointerGetDatum(ek->scope));
				break;
			default:
				ScanKeyInit(&keys[i], i + 1, BTEqualStrategyNumber, F_TEXTEQ,
							PointerGetDatum(ek->key));
				break;
		}
		keys[i].sk_collation = index->rd_indcollation[i];
	}
	index_rescan(scan, keys, 3, NULL, 0);

	memset(row, 0, sizeof(EventRow));
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	if (found)
	{
		bool		should_free;
		HeapTuple	tup;
		Datum		d;
		bool		isnull;

		slot_getallattrs(slot);
#define EP_VALUE(col, nullp) \
		(*(nullp) = slot->tts_isnull[event_probe_attnums[col] - 1], \
		 slot->tts_values[event_probe_attnums[col] - 1])

		row->found = true;
		row->status = event_status_code(ek,
										DatumGetTextPP(EP_VALUE(EP_STATUS, &isnull)));
		d = EP_VALUE(EP_FINGERPRINT, &isnull);
		row->fingerprint = isnull ? NULL : DatumGetByteaPCopy(d);
		/*
		 * Copied (and detoasted) out of the buffer; not for a claim in
		 * progress, whose stored outcome nobody is shown.
		 */
		d = EP_VALUE(EP_RESULT, &row->result_null);
		row->result_null = row->result_null || row->status == 'i';
		if (!row->result_null)
			row->result = PointerGetDatum(PG_DETOAST_DATUM_COPY(d));
		d = EP_VALUE(EP_ERROR, &row->error_null);
		row->error_null = row->error_null || row->status == 'i';
		if (!row->error_null)
			row->error = PointerGetDatum(PG_DETOAST_DATUM_COPY(d));
		d = EP_VALUE(EP_FENCING, &row->fencing_null);
		row->fencing_token = row->fencing_null ? 0 : DatumGetInt64(d);
		row->attempts = DatumGetInt32(EP_VALUE(EP_ATTEMPTS, &isnull));
		d = EP_VALUE(EP_LOCKED, &row->locked_null);
		row->locked_until = row->locked_null ? 0 : DatumGetTimestampTz(d);
		row->expires_at = DatumGetTimestampTz(EP_VALUE(EP_EXPIRES, &isnull));
#undef EP_VALUE
		/* xmin as the SELECT shows it: the raw xmin of the version read */
		tup = ExecFetchSlotHeapTuple(slot, false, &should_free);
		row->xmin = HeapTupleHeaderGetRawXmin(tup->t_data);
		if (should_free)
			heap_freetuple(tup);
	}

	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snap);
	index_close(index, NoLock);
	table_close(rel, NoLock);
	return true;
}

/*
 * Read the row of ek (fresh snapshot) into row, copied into the memory
 * context current at the call (SPI's statements leave SPI's own current:
 * switch back).  The statement's result is freed at once: a claim waiting
 * on a Citus cluster looks every 100 ms, for as long as its wait.
 */
static void
event_lookup(EventKey *ek, EventRow *row)
{
	MemoryContext cxt = CurrentMemoryContext;
	Datum		values[3];
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;

	if (event_probe(ek, row))
		return;

	values[0] = ek->owner_datum;
	values[1] = PointerGetDatum(ek->scope);
	values[2] = PointerGetDatum(ek->key);
	if (event_citus)
		(void) event_cexec(CPLAN_LOOKUP, values, NULL);
	else
		(void) event_exec(PLAN_LOOKUP, values, NULL);
	MemoryContextSwitchTo(cxt);

	memset(row, 0, sizeof(EventRow));
	if (SPI_processed == 0)
	{
		SPI_freetuptable(SPI_tuptable);
		return;
	}
	row->found = true;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;

	row->status = event_status_code(ek,
									DatumGetTextPP(SPI_getbinval(tup, desc, 1, &isnull)));
	d = SPI_getbinval(tup, desc, 2, &isnull);
	row->fingerprint = isnull ? NULL : DatumGetByteaPCopy(d);
	/* as event_probe(): no stored outcome of a claim in progress */
	d = SPI_getbinval(tup, desc, 3, &row->result_null);
	row->result_null = row->result_null || row->status == 'i';
	if (!row->result_null)
		row->result = PointerGetDatum(PG_DETOAST_DATUM_COPY(d));
	d = SPI_getbinval(tup, desc, 4, &row->error_null);
	row->error_null = row->error_null || row->status == 'i';
	if (!row->error_null)
		row->error = PointerGetDatum(PG_DETOAST_DATUM_COPY(d));
	d = SPI_getbinval(tup, desc, 5, &row->fencing_null);
	row->fencing_token = row->fencing_null ? 0 : DatumGetInt64(d);
	row->attempts = DatumGetInt32(SPI_getbinval(tup, desc, 6, &isnull));
	d = SPI_getbinval(tup, desc, 7, &row->locked_null);
	row->locked_until = row->locked_null ? 0 : DatumGetTimestampTz(d);
	row->expires_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 8, &isnull));
	if (event_citus)
		row->updated_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 9, &isnull));
	else
		row->xmin = DatumGetTransactionId(SPI_getbinval(tup, desc, 9, &isnull));
	SPI_freetuptable(SPI_tuptable);
}

static bool
event_fingerprint_mismatch(bytea *stored, bytea *given)
{
	if (stored == NULL || given == NULL)
		return false;
	return VARSIZE_ANY_EXHDR(stored) != VARSIZE_ANY_EXHDR(given) ||
		memcmp(VARDATA_ANY(stored), VARDATA_ANY(given),
			   VARSIZE_ANY_EXHDR(given)) != 0;
}

static bool
event_claim_matches(XactClaim *c, EventKey *ek)
{
	return c->owner == ek->owner &&
		strlen(c->key) == VARSIZE_ANY_EXHDR(ek->key) &&
		memcmp(c->key, VARDATA_ANY(ek->key), VARSIZE_ANY_EXHDR(ek->key)) == 0 &&
		strlen(c->scope) == VARSIZE_ANY_EXHDR(ek->scope) &&
		memcmp(c->scope, VARDATA_ANY(ek->scope), VARSIZE_ANY_EXHDR(ek->scope)) == 0;
}

/* The newest claim of ek by this transaction (not yet done, if only_open). */
static XactClaim *
event_find_claim(EventKey *ek, bool only_open)
{
	XactClaim  *c;

	for (c = xact_claims; c != NULL; c = c->next)
		if (event_claim_matches(c, ek) &&
			(!only_open || c->done_subid == InvalidSubTransactionId))
			return c;
	return NULL;
}

static void
event_remember_claim(EventKey *ek, pg_uuid_t *token, TimestampTz locked_until,
					 TimestampTz expires_at, ItemPointer tid,
					 bool require_complete)
{
	XactClaim  *c = MemoryContextAllocZero(TopTransactionContext,
										   sizeof(XactClaim));

	c->owner = ek->owner;
	c->scope = MemoryContextStrdup(TopTransactionContext,
								   text_to_cstring(ek->scope));
	c->key = MemoryContextStrdup(TopTransactionContext,
								 text_to_cstring(ek->key));
	c->token = *token;
	c->locked_until = locked_until;
	c->expires_at = expires_at;
	if (tid != NULL)
	{
		ItemPointerCopy(tid, &c->tid);
		c->has_tid = true;
	}
	c->require_complete = require_complete;
	c->subid = GetCurrentSubTransactionId();
	c->done_subid = InvalidSubTransactionId;
	c->next = xact_claims;
	xact_claims = c;
}

/* Mark this transaction's open claims of ek as done. */
static void
event_claims_done(EventKey *ek)
{
	XactClaim  *c;

	for (c = xact_claims; c != NULL; c = c->next)
		if (c->done_subid == InvalidSubTransactionId && event_claim_matches(c, ek))
			c->done_subid = GetCurrentSubTransactionId();
}

static void
event_xact_callback(XactEvent event, void *arg)
{
	XactClaim  *c;

	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			for (c = xact_claims; c != NULL; c = c->next)
			{
				if (c->require_complete && c->done_subid == InvalidSubTransactionId)
				{
					char	   *key = pstrdup(c->key);
					char	   *scope = pstrdup(c->scope);

					xact_claims = NULL;
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_TRANSACTION_TERMINATION),
							 errmsg("cannot commit: idempotency key \"%s\" (scope \"%s\") was claimed with require_complete but neither completed nor failed",
									key, scope),
							 errdetail("The transaction has been rolled back, so the claim is undone and the key is free again."),
							 errhint("Call idempotency.complete() or idempotency.fail() for the key before COMMIT.")));
				}
			}
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* The memory goes with TopTransactionContext. */
			xact_claims = NULL;
			break;
		default:
			break;
	}
}

static void
event_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	XactClaim **prev;
	XactClaim  *c;

	switch (event)
	{
		case SUBXACT_EVENT_ABORT_SUB:
			prev = &xact_claims;
			while ((c = *prev) != NULL)
			{
				if (c->subid == mySubid)
				{
					/* Its row was rolled back with it. */
					*prev = c->next;
					continue;
				}
				if (c->done_subid == mySubid)
					c->done_subid = InvalidSubTransactionId;
				prev = &c->next;
			}
			break;
		case SUBXACT_EVENT_COMMIT_SUB:
			for (c = xact_claims; c != NULL; c = c->next)
			{
				if (c->subid == mySubid)
					c->subid = parentSubid;
				if (c->done_subid == mySubid)
					c->done_subid = parentSubid;
			}
			break;
		default:
			break;
	}
}

/*
 * mark_processed(key, scope, ttl): true when the key was new (or its record
 * had expired and is replaced), false for a duplicate.
 */
Datum
idempotency_mark_processed(PG_FUNCTION_ARGS)
{
	IdemSpi		spi;
	EventKey	ek;
	int64		ttl;
	TimestampTz now;
	Datum		values[5];
	bool		inserted = false;
	int			attempt;

	idem_stats_begin(IDEM_OP_MARK_PROCESSED);
	idempotency_check_version();
	idem_check_writable("mark_processed");
	idem_forbid_parallel("idempotency.mark_processed()");
	event_key_from_args(&ek, fcinfo, 0, 1, "mark_processed");
	ttl = idem_arg_interval(fcinfo, 2, "ttl", "mark_processed", false);

	now = GetCurrentTimestamp();
	values[0] = ek.owner_datum;
	values[1] = PointerGetDatum(ek.scope);
	values[2] = PointerGetDatum(ek.key);
	values[3] = TimestampTzGetDatum(now);
	values[4] = TimestampTzGetDatum(now + ttl);

	idem_spi_begin(&spi, "processed_events", true);
	/*
	 * INSERT ... ON CONFLICT DO NOTHING waits for a concurrent inserter's
	 * transaction, so a rolled-back first attempt leaves the key free.  On a
	 * conflict, replace the row only if it has expired; an UPDATE that finds
	 * nothing (a concurrent purge deleted the row) means we try again.
	 */
	for (attempt = 0; attempt < 3; attempt++)
	{
		if (event_mark_insert(&spi, values) > 0 ||
			event_exec(PLAN_MARK_REPLACE, values, NULL) > 0)
		{
			inserted = true;
			break;
		}
		/* Not expired (a duplicate), or gone: look which. */
		if ((event_citus ? event_cexec(CPLAN_LOOKUP, values, NULL)
			 : event_exec(PLAN_LOOKUP, values, NULL)) > 0)
			break;
	}
	idem_spi_end(&spi);

	idem_stats_end(inserted ? IDEM_OC_NEW : IDEM_OC_DUPLICATE);
	PG_RETURN_BOOL(inserted);
}

/*
 * The claim lock of a key.  It belongs to the current (sub)transaction's
 * resource owner, whether idem_lock_acquire() got it at once or after
 * waiting in its internal subtransaction (whose locks go to the parent's
 * CurTransactionResourceOwner), so that event_unlock() finds it.
 */
static bool
event_lock(const LOCKTAG *tag, int64 timeout_ms)
{
	ResourceOwner save = CurrentResourceOwner;
	bool		got;

	/* On an error, transaction abort resets CurrentResourceOwner. */
	CurrentResourceOwner = CurTransactionResourceOwner;
	got = idem_lock_acquire(tag, ExclusiveLock, false, timeout_ms);
	CurrentResourceOwner = save;
	return got;
}

/* event_lock() if the lock is free now, without waiting; false if not. */
static bool
event_lock_now(const LOCKTAG *tag)
{
	ResourceOwner save = CurrentResourceOwner;
	bool		got;

	CurrentResourceOwner = CurTransactionResourceOwner;
	got = (LockAcquire(tag, ExclusiveLock, false, true) != LOCKACQUIRE_NOT_AVAIL);
	CurrentResourceOwner = save;
	return got;
}

static void
event_unlock(const LOCKTAG *tag)
{
	ResourceOwner save = CurrentResourceOwner;

	CurrentResourceOwner = CurTransactionResourceOwner;
	LockRelease(tag, ExclusiveLock, false);
	CurrentResourceOwner = save;
}

/*
 * Build claim()'s result row (in the current memory context).  The row type
 * is built once per call site (fn_extra), from the executor's descriptor
 * when it passes one (idem_result_desc()).  (One kept per backend, in
 * CacheMemoryContext, was withdrawn when the Citus benchmark's claim +
 * complete failed with it; the cause turned out to be two pgbench
 * processes drawing the same "new" keys, not the row type.  Since claim()
 * returns a composite type, the executor's descriptor costs a copy from
 * the type cache, and a kept one would save little.)
 */
static Datum
claim_form_result(FunctionCallInfo fcinfo, const ClaimResult *r)
{
	static const Oid claim_types[] = {
		TEXTOID, JSONBOID, JSONBOID, UUIDOID, INT8OID, INT4OID, TIMESTAMPTZOID
	};
	TupleDesc	tupdesc = (TupleDesc) fcinfo->flinfo->fn_extra;
	Datum		values[7];
	bool		nulls[7];

	if (tupdesc == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);

		tupdesc = idem_result_desc(fcinfo);
		idem_check_result_row(tupdesc, claim_types, lengthof(claim_types),
							  "claim");
		fcinfo->flinfo->fn_extra = tupdesc;
		MemoryContextSwitchTo(old);
	}

	values[0] = CStringGetTextDatum(r->status);
	nulls[0] = false;
	values[1] = r->result;
	nulls[1] = r->result_null;
	values[2] = r->error;
	nulls[2] = r->error_null;
	values[3] = UUIDPGetDatum(&r->token);
	nulls[3] = !r->has_token;
	values[4] = Int64GetDatum(r->fencing);
	nulls[4] = r->fencing_null;
	values[5] = Int32GetDatum(r->attempts);
	nulls[5] = r->attempts_null;
	values[6] = TimestampTzGetDatum(r->expires);
	nulls[6] = r->expires_null;

	return HeapTupleGetDatum(idem_form_result_row(tupdesc, values, nulls,
												  lengthof(values)));
}

/* The result for an outcome read from the row: a replay or a refusal. */
static void
claim_result_from_row(ClaimState *st, const char *status, IdemStatsOutcome oc)
{
	EventRow   *row = &st->row;
	ClaimResult *r = &st->res;
	bool		is_live = (row->status == 'i');
	/* A mismatch is another request: it gets no stored outcome. */
	bool		hide = is_live || oc == IDEM_OC_MISMATCH;

	memset(r, 0, sizeof(ClaimResult));
	r->status = status;
	r->result = row->result;
	r->result_null = row->result_null || hide;
	r->error = row->error;
	r->error_null = row->error_null || hide;
	r->fencing = row->fencing_token;
	r->fencing_null = row->fencing_null;
	r->attempts = row->attempts;
	r->expires = is_live ? row->locked_until : row->expires_at;
	r->expires_null = is_live ? row->locked_null : false;
	idem_stats_note(oc);
}

/* claim()'s arguments, checked, into *st. */
static void
claim_read_args(FunctionCallInfo fcinfo, ClaimState *st)
{
	memset(st, 0, sizeof(ClaimState));
	st->fcinfo = fcinfo;
	event_key_from_args(&st->ek, fcinfo, 0, 2, "claim");
	if (!PG_ARGISNULL(1))
		st->fingerprint = event_fingerprint(PG_GETARG_JSONB_P(1));
	st->lease = idem_arg_interval(fcinfo, 3, "lease", "claim", false);
	st->ttl = idem_arg_interval(fcinfo, 4, "ttl", "claim", false);
	st->wait = idem_arg_interval(fcinfo, 5, "wait", "claim", true);
	if (st->wait > 0 && IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("claim() cannot wait in a %s transaction",
						IsolationIsSerializable() ? "SERIALIZABLE" : "REPEATABLE READ"),
				 errdetail("The transaction's snapshot would never show the other claim being completed, failed or forgotten."),
				 errhint("Call claim() with a wait in a READ COMMITTED transaction, or pass wait => '0'.")));
	if (PG_ARGISNULL(6))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("require_complete must not be null"),
				 errhint("Pass true or false as require_complete to idempotency.claim(), or omit it for false.")));
	st->require_complete = PG_GETARG_BOOL(6);
	st->deadline = GetCurrentTimestamp() + st->wait;
	idem_locktag(&st->tag, IDEM_LOCKSPACE_EVENT, st->ek.hash);
}

/*
 * Read the row without any lock and decide: a finished record is a replay,
 * a different payload a mismatch, a live lease 'in_progress' (or a wait,
 * then CLAIM_AGAIN).  Otherwise the key looks free (no row, an expired
 * record, a lease that ran out: *takeover) and the caller writes.
 */
static ClaimStep
claim_examine(ClaimState *st, bool *takeover)
{
	TimestampTz now = GetCurrentTimestamp();
	EventRow   *row = &st->row;

	event_lookup(&st->ek, row);
	*takeover = false;
	if (!row->found || row->expires_at <= now)
		return CLAIM_WRITE;
	if (event_fingerprint_mismatch(row->fingerprint, st->fingerprint))
	{
		claim_result_from_row(st, "mismatch", IDEM_OC_MISMATCH);
		return CLAIM_DONE;
	}
	if (row->status != 'i')
	{
		if (row->status == 'c')
			claim_result_from_row(st, "completed", IDEM_OC_COMPLETED);
		else
			claim_result_from_row(st, "failed", IDEM_OC_FAILED);
		return CLAIM_DONE;
	}
	if (!row->locked_null && row->locked_until > now)
	{
		/* A live lease: give up, or wait for it to end or change. */
		TimestampTz until = Min(st->deadline, row->locked_until);

		/* A finish on another node does not wake us: look again soon. */
		if (event_citus)
			until = Min(until, TimestampTzPlusMilliseconds(now, IDEM_CITUS_POLL_MS));
		/*
		 * Nor when the claim is this transaction's own (it holds the
		 * key's claim lock): nobody else can end it, and no wake-up would
		 * come before the deadline.
		 */
		if (now >= st->deadline ||
			LockHeldByMe(&st->tag, ExclusiveLock) ||
			!idem_keywait_sleep(&st->kw, until))
		{
			claim_result_from_row(st, "in_progress", IDEM_OC_IN_PROGRESS);
			return CLAIM_DONE;
		}
		return CLAIM_AGAIN;
	}
	*takeover = true;
	return CLAIM_WRITE;
}

/*
 * processed_events' columns as the statements below see them, for the
 * changes src/rows.c can make without the executor (see there).
 */
enum
{
	ECOL_OWNER,
	ECOL_SCOPE,
	ECOL_KEY,
	ECOL_STATUS,
	ECOL_FINGERPRINT,
	ECOL_RESULT,
	ECOL_ERROR,
	ECOL_TOKEN,
	ECOL_FENCING_TOKEN,
	ECOL_ATTEMPTS,
	ECOL_CREATED_AT,
	ECOL_UPDATED_AT,
	ECOL_LOCKED_UNTIL,
	ECOL_EXPIRES_AT,
	ECOL_COUNT
};

static const IdemRowCol event_cols[ECOL_COUNT] = {
	[ECOL_OWNER] = {"owner", TEXTOID, C_COLLATION_OID},
	[ECOL_SCOPE] = {"scope", TEXTOID, DEFAULT_COLLATION_OID},
	[ECOL_KEY] = {"key", TEXTOID, DEFAULT_COLLATION_OID},
	[ECOL_STATUS] = {"status", TEXTOID, DEFAULT_COLLATION_OID},
	[ECOL_FINGERPRINT] = {"fingerprint", BYTEAOID, InvalidOid},
	[ECOL_RESULT] = {"result", JSONBOID, InvalidOid},
	[ECOL_ERROR] = {"error", JSONBOID, InvalidOid},
	[ECOL_TOKEN] = {"token", UUIDOID, InvalidOid},
	[ECOL_FENCING_TOKEN] = {"fencing_token", INT8OID, InvalidOid},
	[ECOL_ATTEMPTS] = {"attempts", INT4OID, InvalidOid},
	[ECOL_CREATED_AT] = {"created_at", TIMESTAMPTZOID, InvalidOid},
	[ECOL_UPDATED_AT] = {"updated_at", TIMESTAMPTZOID, InvalidOid},
	[ECOL_LOCKED_UNTIL] = {"locked_until", TIMESTAMPTZOID, InvalidOid},
	[ECOL_EXPIRES_AT] = {"expires_at", TIMESTAMPTZOID, InvalidOid},
};

#define ECOL_BIT(c) ((uint32) 1 << (c))

/* PLAN_INSERT_CLAIM leaves result and error out; mark_processed more. */
static IdemRowShape event_insert_shape = {event_cols, ECOL_COUNT,
	ECOL_BIT(ECOL_RESULT) | ECOL_BIT(ECOL_ERROR)};
static IdemRowShape event_mark_shape = {event_cols, ECOL_COUNT,
	ECOL_BIT(ECOL_FINGERPRINT) | ECOL_BIT(ECOL_RESULT) | ECOL_BIT(ECOL_ERROR) |
	ECOL_BIT(ECOL_TOKEN) | ECOL_BIT(ECOL_FENCING_TOKEN) |
	ECOL_BIT(ECOL_LOCKED_UNTIL)};
static IdemRowShape event_finish_shape = {event_cols, ECOL_COUNT};

/* Set column c of an insert's row (values/isnull by column). */
#define ECOL_SET(c, v) (values[(c)] = (v), isnull[(c)] = false)

/* PLAN_INSERT_CLAIM's parameters, and the fencing token it drew. */
typedef struct InsertParams
{
	Datum	   *values;
	const char *nulls;
	int64		fencing;
} InsertParams;

/* PLAN_INSERT_CLAIM's VALUES, from its parameters (every column NULL before). */
static void
event_insert_fill(void *arg, Datum *values, bool *isnull)
{
	InsertParams *ip = (InsertParams *) arg;
	Oid			owner;			/* not needed here */

	ip->fencing = nextval_internal(idem_table_lookup("processed_events_fencing_seq",
													 false, &owner), true);
	ECOL_SET(ECOL_OWNER, ip->values[0]);
	ECOL_SET(ECOL_SCOPE, ip->values[1]);
	ECOL_SET(ECOL_KEY, ip->values[2]);
	ECOL_SET(ECOL_STATUS, CStringGetTextDatum("in_progress"));
	if (ip->nulls[3] != 'n')
		ECOL_SET(ECOL_FINGERPRINT, ip->values[3]);
	ECOL_SET(ECOL_TOKEN, ip->values[7]);
	ECOL_SET(ECOL_FENCING_TOKEN, Int64GetDatum(ip->fencing));
	ECOL_SET(ECOL_ATTEMPTS, Int32GetDatum(1));
	ECOL_SET(ECOL_CREATED_AT, ip->values[4]);
	ECOL_SET(ECOL_UPDATED_AT, ip->values[4]);
	ECOL_SET(ECOL_LOCKED_UNTIL, ip->values[5]);
	ECOL_SET(ECOL_EXPIRES_AT, ip->values[6]);
}

/* PLAN_MARK_INSERT's VALUES, from its parameters (arg). */
static void
event_mark_fill(void *arg, Datum *values, bool *isnull)
{
	Datum	   *p = (Datum *) arg;

	ECOL_SET(ECOL_OWNER, p[0]);
	ECOL_SET(ECOL_SCOPE, p[1]);
	ECOL_SET(ECOL_KEY, p[2]);
	ECOL_SET(ECOL_STATUS, CStringGetTextDatum("completed"));
	ECOL_SET(ECOL_ATTEMPTS, Int32GetDatum(1));
	ECOL_SET(ECOL_CREATED_AT, p[3]);
	ECOL_SET(ECOL_UPDATED_AT, p[3]);
	ECOL_SET(ECOL_EXPIRES_AT, p[4]);
}

/* PLAN_MARK_INSERT: the number of rows it inserted. */
static uint64
event_mark_insert(IdemSpi *spi, Datum *values)
{
	ItemPointerData tid;
	int			n;

	n = idem_row_count(idem_row_insert(spi, &event_mark_shape,
									   event_mark_fill, values, false, &tid));
	return n >= 0 ? (uint64) n : event_exec(PLAN_MARK_INSERT, values, NULL);
}

/*
 * The key looks free: take the claim lock (an uncommitted claim of the key
 * holds it until its transaction ends), then insert, replace the expired
 * record or take the lease over, with a compare-and-swap on the row version
 * read.  CLAIM_AGAIN when the row changed meanwhile.
 */
static ClaimStep
claim_write(ClaimState *st, bool takeover, MemoryContext callcxt)
{
	ClaimResult *r = &st->res;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz locked_until;
	Datum		values[13];
	char		nulls[13];
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	pg_uuid_t	newtok;
	ItemPointer tid;
	ItemPointerData newtid;
	InsertParams ip;
	IdemRowResult direct;
	bool		fresh;
	uint64		n;

	/*
	 * Free at once: no claim of the key was under way when we looked, so
	 * the look's miss is fresh (a conflict is a race with mark_processed
	 * or a claim that ended just now), and the insert may skip ON
	 * CONFLICT's pre-check.  Otherwise, wait.
	 */
	fresh = !st->row.found && event_lock_now(&st->tag);
	if (!fresh && !event_lock(&st->tag, idem_timeout_ms(st->deadline - now)))
	{
		/* An uncommitted claim holds the key: nothing to show of it. */
		memset(r, 0, sizeof(ClaimResult));
		r->status = "in_progress";
		r->result_null = r->error_null = r->fencing_null = true;
		r->attempts_null = r->expires_null = true;
		idem_stats_note(IDEM_OC_IN_PROGRESS);
		return CLAIM_DONE;
	}
	now = GetCurrentTimestamp();
	locked_until = now + st->lease;

	memset(nulls, ' ', sizeof(nulls));
	values[0] = st->ek.owner_datum;
	values[1] = PointerGetDatum(st->ek.scope);
	values[2] = PointerGetDatum(st->ek.key);
	values[3] = PointerGetDatum(st->fingerprint);
	nulls[3] = st->fingerprint ? ' ' : 'n';
	values[4] = TimestampTzGetDatum(now);
	values[5] = TimestampTzGetDatum(locked_until);
	values[6] = TimestampTzGetDatum(locked_until + st->ttl);
	values[7] = BoolGetDatum(takeover);
	values[8] = TransactionIdGetDatum(st->row.xmin);

	direct = IDEM_ROW_FALLBACK;
	if (!event_citus && !st->row.found)
	{
		idem_random_uuid(&newtok);
		values[7] = UUIDPGetDatum(&newtok);
		ip.values = values;
		ip.nulls = nulls;
		direct = idem_row_insert(st->spi, &event_insert_shape,
								 event_insert_fill, &ip, fresh, &newtid);
		n = (direct == IDEM_ROW_FALLBACK)
			? event_exec(PLAN_INSERT_CLAIM, values, nulls)
			: (uint64) idem_row_count(direct);
	}
	else if (!event_citus)
	{
		idem_random_uuid(&newtok);
		values[9] = UUIDPGetDatum(&newtok);
		n = event_exec(PLAN_RECLAIM, values, nulls);
	}
	else if (!st->row.found)
	{
		idem_random_uuid(&newtok);
		values[7] = UUIDPGetDatum(&newtok);
		values[8] = Int64GetDatum(event_clock_fencing(now));
		n = event_cexec(CPLAN_INSERT_CLAIM, values, nulls);
	}
	else
	{
		idem_random_uuid(&newtok);
		values[8] = TimestampTzGetDatum(st->row.updated_at);
		values[9] = Int64GetDatum(st->row.fencing_token);
		nulls[9] = st->row.fencing_null ? 'n' : ' ';
		values[10] = CStringGetTextDatum(st->row.status == 'i' ? "in_progress" :
										 st->row.status == 'c' ? "completed" : "failed");
		values[11] = UUIDPGetDatum(&newtok);
		values[12] = Int64GetDatum(event_clock_fencing(now));
		n = event_cexec(CPLAN_RECLAIM, values, nulls);
	}
	if (n == 0)
	{
		/*
		 * The row changed since we read it (the claim we waited for
		 * committed, mark_processed inserted it, another claim took it over,
		 * purge deleted it): look again.
		 */
		if (direct == IDEM_ROW_FALLBACK)
			SPI_freetuptable(SPI_tuptable);
		event_unlock(&st->tag);
		return CLAIM_AGAIN;
	}

	MemoryContextSwitchTo(callcxt);
	memset(r, 0, sizeof(ClaimResult));
	r->status = "claimed";
	r->result_null = r->error_null = true;
	r->has_token = true;
	r->expires = locked_until;
	if (direct == IDEM_ROW_DONE)
	{
		/* what PLAN_INSERT_CLAIM's RETURNING would say */
		memcpy(&r->token, &newtok, sizeof(pg_uuid_t));
		r->fencing = ip.fencing;
		r->attempts = 1;
		tid = &newtid;
	}
	else
	{
		tup = SPI_tuptable->vals[0];
		desc = SPI_tuptable->tupdesc;
		memcpy(&r->token, DatumGetUUIDP(SPI_getbinval(tup, desc, 1, &isnull)),
			   sizeof(pg_uuid_t));
		r->fencing = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		r->attempts = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		tid = event_citus ? NULL
			: (ItemPointer) DatumGetPointer(SPI_getbinval(tup, desc, 4, &isnull));
	}
	event_remember_claim(&st->ek, &r->token, locked_until,
						 locked_until + st->ttl, tid, st->require_complete);
	idem_stats_note(takeover ? IDEM_OC_TAKEOVER : IDEM_OC_CLAIMED);
	/* Keep the EVENT lock until the end of the transaction. */
	return CLAIM_DONE;
}

/*
 * claim(key, payload, scope, lease, ttl, wait, require_complete)
 */
Datum
idempotency_claim(PG_FUNCTION_ARGS)
{
	ClaimState	st;
	IdemSpi		spi;
	ClaimStep	step;
	MemoryContext callcxt = CurrentMemoryContext;
	MemoryContext roundcxt;

	idem_stats_begin(IDEM_OP_CLAIM);
	idempotency_check_version();
	idem_check_writable("claim");
	idem_forbid_parallel("idempotency.claim()");
	claim_read_args(fcinfo, &st);

	if (st.wait > 0)
		idem_keywait_begin(&st.kw, IDEM_LOCKSPACE_EVENT_WAIT, st.ek.hash);
	/*
	 * What a round reads lives in a context of its own, emptied before the
	 * next round (a wait on a Citus cluster looks every 100 ms, for as long
	 * as the wait); the last round's stays until the call's context goes.
	 * A claim is copied into the call's context.
	 */
	roundcxt = AllocSetContextCreate(callcxt, "idempotency claim round",
									 ALLOCSET_SMALL_SIZES);
	idem_spi_begin(&spi, "processed_events", true);
	st.spi = &spi;
	do
	{
		bool		takeover;

		MemoryContextReset(roundcxt);
		MemoryContextSwitchTo(roundcxt);
		step = claim_examine(&st, &takeover);
		if (step == CLAIM_WRITE)
			step = claim_write(&st, takeover, callcxt);
	} while (step == CLAIM_AGAIN);
	idem_spi_end(&spi);
	idem_keywait_end(&st.kw);

	MemoryContextSwitchTo(callcxt);
	idem_stats_end(IDEM_OC_NONE);
	PG_RETURN_DATUM(claim_form_result(fcinfo, &st.res));
}

/*
 * The expiry of a finished record whose in_progress row had locked_until
 * and expires_at, as PLAN_FINISH computes it: within the lease the row's
 * (lease end + ttl), after it now + ttl.
 */
static TimestampTz
event_finish_expiry(TimestampTz now, TimestampTz locked_until,
					TimestampTz expires_at)
{
	return locked_until > now ? expires_at : now + (expires_at - locked_until);
}

/* PLAN_FINISH_TID's parameters, as event_exec() takes them. */
typedef struct FinishParams
{
	Datum	   *values;
	const char *nulls;
} FinishParams;

/*
 * PLAN_FINISH_TID without the executor where src/rows.c can (see there):
 * WHERE token = $4 AND status = 'in_progress'; SET status = $5,
 * result = $6, error = $7, updated_at = $8, locked_until = NULL,
 * expires_at = $10.
 */
static IdemRowEditResult
event_finish_edit(void *arg, const AttrNumber *att, Datum *values,
				  bool *isnull)
{
	FinishParams *fp = (FinishParams *) arg;
	text	   *status;

#define ECOL(c) (att[(c)] - 1)
#define ECOL_PARAM(c, i) (values[ECOL(c)] = fp->values[(i)], \
						  isnull[ECOL(c)] = (fp->nulls[(i)] == 'n'))
	if (isnull[ECOL(ECOL_TOKEN)] || isnull[ECOL(ECOL_STATUS)] ||
		memcmp(DatumGetUUIDP(values[ECOL(ECOL_TOKEN)]),
			   DatumGetUUIDP(fp->values[3]), UUID_LEN) != 0)
		return IDEM_EDIT_SKIP;
	status = DatumGetTextPP(values[ECOL(ECOL_STATUS)]);
	if (VARSIZE_ANY_EXHDR(status) != strlen("in_progress") ||
		memcmp(VARDATA_ANY(status), "in_progress", strlen("in_progress")) != 0)
		return IDEM_EDIT_SKIP;
	ECOL_PARAM(ECOL_STATUS, 4);
	ECOL_PARAM(ECOL_RESULT, 5);
	ECOL_PARAM(ECOL_ERROR, 6);
	ECOL_PARAM(ECOL_UPDATED_AT, 7);
	values[ECOL(ECOL_LOCKED_UNTIL)] = (Datum) 0;
	isnull[ECOL(ECOL_LOCKED_UNTIL)] = true;
	ECOL_PARAM(ECOL_EXPIRES_AT, 9);
#undef ECOL_PARAM
#undef ECOL
	return IDEM_EDIT_CHANGE;
}

/* PLAN_FINISH_TID: the number of rows it changed. */
static uint64
event_finish_tid(IdemSpi *spi, Datum *values, const char *nulls)
{
	FinishParams fp = {values, nulls};
	IdemRowTarget target = {(ItemPointer) DatumGetPointer(values[8])};
	int			n;

	n = idem_row_count(idem_row_update(spi, &event_finish_shape, &target,
									   event_finish_edit, &fp));
	return n >= 0 ? (uint64) n : event_exec(PLAN_FINISH_TID, values, nulls);
}

/*
 * complete() and fail(): finish the claim of ek.  status 'c' or 'f' stores
 * value as result or error; retryable fail deletes the row instead.
 */
static void
event_finish_claim(FunctionCallInfo fcinfo, EventKey *ek, Datum token,
			 bool token_null, char status, Datum value, bool value_null,
			 bool retryable)
{
	uint64		changed;
	IdemSpi		spi;
	const char *fn = (status == 'c') ? "complete" : "fail";
	XactClaim  *mine = NULL;
	pg_uuid_t	tok;
	Datum		values[10];
	char		nulls[10];
	EventRow	row;

	if (token_null)
	{
		mine = event_find_claim(ek, true);
		if (mine == NULL)
		{
			if (event_find_claim(ek, false) != NULL)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("idempotency key \"%s\" was already completed or failed in this transaction",
								text_to_cstring(ek->key)),
						 errhint("Call idempotency.%s() once per claim.", fn)));
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a token is required to %s idempotency key \"%s\"",
							fn, text_to_cstring(ek->key)),
					 errdetail("The key was not claimed by the current transaction; only such a claim may be finished without its token."),
					 errhint("Pass the token that idempotency.claim() returned as token to idempotency.%s().", fn)));
		}
		tok = mine->token;
	}
	else
		memcpy(&tok, DatumGetUUIDP(token), sizeof(pg_uuid_t));

	memset(nulls, ' ', sizeof(nulls));
	values[0] = ek->owner_datum;
	values[1] = PointerGetDatum(ek->scope);
	values[2] = PointerGetDatum(ek->key);
	values[3] = UUIDPGetDatum(&tok);

	idem_spi_begin(&spi, "processed_events", true);
	if (status == 'f' && retryable)
		changed = event_exec(PLAN_RELEASE, values, nulls);
	else
	{
		values[4] = CStringGetTextDatum(status == 'c' ? "completed" : "failed");
		values[5] = value;
		nulls[5] = (status == 'c' && !value_null) ? ' ' : 'n';
		values[6] = value;
		nulls[6] = (status == 'f' && !value_null) ? ' ' : 'n';
		values[7] = TimestampTzGetDatum(GetCurrentTimestamp());
		if (!event_citus)
		{
			/*
			 * A claim of this transaction (found by key, or by the token
			 * given) is finished through the row version it wrote; not
			 * under SERIALIZABLE, whose predicate locks we leave as the
			 * search by key takes them.
			 */
			XactClaim  *c = mine;

			if (c == NULL)
			{
				c = event_find_claim(ek, true);
				if (c != NULL && memcmp(&c->token, &tok, sizeof(pg_uuid_t)) != 0)
					c = NULL;
			}
			changed = 0;
			if (c != NULL && c->has_tid && !IsolationIsSerializable())
			{
				values[8] = PointerGetDatum(&c->tid);
				values[9] = TimestampTzGetDatum(event_finish_expiry(DatumGetTimestampTz(values[7]),
																	c->locked_until,
																	c->expires_at));
				changed = event_finish_tid(&spi, values, nulls);
			}
			if (changed == 0)
				changed = event_exec(PLAN_FINISH, values, nulls);
		}
		else
		{
			/*
			 * Read the row, compute the expiry here (see CPLAN_FINISH), and
			 * write only if the row is still as read.
			 */
			TimestampTz now = DatumGetTimestampTz(values[7]);
			Datum		cvalues[11];
			char		cnulls[11];

			changed = 0;
			if (mine == NULL)
			{
				/* A token given for a claim of this transaction? */
				XactClaim  *c = event_find_claim(ek, true);

				if (c != NULL && memcmp(&c->token, &tok, sizeof(pg_uuid_t)) == 0)
					mine = c;
			}
			if (mine != NULL)
			{
				/*
				 * Claimed by this transaction: the row is as the claim wrote
				 * it (we hold its row lock), no need to read it.
				 */
				row.found = true;
				row.status = 'i';
				row.locked_null = false;
				row.locked_until = mine->locked_until;
				row.expires_at = mine->expires_at;
			}
			else
				event_lookup(ek, &row);
			if (row.found && row.status == 'i' && !row.locked_null)
			{
				memcpy(cvalues, values, sizeof(Datum) * 8);
				memcpy(cnulls, nulls, 8);
				memset(cnulls + 8, ' ', 3);
				cvalues[8] = TimestampTzGetDatum(event_finish_expiry(now, row.locked_until,
																	 row.expires_at));
				cvalues[9] = TimestampTzGetDatum(row.locked_until);
				cvalues[10] = TimestampTzGetDatum(row.expires_at);
				changed = event_cexec(CPLAN_FINISH, cvalues, cnulls);
			}
		}
	}

	if (changed == 0)
	{
		/* Say precisely why. */
		event_lookup(ek, &row);
		idem_spi_end(&spi);
		if (!row.found)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("idempotency key \"%s\" is not claimed",
							text_to_cstring(ek->key)),
					 errdetail("There is no record of the key in scope \"%s\" for role \"%s\" (it was never claimed, was forgotten, freed by a retryable failure or purged).",
							   text_to_cstring(ek->scope),
							   GetUserNameFromId(ek->owner, false)),
					 errhint("Call idempotency.claim() first and pass its token to idempotency.%s().", fn)));
		if (row.status != 'i')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("idempotency key \"%s\" is already %s",
							text_to_cstring(ek->key),
							row.status == 'c' ? "completed" : "failed"),
					 errdetail("A finished record is never overwritten."),
					 errhint("Call idempotency.forget() first if the key really must be processed again.")));
		ereport(ERROR,
				(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
				 errmsg("token is stale: idempotency key \"%s\" is held by another claim",
						text_to_cstring(ek->key)),
				 errdetail("The key's current claim (attempt %d, fencing token " INT64_FORMAT ") has a different token; the given one belongs to an earlier claim whose lease ran out, or to no claim of this key.",
						   row.attempts, row.fencing_token),
				 errhint("Discard this worker's result; the newer claim's holder finishes the key.")));
	}
	idem_spi_end(&spi);

	event_claims_done(ek);
	idem_keywait_notify(IDEM_LOCKSPACE_EVENT_WAIT, ek->hash);
}

/* complete(key, result, scope, token) */
Datum
idempotency_complete(PG_FUNCTION_ARGS)
{
	EventKey	ek;

	idem_stats_begin(IDEM_OP_COMPLETE);
	idempotency_check_version();
	idem_check_writable("complete");
	idem_forbid_parallel("idempotency.complete()");
	event_key_from_args(&ek, fcinfo, 0, 2, "complete");
	event_finish_claim(fcinfo, &ek, PG_GETARG_DATUM(3), PG_ARGISNULL(3), 'c',
				 PG_GETARG_DATUM(1), PG_ARGISNULL(1), false);
	idem_stats_end(IDEM_OC_OK);
	PG_RETURN_VOID();
}

/* fail(key, error, retryable, scope, token) */
Datum
idempotency_fail(PG_FUNCTION_ARGS)
{
	EventKey	ek;

	idem_stats_begin(IDEM_OP_FAIL);
	idempotency_check_version();
	idem_check_writable("fail");
	idem_forbid_parallel("idempotency.fail()");
	event_key_from_args(&ek, fcinfo, 0, 3, "fail");
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("retryable must not be null"),
				 errhint("Pass true (free the key) or false (store and replay the error) as retryable to idempotency.fail().")));
	event_finish_claim(fcinfo, &ek, PG_GETARG_DATUM(4), PG_ARGISNULL(4), 'f',
				 PG_GETARG_DATUM(1), PG_ARGISNULL(1), PG_GETARG_BOOL(2));
	idem_stats_end(IDEM_OC_OK);
	PG_RETURN_VOID();
}

/* forget(key, scope): delete the caller's record of the key. */
Datum
idempotency_forget(PG_FUNCTION_ARGS)
{
	IdemSpi		spi;
	EventKey	ek;
	Datum		values[3];
	bool		found;

	idempotency_check_version();
	idem_check_writable("forget");
	idem_forbid_parallel("idempotency.forget()");
	event_key_from_args(&ek, fcinfo, 0, 1, "forget");
	values[0] = ek.owner_datum;
	values[1] = PointerGetDatum(ek.scope);
	values[2] = PointerGetDatum(ek.key);

	idem_spi_begin(&spi, "processed_events", true);
	found = event_exec(PLAN_FORGET, values, NULL) > 0;
	idem_spi_end(&spi);

	if (found)
	{
		event_claims_done(&ek);
		idem_keywait_notify(IDEM_LOCKSPACE_EVENT_WAIT, ek.hash);
	}
	PG_RETURN_BOOL(found);
}

/*
 * The names of the roles caller is a member of, as a text[] (local
 * catalogs: role names are the same on every node of a Citus cluster), or
 * 0 if none.  Called connected to SPI.
 */
static Datum
event_member_of(Oid caller)
{
	Datum		values[1];
	Datum		roles = (Datum) 0;
	bool		isnull = true;

	values[0] = ObjectIdGetDatum(caller);
	if (idem_plan_exec(&event_citus_plans, CPLAN_MEMBER_OF, values, NULL, 0) == 1)
		roles = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
							  1, &isnull);
	return isnull ? (Datum) 0 : SPI_datumTransfer(roles, false, -1);
}

/*
 * purge() on a distributed table: read up to batch keys of expired rows
 * the caller may purge (a multi-shard SELECT, no lock), then delete the
 * rows with those keys that are still expired and purgeable (a multi-shard
 * DELETE by key, which waits for a concurrent claim's row lock instead of
 * skipping it, and then sees the claimed row no longer expired).  The
 * caller's roles are passed by name.  Called as the table owner.
 */
static int64
event_purge_citus(Oid caller, bool all, int32 batch)
{
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	Datum		roles = (Datum) 0;
	bool		roles_null = true;
	int64		total = 0;
	uint64		found;
	MemoryContext batchcxt;

	if (!all)
	{
		roles = event_member_of(caller);
		roles_null = (roles == (Datum) 0);
		if (roles_null)
			return 0;
	}
	/*
	 * Each batch's keys and results are freed before the next: a purge
	 * may go through millions of rows in one call.
	 */
	batchcxt = AllocSetContextCreate(CurrentMemoryContext,
									 "idempotency purge batch",
									 ALLOCSET_DEFAULT_SIZES);
	do
	{
		TimestampTz now = GetCurrentTimestamp();
		SPITupleTable *keytab;
		MemoryContext old;
		Datum	   *keys;
		ArrayType  *arr;
		uint64		i;

		CHECK_FOR_INTERRUPTS();
		values[0] = TimestampTzGetDatum(now);
		values[1] = BoolGetDatum(all);
		values[2] = roles;
		nulls[2] = all ? 'n' : ' ';
		values[3] = Int32GetDatum(batch);
		found = idem_plan_exec(&event_citus_plans, CPLAN_PURGE_KEYS, values, nulls, 0);
		keytab = SPI_tuptable;
		if (found == 0)
		{
			SPI_freetuptable(keytab);
			break;
		}
		old = MemoryContextSwitchTo(batchcxt);
		keys = palloc(sizeof(Datum) * found);
		for (i = 0; i < found; i++)
		{
			bool		isnull;

			keys[i] = SPI_getbinval(keytab->vals[i], keytab->tupdesc, 1,
									&isnull);
		}
		/* the array has copies of the keys */
		arr = construct_array(keys, (int) found, TEXTOID, -1, false,
							  TYPALIGN_INT);
		MemoryContextSwitchTo(old);
		SPI_freetuptable(keytab);
		values[0] = PointerGetDatum(arr);
		values[1] = TimestampTzGetDatum(now);
		values[2] = BoolGetDatum(all);
		values[3] = roles;
		nulls[2] = ' ';
		nulls[3] = all ? 'n' : ' ';
		total += idem_plan_exec(&event_citus_plans, CPLAN_PURGE_DELETE, values, nulls, 0);
		SPI_freetuptable(SPI_tuptable);
		MemoryContextReset(batchcxt);
	} while (found >= (uint64) batch);
	MemoryContextDelete(batchcxt);
	return total;
}

/*
 * purge(batch_size) RETURNS bigint: delete expired records, batch_size per
 * statement, skipping rows that a concurrent claim holds locked.  Every
 * expired row for a superuser or a role with the privileges of the table's
 * owner; otherwise those of the roles the caller is a member of.
 */
Datum
idempotency_purge(PG_FUNCTION_ARGS)
{
	Oid			caller = GetUserId();
	Oid			owner;
	int32		batch;
	bool		all;
	int64		total = 0;
	uint64		n;
	Datum		values[4];
	IdemSpi		spi;

	idem_stats_begin(IDEM_OP_PURGE);
	idempotency_check_version();
	idem_forbid_parallel("idempotency.purge()");
	idem_check_writable("purge");
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("batch_size must not be null"),
				 errhint("Pass a positive batch size to idempotency.purge(), or omit it for 10000.")));
	batch = PG_GETARG_INT32(0);
	if (batch <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch_size must be positive"),
				 errdetail("The batch size was %d.", batch),
				 errhint("Pass a positive batch size to idempotency.purge(), or omit it for 10000.")));

	event_table_kind();
	(void) idem_table_lookup("processed_events", false, &owner);
	all = superuser_arg(caller) || has_privs_of_role(caller, owner);
	idem_spi_begin(&spi, "processed_events", true);
	if (event_citus)
		total = event_purge_citus(caller, all, batch);
	else
	{
	char		nulls[4] = {' ', ' ', ' ', ' '};

	values[1] = all ? (Datum) 0 : event_member_of(caller);
	nulls[1] = all ? 'n' : ' ';
	values[2] = BoolGetDatum(all);
	values[3] = Int32GetDatum(batch);
	do
	{
		CHECK_FOR_INTERRUPTS();
		values[0] = TimestampTzGetDatum(GetCurrentTimestamp());
		n = all || values[1] != (Datum) 0
			? event_exec(PLAN_PURGE, values, nulls) : 0;
		total += n;
	} while (n >= (uint64) batch);
	}
	idem_spi_end(&spi);
	/* purge counts the rows it deleted: calls = rows */
	if (total > 0)
		idem_stats_note_n(IDEM_OC_ROWS, (uint64) total);
	idem_stats_end(IDEM_OC_NONE);

	PG_RETURN_INT64(total);
}
