/*-------------------------------------------------------------------------
 *
 * upsert.c
 *	  Atomic insert-or-get and upsert for any table and key:
 *	  idempotent_upsert, get_or_create, update_or_create,
 *	  idempotent_upsert_many and idempotent_upsert_columns.
 *
 * Design
 * ------
 * The table is named by the row type of the first (anyelement) argument.
 * We open it with AccessShareLock (what the SELECT of a hit takes; the
 * INSERT or UPDATE takes RowExclusiveLock itself) BEFORE looking at any
 * cached metadata, so that every invalidation message for it has been
 * processed when we trust the cache.
 *
 * Values come as a jsonb object.  Where every column given is of type text
 * and every value a JSON string or null, they are taken as they are (what
 * jsonb_populate_record's textin would make of them); otherwise they are
 * converted by calling the server's own jsonb_populate_record (so the
 * conversion is exactly that function's:
 * domains, arrays, nested composites, enums ...) with a non-null "default"
 * record whose fields are all NULL: with a non-null default,
 * jsonb_populate_record leaves absent keys alone instead of running a NULL
 * through the column's (domain) input function.  Which columns the INSERT
 * names is decided by the keys present in the object, so absent columns
 * take their defaults (serial, identity, DEFAULT now() ...).
 *
 * Name/value pairs.  A call f(tbl, jsonb_build_object('c1', v1, ...),
 * key_cols), its names distinct constants naming columns that are not
 * generated, each value of its column's type, that type one whose trip
 * through jsonb gives back the very value (text, int2/4/8, bool, uuid,
 * no typmod), and key_cols a constant (or a call whose vals is a constant
 * object whose values are the constants such a call would pass: strings
 * for text columns, booleans, integers in range, nulls), is rewritten at
 * planning by the functions' support function (idempotency_upsert_support,
 * a SupportRequestSimplify) into f(tbl, '{c1, ..., key_cols}'::text[], v1,
 * ...): the same function, so its EXECUTE privilege is the one checked.
 * The call tells that form by the type of its second argument, which no
 * SQL call can make a text[], and takes the values as they are (a text
 * detoasted); which columns the names are, their order and key_cols are
 * memoized per table and text[] (upsert_pairmemo, emptied as the column
 * memo is).  Nothing decided at planning is trusted: the table's OID is a
 * dependency of the plan, and a call whose pairs no longer fit the table
 * (retyped since) calls jsonb_build_object on them and goes the ordinary
 * way, with its conversion and its errors.  Not where Citus is installed:
 * it deparses the planned expressions of the queries it sends to its
 * workers, and the rewritten call is no SQL.
 *
 * Per (table, operation, set of columns present, explicit key columns) a
 * cache entry holds the inferred arbiter index, the key columns with the
 * equality and ordering operators of the index's operator families, the
 * generated SQL and the prepared SPI plans (SPI_keepplan).  A relcache
 * invalidation callback marks the entries of a table invalid (column added,
 * dropped, renamed, retyped; index created or dropped; table dropped); an
 * invalid entry, or one with a plan that SPI_plan_is_valid() rejects, is
 * rebuilt on next use.  A table dropped and re-created under the same name
 * has a new OID, hence new entries.
 *
 * The hash table hashes only the table, the operation and the set bits of
 * a key (upsert_key_hash); keys are compared whole.
 *
 * A call that the custom scan of callscan.c runs as its table's scan takes
 * the relation the executor opened and locked for it
 * (idem_callscan_relation(), re-checked: a table of that row type), with a
 * reference of its own, instead of opening it again.  Two memos in front
 * of the cache save the catalog lookups of a repeated call: the table of
 * the last row type seen, for a call that was given no relation
 * (re-checked after the lock: still a table, still of that row type), and,
 * per table, which columns a
 * set of jsonb keys names (16 direct-mapped slots, emptied for a table by
 * its relcache invalidation, like the entries; the table is locked first).
 *
 * SQL is generated from OIDs and attribute numbers only: the table name,
 * column names and operator names are read back from the catalogs and
 * quoted; every value is a parameter.  SPI runs as the caller (the
 * functions are SECURITY INVOKER), so privileges, column privileges, RLS,
 * triggers and partition routing are those of a plain INSERT; only the
 * probe that tells a key hidden by RLS from a free one (upsert_probe) runs
 * as the table owner, and returns no column of the row.
 *
 * Algorithm (one row), each statement with a fresh snapshot under READ
 * COMMITTED (SPI, read_only = false):
 *
 *	 loop:
 *	   SELECT row WHERE key              -- hit: no xid, no WAL, no trigger
 *	   [update_or_create, when the SELECT says a given value differs:
 *		UPDATE ... SET given columns WHERE key AND some given column IS
 *		DISTINCT FROM its value RETURNING row]
 *	   INSERT ... ON CONFLICT (key) DO NOTHING RETURNING row
 *	   nothing returned: the key exists (or existed) but we did not see it:
 *	   a concurrent delete, RLS, or a trigger -- go round again.
 *
 * ON CONFLICT DO NOTHING waits for an in-progress conflicting inserter and
 * pre-checks the index before touching the heap, so a conflict writes
 * nothing either.  Under REPEATABLE READ / SERIALIZABLE it raises 40001
 * when the conflicting row is invisible to the transaction snapshot; every
 * other way round the loop ends in the row or an error, and the loop is
 * bounded (a BEFORE trigger that suppresses the row or rewrites its key
 * would otherwise spin forever).
 *
 * Hit path: where it gives the same answer as the SELECT (plain table
 * without inheritance children, not a Citus table (see Citus below),
 * table-level SELECT privilege, no RLS for the caller, not SERIALIZABLE,
 * no NULL key, no virtual generated column) the first look is a direct
 * probe of the arbiter index with a fresh snapshot (CommandCounterIncrement
 * and GetTransactionSnapshot, the snapshot SPI would take for the SELECT,
 * so that rows written or deleted earlier in the caller's statement are
 * seen as they are), without SPI and the executor.  The row found is
 * copied once, from the buffer (formed anew only when the tuple lacks
 * columns added since it was written).
 * After such a miss, the INSERT ... ON CONFLICT (key) DO NOTHING is made
 * without SPI and the executor too (upsert_direct_insert, with
 * src/rows.c), where nothing but the insert could happen: a plain heap
 * table without rules, INSERT triggers, CHECK constraints or generated
 * columns, whose indexes and the defaults of the columns left out run no
 * code (src/plans.c), no domain among those columns, no second arbiter,
 * table-level INSERT, READ COMMITTED; decided once per entry, under ROW
 * EXCLUSIVE, and not used when an invalidation of the table arrives with
 * that lock.  The defaults are evaluated as the executor evaluates them;
 * a speculative insertion inserts the row (the probe having just missed
 * the key, without ON CONFLICT's pre-check the first time).  A conflict
 * sends the loop to its SELECT; a row that breaks NOT NULL, to the
 * statement, which raises the error.  Everything else goes through SPI,
 * starting at the INSERT: the probe was the first SELECT.
 *
 * RLS: when row level security applies to the caller and the INSERT found
 * a conflict, we look the key up with RLS off (as the table owner, with
 * SECURITY_NOFORCE_RLS, like the RI triggers do) before and after the next
 * SELECT.  If the same tuple (tableoid, ctid) is live both times, it was
 * live during the SELECT, so the SELECT missed it because of a policy:
 * 42501.  A different or no tuple means a concurrent delete or re-insert:
 * go round again.
 *
 * Batches (idempotent_upsert_many) run per group of elements with the same set
 * of keys.  Where the direct probe applies (see the hit path) and every
 * present column's type has an array type, the set-based path: each element is
 * converted once (as above; an element with the same keys as the one before is
 * not grouped again, and a text value is read straight from its place in the
 * object), all keys are probed in one index scan (whose heap fetches keep the
 * last heap page pinned from key to key): on PostgreSQL 17 and later, for a
 * key of one column, as one array of the keys sorted in the index's order,
 * which btree walks along its leaf pages; otherwise a rescan per key.  The
 * distinct missing keys are sorted in C with the sort support of the index's
 * order under the index's collation (first occurrence of a key wins), and one
 * INSERT ... SELECT FROM ROWS FROM (unnest($1), ...) WITH ORDINALITY ORDER BY
 * ordinality RETURNING <the table's columns> inserts them in that order: a
 * plain INSERT in a subtransaction, which a unique violation rolls back (every
 * row it inserted with it) to run the same INSERT with ON CONFLICT (key) DO
 * NOTHING, as it always does for a single new key and when the
 * subtransaction's xid would overflow the backend's cache of them
 * (batch_insert_plain).  The returned rows come back in the order inserted and
 * are matched to the elements by comparing each with the next sorted key for
 * equality (binary search when a trigger dropped or changed a row), and a
 * second index scan with a fresh snapshot finds the keys that conflicted.
 * Where a single new row is inserted without SPI (upsert_insert_direct_ready),
 * so are these: the plain INSERT's rows formed in key order and written a
 * thousand at a time with table_multi_insert, each index's entries made in key
 * order after each thousand, in the same subtransaction (batch_insert_direct),
 * or, for a single new key or without room for the subtransaction's xid, one
 * by one as the one-row path inserts its row (batch_insert_each); the rows are
 * then known without matching.
 * Otherwise (RLS, column privileges, SERIALIZABLE, inheritance, NULLS NOT
 * DISTINCT, array-typed columns) set statements: a SELECT joining the input
 * (one jsonb_populate_record per element, in a MATERIALIZED CTE) with the
 * table (skipped after a direct probe), an INSERT ... SELECT DISTINCT ON
 * (key) ... ORDER BY key ON CONFLICT DO NOTHING RETURNING joined back to
 * the input, and the SELECT again for the elements still missing.  Either
 * way, inserting in the key order of the index's operator family means two
 * batches with overlapping keys wait for each other in the same order and
 * cannot deadlock.  Elements still missing after that go through the
 * one-row path (exact RLS and retry handling).
 *
 * A batch of columns (idempotent_upsert_columns: one array per column, of
 * exactly its type) is one group.  Where the set-based path applies and no
 * column given has a type modifier (which its input function would apply),
 * the arrays' elements are its converted values as they are
 * (batch_fast_group with vals).  Otherwise, and for the elements that
 * path leaves to the one-row path, the rows are made into JSON elements
 * (batch_columns_elems): a jsonb value as it is, any other as its output
 * function's text under pg_dump's settings (DateStyle ISO, IntervalStyle
 * postgres, extra_float_digits 3, in a GUC nest level undone before
 * anything else runs), which the conversion reads back as the same value;
 * columns of array, composite and json types, whose values would not come
 * back the same, are refused.  The arrays, the values and the elements
 * live in the call's memory context, like a batch's rows.
 *
 * Citus.  Whether the table is one Citus manages (a Citus local,
 * reference or distributed table: idem_citus_table_kind(), src/citus.c) is
 * decided once, when the entry is built (e->citus); Citus's
 * create_distributed_table and friends send a relcache invalidation for
 * the table, which rebuilds the entry.  On such a table every statement
 * goes through Citus's planner: the direct probe never applies (it would
 * read this node's shell table: on the coordinator, rows from before the
 * table was distributed; on a worker, nothing); statements list the live
 * columns instead of a whole-row reference (Citus deparses that with the
 * shard's name, whose row type is not the table's) and the row is formed
 * in C (upsert_result_row); the RLS/trigger probe of (tableoid, ctid, xmin)
 * after a missed INSERT is skipped (those are a shard's, and a worker's
 * xid); batches run the one-row path per element in key order
 * (batch_citus_group).  Refused up front per call (upsert_citus_check,
 * 0A000): a call over a Citus internal connection (a shard query pushed
 * down with the call in it) and row level security applying to the caller.
 * Without Citus the cost is one flag test per statement built and per call.
 *
 * PostgreSQL 19's INSERT ... ON CONFLICT DO SELECT returns the conflicting
 * row from the INSERT itself; on such a server the SELECT after a conflict
 * could go.  That switch would be a macro in compat.h; it is not built.
 *
 * Keys are compared under the arbiter index's collation (COLLATE in the
 * generated SQL where it differs from the column's), as ON CONFLICT and the
 * direct probe compare them, so that every path finds the same row.  A row
 * returned by the INSERT or the UPDATE is checked to still have the key
 * asked for (a BEFORE trigger may rewrite it: 55000, never a row of another
 * key).
 *
 * Locks: AccessShareLock on the table (held to end of transaction);
 * everything else is the locking of the statements themselves, or, for a
 * row inserted without SPI, the locks its INSERT would take: ROW EXCLUSIVE
 * on the table (before the entry's decision is trusted) and on its indexes,
 * the speculative insertion's token, the waits of the unique checks.  The
 * cache is backend-local and protected by nothing but being backend-local.
 * A direct insert's slots, executor state and default expressions' states
 * live for one call (an error frees them with the transaction); the planned
 * default expressions are the entry's.
 *
 * Memory and lifetime
 * -------------------
 * upsert_cache (a hash table in upsert_cache_cxt, under CacheMemoryContext)
 * maps a cache key to the current UpsertEntry for it.  Each entry lives in a
 * memory context of its own, with its saved SPI plans, until it is freed.
 * A call uses an entry for its whole duration, and a call can be re-entered
 * while it runs: its INSERT fires triggers, RLS policy functions, domain
 * CHECK functions and index expressions, any of which may call an upsert
 * function again, fill the cache past UPSERT_CACHE_MAX, or invalidate the
 * entry (GRANT, ANALYZE, ALTER).  So an entry in use is pinned:
 *
 *	 - upsert_entry() returns the entry pinned; the call unpins it when done.
 *	   Each pin is recorded (upsert_pins) with the transaction nesting level
 *	   it was taken at; a (sub)transaction abort releases the pins taken at
 *	   its level or deeper, so an error never leaves a pin behind, and a
 *	   subtransaction commit hands its pins to the parent.
 *	 - Invalidation only clears "valid".  The next lookup of a stale entry
 *	   replaces it in the hash table; the old one is freed at once if
 *	   unpinned, otherwise detached (upsert_detached) and freed by a later
 *	   lookup once its last pin is gone (never from an abort callback, while
 *	   the aborting executor may still reference its plans).
 *	 - Emptying a full cache skips pinned entries.  upsert_last_slot, the
 *	   hash table slot looked up last (compared first by the next lookup),
 *	   is forgotten when the cache is emptied, the only time a slot is
 *	   removed.
 *	 - An entry whose table was invalidated while it was being built (the
 *	   build's catalog lookups may process invalidations) is born invalid:
 *	   it serves the call that built it, and the next lookup replaces it.
 *
 * A caller may therefore keep using its entry, plans and descriptors until
 * it unpins, whatever the nested calls did.
 *
 * A batch's elements, keys and rows live in the memory the function was
 * called in, for the call; its result's tuplestore, for the statement.
 * batch_keep_heap() then has glibc keep that much free memory in the
 * backend's heap for the next batch, from then on for the backend's life
 * (a static of this file remembers how much was asked for).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "idempotency.h"
#include "args.h"
#include "plans.h"
#include "citus.h"
#include "locks.h"
#include "rows.h"

#include "access/genam.h"
#include "access/nbtree.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_class.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_index.h"
#include "catalog/pg_opclass.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "nodes/pathnodes.h"
#include "nodes/supportnodes.h"
#include "optimizer/optimizer.h"
#include "rewrite/rewriteHandler.h"
#include "storage/lmgr.h"
#include "pgstat.h"
#include "storage/itemptr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/acl.h"
#include "utils/snapmgr.h"
#include "utils/sortsupport.h"
#include "utils/syscache.h"
#include "utils/typcache.h"
#include "common/hashfn.h"

PG_FUNCTION_INFO_V1(idempotency_idempotent_upsert);
PG_FUNCTION_INFO_V1(idempotency_get_or_create);
PG_FUNCTION_INFO_V1(idempotency_update_or_create);
PG_FUNCTION_INFO_V1(idempotency_idempotent_upsert_many);
PG_FUNCTION_INFO_V1(idempotency_idempotent_upsert_columns);
PG_FUNCTION_INFO_V1(idempotency_upsert_support);

/*
 * The entry points of 0.1.0's SQL objects, which the library serves until
 * ALTER EXTENSION ... UPDATE replaces them (see idempotency.c).
 */
PG_FUNCTION_INFO_V1(idem_upsert);
PG_FUNCTION_INFO_V1(idem_get_or_create);
PG_FUNCTION_INFO_V1(idem_update_or_create);
PG_FUNCTION_INFO_V1(idem_upsert_many);

/* How often the one-row loop may go round before giving up. */
#define UPSERT_MAX_ATTEMPTS			100
/* ... under REPEATABLE READ / SERIALIZABLE, where the snapshot never moves */
#define UPSERT_MAX_ATTEMPTS_XACT	3

#define UPSERT_COLWORDS ((MaxHeapAttributeNumber + 63) / 64 + 1)

/* Cache entries per backend before the cache is emptied and refilled. */
#define UPSERT_CACHE_MAX			1024

typedef enum UpsertOp
{
	UPSERT_GET,					/* idempotent_upsert, get_or_create */
	UPSERT_UPDATE,				/* update_or_create */
	UPSERT_MANY					/* idempotent_upsert_many */
} UpsertOp;

typedef enum UpsertStmt
{
	STMT_SELECT,
	STMT_INSERT,
	STMT_UPDATE,
	STMT_MANY_SELECT,
	STMT_MANY_INSERT,
	STMT_PROBE,
	STMT_MANY_ORDER,
	STMT_MANY_UNNEST,
	STMT_MANY_PLAIN,
	STMT_COUNT
} UpsertStmt;

typedef struct UpsertCacheKey
{
	Oid			relid;
	int			op;
	uint64		cols[UPSERT_COLWORDS];	/* attnums present in vals */
	uint64		keycols[UPSERT_COLWORDS];	/* explicit key_cols, or zero */
} UpsertCacheKey;

/* The hash table's entry: the key and the current cache entry for it. */
typedef struct UpsertSlot
{
	UpsertCacheKey key;			/* hash key: must be first */
	struct UpsertEntry *entry;
} UpsertSlot;

typedef struct UpsertEntry
{
	UpsertCacheKey key;
	bool		valid;			/* false once invalidated */
	bool		detached;		/* no longer in the hash table */
	int			pins;			/* calls using it now (see the header) */
	MemoryContext cxt;			/* the entry and everything below live here */
	Oid			relid;
	Oid			owner;			/* table owner (RLS probe) */
	Oid			rowtype;
	char	   *relname;		/* quoted and qualified, for SQL */
	char	   *relmsg;			/* qualified, for messages */
	TupleDesc	tupdesc;		/* copy of the table's descriptor */
	Datum		emptyrow;		/* non-null row, every field NULL */
	FmgrInfo	populate;		/* jsonb_populate_record, fn_expr set */
	bool		populate_percall;	/* a column holds composite values: a
									 * fresh copy of populate per call */
	int			ncols;			/* columns present in vals ... */
	AttrNumber *cols;			/* ... their attnums, ascending */
	Oid		   *coltypes;
	Oid			indexoid;		/* arbiter index */
	bool		nulls_not_distinct;
	int			nkeys;
	int		   *keyparam;		/* key i -> index into cols */
	char	  **keyeq;			/* "OPERATOR(nsp.=)" per key */
	char	  **keycast;		/* "::nsp.type" (its input type) or "" */
	RegProcedure *keyproc;		/* ... its function, for the direct lookup */
	bool		plain;			/* plain table without children */
	bool		virtual_generated;	/* has a virtual generated column (18) */
	bool		citus;			/* a Citus table (see "Citus" in the header) */
	int			rowcols;		/* result columns holding the row: 1, or the
								 * live columns when citus */
	char	  **keylt;			/* "OPERATOR(nsp.<)" per key */
	char	  **keycoll;		/* " COLLATE nsp.x" per key, or "" */
	char	  **keytarget;		/* the ON CONFLICT inference element per key:
								 * "col", or "col COLLATE nsp.x nsp.opclass"
								 * when keytwins */
	bool		keytwins;		/* another unique index has the key's columns */
	Oid			deferrable_twin;	/* ... a deferrable one ON CONFLICT would
									 * take as an arbiter: no insert */
	char	   *sql[STMT_COUNT];	/* for nullmask 0 */
	SPIPlanPtr	plan[STMT_COUNT];
	bool		alltext;		/* every present column is of type text */
	int		   *keypos;			/* per present column: its key's position
								 * among the object's keys, as jsonb orders
								 * them (upsert_convert_text) */
	/* for the set-based batch path (batch_fast_group) */
	bool		arrays_ok;		/* every present column has an array type */
	Oid		   *colarray;		/* array type per present column */
	int16	   *coltyplen;
	bool	   *coltypbyval;
	char	   *coltypalign;
	Oid		   *keyltop;		/* btree "<" per key (batch sorts) ... */
	FmgrInfo   *keyeqfn;		/* ... and equality (keyproc) ... */
	Oid		   *keyindcoll;		/* ... under the index's collation */
	/* for the miss path's direct insert (upsert_direct_insert) */
	int			insert_direct;	/* 1 yes, -1 no, 0 not decided yet */
	int			ndefaults;		/* columns absent from vals with a default: */
	AttrNumber *defatt;			/* ... their attnums ... */
	Expr	  **defexpr;		/* ... and defaults, planned */
	List	   *arbiters;		/* the arbiter index, alone */
} UpsertEntry;

/* What an entry point's second argument is (upsert_call_begin). */
typedef enum UpsertForm
{
	UPSERT_FORM_ROW,			/* vals, an object (or a rewritten call's
								 * names) */
	UPSERT_FORM_MANY,			/* vals, an array of objects */
	UPSERT_FORM_COLUMNS			/* cols, arrays follow */
} UpsertForm;

/* Result of the RLS probe. */
typedef struct UpsertProbe
{
	bool		found;
	Oid			tableoid;
	ItemPointerData tid;
	TransactionId xmin;
} UpsertProbe;

/* A row found by the SELECT, and which version of it. */
typedef struct UpsertSeen
{
	Datum		row;
	bool		differs;		/* update_or_create: a given value differs */
} UpsertSeen;

/* An open direct probe of the arbiter index (hit path). */
typedef struct UpsertDirect
{
	Relation	heap;			/* the caller's (locked, open) table */
	Relation	index;
	Snapshot	snap;
	TupleTableSlot *slot;
	IndexScanDesc scan;
	IndexFetchTableData *fetch; /* batches: heap fetches kept across keys */
} UpsertDirect;

/* A call's use of an entry, released at its end or by its (sub)xact's abort. */
typedef struct UpsertPin
{
	struct UpsertEntry *entry;
	int			level;			/* transaction nesting level when pinned */
} UpsertPin;

/*
 * Memos of the argument handling, checked before the cache (see the
 * header): the table of the last row type seen, and which columns a set of
 * jsonb keys names, per table, in a few direct-mapped slots.
 */
#define UPSERT_COLMEMO_SLOTS		16
#define UPSERT_COLMEMO_MAXNAMES		256

typedef struct UpsertColMemo
{
	Oid			relid;			/* InvalidOid: empty */
	int			len;			/* of names */
	char		names[UPSERT_COLMEMO_MAXNAMES];	/* the keys, NUL-separated */
	uint64		cols[UPSERT_COLWORDS];
} UpsertColMemo;

/*
 * A call rewritten by upsert_support() (see "Name/value pairs" in the
 * header) names its columns and key columns in a text[]; which columns
 * they are, per table, is memoized like the keys of an object (as many
 * slots, emptied the same way), with the type each value must have to be
 * taken as it is.
 */
#define UPSERT_MAX_PAIRS			(FUNC_MAX_ARGS - 2)
#define UPSERT_PAIRMEMO_MAXSPEC		512

typedef struct UpsertPairMemo
{
	Oid			relid;			/* InvalidOid: empty */
	int			npairs;
	Size		len;			/* of spec */
	char		spec[UPSERT_PAIRMEMO_MAXSPEC];	/* the call's text[], whole */
	Oid			typid[UPSERT_MAX_PAIRS];	/* per pair: its column's type */
	int			order[UPSERT_MAX_PAIRS];	/* pairs by ascending attnum */
	uint64		cols[UPSERT_COLWORDS];
	uint64		keycols[UPSERT_COLWORDS];
} UpsertPairMemo;

static Oid	upsert_memo_argtype = InvalidOid;
static Oid	upsert_memo_relid = InvalidOid;
static UpsertColMemo *upsert_colmemo = NULL;	/* [UPSERT_COLMEMO_SLOTS] */
static UpsertPairMemo *upsert_pairmemo = NULL;	/* [UPSERT_COLMEMO_SLOTS] */

static HTAB *upsert_cache = NULL;
static UpsertSlot *upsert_last_slot = NULL; /* upsert_cache's last looked up */
static uint64 upsert_invals = 0;	/* relcache invalidations seen */
static MemoryContext upsert_cache_cxt = NULL;
static List *upsert_pins = NIL;		/* of UpsertPin *, oldest first */
static List *upsert_detached = NIL; /* of UpsertEntry *, pinned, not in the hash */

static void upsert_init_cache(void);
static void upsert_cache_flush(void);
static void upsert_retire(UpsertEntry *e);
static void upsert_free_detached(void);
static void upsert_pin(UpsertEntry *e);
static void upsert_unpin(UpsertEntry *e);
static void upsert_release_pins(int level);
static void upsert_xact_callback(XactEvent event, void *arg);
static void upsert_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
									SubTransactionId parentSubid, void *arg);
static char *operator_sql(Oid opno);
static char *cast_sql(Oid from, Oid to);
static char *catalog_name_sql(int cacheid, Oid oid);
static const char *colname(UpsertEntry *e, AttrNumber att);
static const char *row_alias(UpsertEntry *e);
static void append_key_match(StringInfo buf, UpsertEntry *e, const char *alias,
							 uint32 nullmask);
static bool is_key(UpsertEntry *e, int colidx);
static void append_differs(StringInfo buf, UpsertEntry *e, const char *alias);
static void append_batch_key_join(StringInfo buf, UpsertEntry *e, const char *alias);
static void append_returning_cols(StringInfo buf, UpsertEntry *e, const char *alias);
static Relation upsert_open_table(FunctionCallInfo fcinfo, const char *fname);
static void upsert_cols_of(Relation rel, Jsonb *obj, uint64 *cols, const char *fname);
static char **upsert_names_of(ArrayType *arr, const char *argname, int *n);
static int	support_pairs_of_call(FuncExpr *vals, char ***names, Node ***exprs);
static int	support_pairs_of_const(Const *vals, char ***names, JsonbValue **jvals);
static Const *support_const_value(const JsonbValue *v, Oid typid, Oid collid);
static HeapTuple upsert_given_column(Relation rel, const char *name,
									 const char *argname, const char *what);
static void upsert_keycols_of(Relation rel, ArrayType *arr, uint64 *keycols);
static UpsertEntry *upsert_entry(Relation rel, UpsertOp op, const uint64 *cols,
								 const uint64 *keycols);
static void upsert_build(UpsertEntry *e, Relation rel, const uint64 *keycols);
static Oid	upsert_choose_index(UpsertEntry *e, Relation rel, const uint64 *keycols);
static void upsert_build_keys(UpsertEntry *e, Relation rel);
static void upsert_build_populate(UpsertEntry *e);
static void upsert_build_citus(UpsertEntry *e);
static void upsert_citus_check(UpsertEntry *e, const char *fname);
static void append_row(StringInfo buf, UpsertEntry *e, const char *alias);
static Datum upsert_result_row(UpsertEntry *e, HeapTuple tup, TupleDesc desc, int first);
static void upsert_free_entry(UpsertEntry *e);
static char *upsert_index_list(Relation rel, bool usable_only);
static char *upsert_sql(UpsertEntry *e, UpsertStmt stmt, uint32 nullmask);
static void upsert_convert(UpsertEntry *e, Jsonb *vals, Datum *values, char *nulls);
static uint32 upsert_check_keys(UpsertEntry *e, const char *nulls);
static int	upsert_exec(UpsertEntry *e, UpsertStmt stmt, uint32 nullmask,
						Datum *values, const char *nulls, long count);
static UpsertProbe upsert_probe(UpsertEntry *e, uint32 nullmask, Datum *values,
								const char *nulls);
static bool upsert_direct_ok(UpsertEntry *e, Relation rel, UpsertOp op);
static void upsert_direct_begin(UpsertEntry *e, UpsertDirect *d, Relation rel,
								bool many);
static bool upsert_direct_fetch(UpsertEntry *e, UpsertDirect *d, Datum *values, Datum *row);
static Datum upsert_direct_row(UpsertDirect *d);
static void upsert_direct_end(UpsertDirect *d);
static bool upsert_direct_lookup(UpsertEntry *e, Relation rel, UpsertOp op,
								 uint32 nullmask, Datum *values, Datum *row,
								 bool *probed);
static bool upsert_insert_direct_build(UpsertEntry *e, Relation rel);
static bool upsert_insert_direct_ready(UpsertEntry *e, Relation rel);
static Datum upsert_slot_row(TupleTableSlot *slot, TupleDesc desc,
							 MemoryContext cxt);
static ExprState **upsert_default_states(UpsertEntry *e, EState *estate);
static void upsert_form_new_row(UpsertEntry *e, TupleTableSlot *slot,
								ExprContext *econtext, ExprState **defaults,
								const Datum *values, const char *nulls);
static IdemRowResult upsert_direct_insert(UpsertEntry *e, Relation rel,
										  const Datum *values, const char *nulls,
										  Datum *row);
static bool upsert_direct_batch(UpsertEntry *e, Relation rel, Jsonb **elems,
								const int64 *ords, int n,
								Datum *rows);
static Datum upsert_one(UpsertEntry *e, Jsonb *vals, UpsertOp op, bool *created);
static bool upsert_select(UpsertEntry *e, uint32 nullmask, Datum *values,
						  const char *nulls, UpsertSeen *seen);
static Datum upsert_loop(UpsertEntry *e, UpsertOp op, Datum *values, char *nulls,
						 uint32 nullmask, bool probed, bool conflicted,
						 bool *created);
static Datum upsert_single(FunctionCallInfo fcinfo, UpsertOp op, const char *fname,
						   bool *created);
static Datum upsert_result_pair(FunctionCallInfo fcinfo, Datum row, bool created);
static Relation upsert_call_begin(FunctionCallInfo fcinfo, const char *fname,
								  UpsertForm form);
struct UpsertBatch;
struct UpsertGroup;
static void batch_split(struct UpsertBatch *b);
static void batch_citus_group(struct UpsertBatch *b, struct UpsertGroup *grp,
							  UpsertEntry *e);
static void batch_check_null_keys(struct UpsertBatch *b);
static void batch_run_group(struct UpsertBatch *b, struct UpsertGroup *grp);
static void batch_emit(struct UpsertBatch *b, ReturnSetInfo *rsinfo);
static void batch_columns_elems(struct UpsertBatch *b);
static int	bitmap_count(const uint64 *bits);
static bool bitmap_empty(const uint64 *bits);

/* ---------------------------------------------------------------------
 * Cache
 * --------------------------------------------------------------------- */

void
idem_upsert_relcache_inval(Oid relid)
{
	HASH_SEQ_STATUS status;
	UpsertSlot *slot;

	if (upsert_colmemo != NULL)
	{
		int			i;

		for (i = 0; i < UPSERT_COLMEMO_SLOTS; i++)
		{
			if (relid == InvalidOid || upsert_colmemo[i].relid == relid)
				upsert_colmemo[i].relid = InvalidOid;
			if (relid == InvalidOid || upsert_pairmemo[i].relid == relid)
				upsert_pairmemo[i].relid = InvalidOid;
		}
	}
	upsert_invals++;
	if (upsert_cache == NULL)
		return;
	hash_seq_init(&status, upsert_cache);
	while ((slot = hash_seq_search(&status)) != NULL)
	{
		if (slot->entry != NULL &&
			(relid == InvalidOid || slot->entry->relid == relid))
			slot->entry->valid = false;
	}
}

/*
 * Hash of a cache key: the table, the operation and the set bits only (the
 * key is over 400 bytes, nearly all zero words, which hash_bytes would
 * read on every call).  Equality stays memcmp of the whole key.
 */
static uint32
upsert_key_hash(const void *key, Size keysize)
{
	const UpsertCacheKey *k = (const UpsertCacheKey *) key;
	uint32		h = murmurhash32(k->relid) ^ (uint32) k->op;
	int			i;

	Assert(keysize == sizeof(UpsertCacheKey));
	for (i = 0; i < UPSERT_COLWORDS; i++)
	{
		if (k->cols[i] != 0)
			h = hash_combine(h, hash_bytes_uint32((uint32) i) ^
							 hash_bytes((const unsigned char *) &k->cols[i], sizeof(uint64)));
		if (k->keycols[i] != 0)
			h = hash_combine(h, hash_bytes_uint32((uint32) (i + UPSERT_COLWORDS)) ^
							 hash_bytes((const unsigned char *) &k->keycols[i], sizeof(uint64)));
	}
	return h;
}

static void
upsert_init_cache(void)
{
	HASHCTL		ctl;

	if (upsert_cache != NULL)
		return;
	/* the context once, even if an allocation below fails */
	if (upsert_cache_cxt == NULL)
		upsert_cache_cxt = AllocSetContextCreate(CacheMemoryContext,
												 "idempotency upsert cache",
												 ALLOCSET_DEFAULT_SIZES);
	/* the pairs' memo first: a column memo means both exist */
	if (upsert_pairmemo == NULL)
		upsert_pairmemo = MemoryContextAllocZero(upsert_cache_cxt,
												 sizeof(UpsertPairMemo) * UPSERT_COLMEMO_SLOTS);
	if (upsert_colmemo == NULL)
		upsert_colmemo = MemoryContextAllocZero(upsert_cache_cxt,
												sizeof(UpsertColMemo) * UPSERT_COLMEMO_SLOTS);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(UpsertCacheKey);
	ctl.entrysize = sizeof(UpsertSlot);
	ctl.hash = upsert_key_hash;
	ctl.hcxt = upsert_cache_cxt;
	/* last: a non-NULL upsert_cache means everything above exists */
	upsert_cache = hash_create("idempotency upsert cache", 64, &ctl,
							   HASH_ELEM | HASH_FUNCTION | HASH_CONTEXT);
}

/* Called once from _PG_init(). */
void
idem_upsert_init(void)
{
	RegisterXactCallback(upsert_xact_callback, NULL);
	RegisterSubXactCallback(upsert_subxact_callback, NULL);
}

/* Free an entry nobody uses: its plans and its context (the entry too). */
static void
upsert_free_entry(UpsertEntry *e)
{
	int			i;

	Assert(e->pins == 0);
	for (i = 0; i < STMT_COUNT; i++)
	{
		if (e->plan[i] != NULL)
			SPI_freeplan(e->plan[i]);
		e->plan[i] = NULL;
	}
	MemoryContextDelete(e->cxt);
}

/*
 * An entry leaves the hash table: freed now if no call uses it, otherwise
 * kept on the detached list until its last pin is released.
 */
static void
upsert_retire(UpsertEntry *e)
{
	if (e->pins == 0)
		upsert_free_entry(e);
	else
	{
		MemoryContext old = MemoryContextSwitchTo(upsert_cache_cxt);

		e->detached = true;
		e->valid = false;
		upsert_detached = lappend(upsert_detached, e);
		MemoryContextSwitchTo(old);
	}
}

/* Free the detached entries whose last user has gone. */
static void
upsert_free_detached(void)
{
	ListCell   *lc;

	foreach(lc, upsert_detached)
	{
		UpsertEntry *e = (UpsertEntry *) lfirst(lc);

		if (e->pins == 0)
		{
			upsert_detached = foreach_delete_current(upsert_detached, lc);
			upsert_free_entry(e);
		}
	}
}

/* Drop every entry not in use (the cache is full). */
static void
upsert_cache_flush(void)
{
	HASH_SEQ_STATUS status;
	UpsertSlot *slot;

	hash_seq_init(&status, upsert_cache);
	while ((slot = hash_seq_search(&status)) != NULL)
	{
		if (slot->entry != NULL && slot->entry->pins > 0)
			continue;
		if (slot->entry != NULL)
			upsert_free_entry(slot->entry);
		hash_search(upsert_cache, &slot->key, HASH_REMOVE, NULL);
	}
	upsert_last_slot = NULL;
}

/* The caller uses e until upsert_unpin(e) or the end of its (sub)xact. */
static void
upsert_pin(UpsertEntry *e)
{
	MemoryContext old = MemoryContextSwitchTo(upsert_cache_cxt);
	UpsertPin  *p = palloc(sizeof(UpsertPin));

	p->entry = e;
	p->level = GetCurrentTransactionNestLevel();
	upsert_pins = lappend(upsert_pins, p);
	e->pins++;
	MemoryContextSwitchTo(old);
}

/* Release the newest pin of e. */
static void
upsert_unpin(UpsertEntry *e)
{
	int			i;

	for (i = list_length(upsert_pins) - 1; i >= 0; i--)
	{
		UpsertPin  *p = (UpsertPin *) list_nth(upsert_pins, i);

		if (p->entry == e)
		{
			upsert_pins = list_delete_nth_cell(upsert_pins, i);
			pfree(p);
			e->pins--;
			return;
		}
	}
	elog(ERROR, "upsert cache entry of table \"%s\" is not pinned", e->relmsg);
}

/*
 * Release the pins taken at nesting level "level" or deeper, whose calls an
 * error has ended.  Entries are not freed here (an aborting transaction may
 * still reference their plans); the next upsert_entry() frees those that
 * are detached and unused.
 */
static void
upsert_release_pins(int level)
{
	int			i;

	for (i = list_length(upsert_pins) - 1; i >= 0; i--)
	{
		UpsertPin  *p = (UpsertPin *) list_nth(upsert_pins, i);

		if (p->level >= level)
		{
			p->entry->pins--;
			upsert_pins = list_delete_nth_cell(upsert_pins, i);
			pfree(p);
		}
	}
}

static void
upsert_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PREPARE)
		upsert_release_pins(0);
}

static void
upsert_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	ListCell   *lc;
	int			level = GetCurrentTransactionNestLevel();

	if (event == SUBXACT_EVENT_ABORT_SUB)
		upsert_release_pins(level);
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		/* A pin that outlives its subtransaction belongs to the parent. */
		foreach(lc, upsert_pins)
		{
			UpsertPin  *p = (UpsertPin *) lfirst(lc);

			if (p->level >= level)
				p->level = level - 1;
		}
	}
}

static bool
bitmap_empty(const uint64 *bits)
{
	int			i;

	for (i = 0; i < UPSERT_COLWORDS; i++)
		if (bits[i] != 0)
			return false;
	return true;
}

static int
bitmap_count(const uint64 *bits)
{
	int			i,
				n = 0;

	for (i = 0; i < UPSERT_COLWORDS; i++)
		n += pg_popcount((const char *) &bits[i], sizeof(uint64));
	return n;
}

#define BIT_SET(bits, n)	((bits)[(n) / 64] |= UINT64CONST(1) << ((n) % 64))
#define BIT_ISSET(bits, n)	(((bits)[(n) / 64] >> ((n) % 64)) & 1)

/*
 * Look up (or build) the entry for this table, operation and column sets,
 * pinned: the caller must upsert_unpin() it when done (an error releases
 * the pin by itself).  The table must be locked by the caller.
 */
static UpsertEntry *
upsert_entry(Relation rel, UpsertOp op, const uint64 *cols, const uint64 *keycols)
{
	UpsertCacheKey key;
	UpsertSlot *slot;
	UpsertEntry *e;
	MemoryContext cxt;
	uint64		invals;
	int			i;

	upsert_init_cache();
	upsert_free_detached();
	memset(&key, 0, sizeof(key));
	key.relid = RelationGetRelid(rel);
	key.op = (op == UPSERT_UPDATE) ? UPSERT_UPDATE : UPSERT_GET;
	memcpy(key.cols, cols, sizeof(key.cols));
	memcpy(key.keycols, keycols, sizeof(key.keycols));

	/*
	 * A backend calls the same upsert again and again: the slot looked up
	 * last is compared before the table is searched.  (A slot stays where
	 * it is in the table until removed, which only upsert_cache_flush()
	 * does, and it forgets the memo.)
	 */
	slot = upsert_last_slot;
	if (slot == NULL || memcmp(&slot->key, &key, sizeof(key)) != 0)
		slot = hash_search(upsert_cache, &key, HASH_FIND, NULL);
	upsert_last_slot = slot;
	if (slot != NULL && slot->entry != NULL)
	{
		e = slot->entry;
		for (i = 0; e->valid && i < STMT_COUNT; i++)
			if (e->plan[i] != NULL && !SPI_plan_is_valid(e->plan[i]))
				e->valid = false;
		if (e->valid)
		{
			upsert_pin(e);
			return e;
		}
		/* stale: a call still using it keeps it until it is done */
		slot->entry = NULL;
		upsert_retire(e);
	}
	if (slot == NULL)
	{
		/* callers naming ever new column sets must not grow it forever */
		if (hash_get_num_entries(upsert_cache) >= UPSERT_CACHE_MAX)
			upsert_cache_flush();
		slot = hash_search(upsert_cache, &key, HASH_ENTER, NULL);
		slot->entry = NULL;
		upsert_last_slot = slot;
	}

	/*
	 * A fresh entry, in a context of its own.  It is in the slot but invalid
	 * until the build is complete, so after an error half-way the next
	 * lookup frees what was built and starts again (no PG_TRY needed).
	 */
	cxt = AllocSetContextCreate(upsert_cache_cxt, "idempotency upsert entry",
								ALLOCSET_SMALL_SIZES);
	e = MemoryContextAllocZero(cxt, sizeof(UpsertEntry));
	e->cxt = cxt;
	e->key = key;
	e->valid = false;
	slot->entry = e;
	invals = upsert_invals;
	upsert_build(e, rel, keycols);

	/*
	 * The build's catalog lookups may process invalidations (taking a lock
	 * on a catalog does), and one for this table would find the entry
	 * still invalid: what was read before it may be stale (a child table
	 * or a unique index added by a command that needs no lock conflicting
	 * with ours).  Then the entry serves this call, as it would have had
	 * the invalidation come a moment later, and the next lookup rebuilds it.
	 */
	e->valid = (invals == upsert_invals);
	upsert_pin(e);
	return e;
}

/*
 * The table's unique indexes as a string for messages: "a_pkey (id),
 * a_email_key (email)".  usable_only limits it to possible arbiters.
 */
static char *
upsert_index_list(Relation rel, bool usable_only)
{
	StringInfoData buf;
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, indexes)
	{
		Oid			indexoid = lfirst_oid(lc);
		HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
		Form_pg_index ind;
		int			j;

		if (!HeapTupleIsValid(tup))
			continue;
		ind = (Form_pg_index) GETSTRUCT(tup);
		if (ind->indisunique)
		{
			bool		usable = ind->indisvalid && ind->indisready && ind->indislive &&
			ind->indimmediate &&
			heap_attisnull(tup, Anum_pg_index_indexprs, NULL) &&
			heap_attisnull(tup, Anum_pg_index_indpred, NULL);

			if (usable || !usable_only)
			{
				if (buf.len > 0)
					appendStringInfoString(&buf, ", ");
				appendStringInfo(&buf, "%s (", quote_identifier(get_rel_name(indexoid)));
				for (j = 0; j < ind->indnkeyatts; j++)
				{
					AttrNumber	att = ind->indkey.values[j];

					if (j > 0)
						appendStringInfoString(&buf, ", ");
					appendStringInfoString(&buf, att == 0 ? "expression" :
										   quote_identifier(get_attname(RelationGetRelid(rel), att, false)));
				}
				appendStringInfoChar(&buf, ')');
				if (!usable)
					appendStringInfoString(&buf, " [not usable: partial, expression, deferrable or not valid]");
			}
		}
		ReleaseSysCache(tup);
	}
	if (buf.len == 0)
		appendStringInfoString(&buf, "none");
	return buf.data;
}

/*
 * The quoted, schema-qualified name of an operator ("OPERATOR(nsp.op)"), a
 * type or a collation ("nsp.name"), by syscache id.  Kept statements are
 * parsed again, when the plan cache revalidates them, under whatever
 * search_path the caller has then: nothing in them may depend on it.
 */
static char *
catalog_name_sql(int cacheid, Oid oid)
{
	HeapTuple	tup = SearchSysCache1(cacheid, ObjectIdGetDatum(oid));
	Oid			nsp;
	const char *name;
	char	   *res;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for object %u (syscache %d)", oid, cacheid);
	switch (cacheid)
	{
		case OPEROID:
			nsp = ((Form_pg_operator) GETSTRUCT(tup))->oprnamespace;
			name = NameStr(((Form_pg_operator) GETSTRUCT(tup))->oprname);
			break;
		case TYPEOID:
			nsp = ((Form_pg_type) GETSTRUCT(tup))->typnamespace;
			name = NameStr(((Form_pg_type) GETSTRUCT(tup))->typname);
			break;
		case COLLOID:
			nsp = ((Form_pg_collation) GETSTRUCT(tup))->collnamespace;
			name = NameStr(((Form_pg_collation) GETSTRUCT(tup))->collname);
			break;
		case CLAOID:
			nsp = ((Form_pg_opclass) GETSTRUCT(tup))->opcnamespace;
			name = NameStr(((Form_pg_opclass) GETSTRUCT(tup))->opcname);
			break;
		default:
			elog(ERROR, "unexpected syscache %d", cacheid);
	}
	if (cacheid == OPEROID)
		res = psprintf("OPERATOR(%s.%s)", quote_identifier(get_namespace_name(nsp)), name);
	else
		res = quote_qualified_identifier(get_namespace_name(nsp), name);
	ReleaseSysCache(tup);
	return res;
}

static char *
operator_sql(Oid opno)
{
	return catalog_name_sql(OPEROID, opno);
}

/*
 * "::nsp.type" when a value of type from is not of type to, else "".  An
 * operator named by OPERATOR(nsp.op) is still chosen by its argument
 * types: where a column's type (a domain, varchar) is not the input type
 * of the index's operator, an operator of that name in nsp taking the
 * column's type exactly would be chosen instead, and anyone allowed to
 * create objects in nsp could plant one.  Casting each operand to the
 * operator's input type leaves only the intended one (as PostgreSQL's
 * foreign-key checks do, generate_operator_clause()).
 */
static char *
cast_sql(Oid from, Oid to)
{
	if (from == to)
		return "";
	return psprintf("::%s", catalog_name_sql(TYPEOID, to));
}

/*
 * Fill a fresh entry (in its own context): columns, arbiter index,
 * operators, conversion.
 */
static void
upsert_build(UpsertEntry *e, Relation rel, const uint64 *keycols)
{
	MemoryContext old = MemoryContextSwitchTo(e->cxt);
	const uint64 *cols = e->key.cols;
	int			i,
				j;

	e->relid = RelationGetRelid(rel);
	e->owner = rel->rd_rel->relowner;
	e->rowtype = rel->rd_rel->reltype;
	e->relname = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
											RelationGetRelationName(rel));
	e->relmsg = psprintf("%s.%s", get_namespace_name(RelationGetNamespace(rel)),
						 RelationGetRelationName(rel));
	e->tupdesc = CreateTupleDescCopy(RelationGetDescr(rel));
	/* the copy has no constraints: read this from the relation's */
	e->virtual_generated = IdemHasVirtualGenerated(RelationGetDescr(rel));
	upsert_build_citus(e);

	/* present columns, ascending attnum */
	e->ncols = bitmap_count(cols);
	e->cols = palloc(sizeof(AttrNumber) * e->ncols);
	e->coltypes = palloc(sizeof(Oid) * e->ncols);
	for (i = 1, j = 0; i <= e->tupdesc->natts; i++)
	{
		if (BIT_ISSET(cols, i))
		{
			e->cols[j] = i;
			e->coltypes[j] = TupleDescAttr(e->tupdesc, i - 1)->atttypid;
			j++;
		}
	}

	e->indexoid = upsert_choose_index(e, rel, keycols);
	upsert_build_keys(e, rel);
	upsert_build_populate(e);

	e->alltext = true;
	for (j = 0; j < e->ncols; j++)
		if (e->coltypes[j] != TEXTOID)
			e->alltext = false;

	/* jsonb orders an object's keys by length, then bytewise */
	e->keypos = palloc0(sizeof(int) * e->ncols);
	for (j = 0; j < e->ncols; j++)
	{
		const char *a = NameStr(TupleDescAttr(e->tupdesc, e->cols[j] - 1)->attname);
		size_t		alen = strlen(a);
		int			m;

		for (m = 0; m < e->ncols; m++)
		{
			const char *b = NameStr(TupleDescAttr(e->tupdesc, e->cols[m] - 1)->attname);
			size_t		blen = strlen(b);

			if (blen < alen || (blen == alen && memcmp(b, a, alen) < 0))
				e->keypos[j]++;
		}
	}

	/* array types, for the batch INSERT's unnest() parameters */
	e->arrays_ok = true;
	e->colarray = palloc(sizeof(Oid) * e->ncols);
	e->coltyplen = palloc(sizeof(int16) * e->ncols);
	e->coltypbyval = palloc(sizeof(bool) * e->ncols);
	e->coltypalign = palloc(sizeof(char) * e->ncols);
	for (j = 0; j < e->ncols; j++)
	{
		e->colarray[j] = get_array_type(e->coltypes[j]);
		if (!OidIsValid(e->colarray[j]))
			e->arrays_ok = false;
		get_typlenbyvalalign(e->coltypes[j], &e->coltyplen[j],
							 &e->coltypbyval[j], &e->coltypalign[j]);
	}
	MemoryContextSwitchTo(old);
}

/*
 * Do two indexes on the same columns have, column by column, the same
 * collation and operator family (each would find the other's conflicts)?
 */
static bool
upsert_same_key_semantics(HeapTuple a, HeapTuple b)
{
	Form_pg_index ia = (Form_pg_index) GETSTRUCT(a);
	Form_pg_index ib = (Form_pg_index) GETSTRUCT(b);
	oidvector  *acoll,
			   *bcoll,
			   *aclass,
			   *bclass;
	bool		isnull;
	int			i,
				j;

	acoll = (oidvector *) DatumGetPointer(SysCacheGetAttr(INDEXRELID, a, Anum_pg_index_indcollation, &isnull));
	bcoll = (oidvector *) DatumGetPointer(SysCacheGetAttr(INDEXRELID, b, Anum_pg_index_indcollation, &isnull));
	aclass = (oidvector *) DatumGetPointer(SysCacheGetAttr(INDEXRELID, a, Anum_pg_index_indclass, &isnull));
	bclass = (oidvector *) DatumGetPointer(SysCacheGetAttr(INDEXRELID, b, Anum_pg_index_indclass, &isnull));
	for (i = 0; i < ia->indnkeyatts; i++)
	{
		for (j = 0; j < ib->indnkeyatts; j++)
			if (ib->indkey.values[j] == ia->indkey.values[i])
				break;
		if (j == ib->indnkeyatts ||
			acoll->values[i] != bcoll->values[j] ||
			get_opclass_family(aclass->values[i]) != get_opclass_family(bclass->values[j]))
			return false;
	}
	return true;
}

/*
 * The arbiter index: the one valid, non-partial, non-expression,
 * non-deferrable unique index whose columns are all given (or exactly
 * key_cols); 42P10 for none or several.
 */
static Oid
upsert_choose_index(UpsertEntry *e, Relation rel, const uint64 *keycols)
{
	const uint64 *cols = e->key.cols;
	bool		infer = bitmap_empty(keycols);
	List	   *indexes;
	ListCell   *lc;
	Oid			chosen = InvalidOid;
	HeapTuple	chosen_tup;
	uint64		chosen_bits[UPSERT_COLWORDS];
	int			ncandidates = 0;
	HeapTuple	itup;
	Form_pg_index ind;
	int			j;

	memset(chosen_bits, 0, sizeof(chosen_bits));
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		Oid			indexoid = lfirst_oid(lc);
		uint64		bits[UPSERT_COLWORDS];
		bool		ok = true;

		itup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
		if (!HeapTupleIsValid(itup))
			elog(ERROR, "cache lookup failed for index %u", indexoid);
		ind = (Form_pg_index) GETSTRUCT(itup);
		if (!ind->indisunique || !ind->indisvalid || !ind->indisready ||
			!ind->indislive || !ind->indimmediate ||
			!heap_attisnull(itup, Anum_pg_index_indexprs, NULL) ||
			!heap_attisnull(itup, Anum_pg_index_indpred, NULL))
		{
			ReleaseSysCache(itup);
			continue;
		}
		memset(bits, 0, sizeof(bits));
		for (j = 0; j < ind->indnkeyatts; j++)
		{
			AttrNumber	att = ind->indkey.values[j];

			if (att <= 0)
				ok = false;
			else
				BIT_SET(bits, att);
		}
		ReleaseSysCache(itup);
		if (!ok)
			continue;
		if (infer)
		{
			for (j = 0; j < UPSERT_COLWORDS; j++)
				if ((bits[j] & ~cols[j]) != 0)
					ok = false;
		}
		else
			ok = memcmp(bits, keycols, sizeof(bits)) == 0;
		if (!ok)
			continue;
		/* several indexes on the same columns are one candidate */
		if (OidIsValid(chosen) && memcmp(bits, chosen_bits, sizeof(bits)) == 0)
			continue;
		ncandidates++;
		if (!OidIsValid(chosen))
		{
			chosen = indexoid;
			memcpy(chosen_bits, bits, sizeof(bits));
		}
	}

	if (ncandidates == 0 && infer)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_COLUMN_REFERENCE),
				 errmsg("there is no unique index on table \"%s\" whose columns are all given in vals",
						e->relmsg),
				 errdetail("Unique indexes of the table: %s.", upsert_index_list(rel, false)),
				 errhint("Give every column of one valid, non-partial, non-expression, non-deferrable unique index of table \"%s\" in vals, or create such an index.",
						 e->relmsg)));
	if (ncandidates == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_COLUMN_REFERENCE),
				 errmsg("there is no unique index on table \"%s\" matching key_cols",
						e->relmsg),
				 errdetail("Usable unique indexes of the table: %s.", upsert_index_list(rel, true)),
				 errhint("Name exactly the columns of one valid, non-partial, non-expression, non-deferrable unique index of table \"%s\" in key_cols.",
						 e->relmsg)));
	if (ncandidates > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_COLUMN_REFERENCE),
				 errmsg("more than one unique index on table \"%s\" matches the columns given in vals",
						e->relmsg),
				 errdetail("Matching unique indexes: %s.", upsert_index_list(rel, true)),
				 errhint("Pass key_cols to say which columns identify the row in table \"%s\".",
						 e->relmsg)));

	/*
	 * Every other valid unique index on the key's columns, deferrable ones
	 * included, is a twin: ON CONFLICT (cols) would take it as an arbiter
	 * too, so the statements name the key index's collation and operator
	 * class (keytwins).  A deferrable twin with the same ones stays an
	 * arbiter, and ON CONFLICT refuses deferrable arbiters: remembered, and
	 * refused when a row is to be inserted (hits still work).
	 */
	chosen_tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(chosen));
	if (!HeapTupleIsValid(chosen_tup))
		elog(ERROR, "cache lookup failed for index %u", chosen);
	foreach(lc, indexes)
	{
		Oid			indexoid = lfirst_oid(lc);
		uint64		bits[UPSERT_COLWORDS];
		bool		twin;

		if (indexoid == chosen)
			continue;
		itup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
		if (!HeapTupleIsValid(itup))
			elog(ERROR, "cache lookup failed for index %u", indexoid);
		ind = (Form_pg_index) GETSTRUCT(itup);
		twin = ind->indisunique && ind->indisvalid &&
			heap_attisnull(itup, Anum_pg_index_indexprs, NULL) &&
			heap_attisnull(itup, Anum_pg_index_indpred, NULL);
		memset(bits, 0, sizeof(bits));
		for (j = 0; twin && j < ind->indnkeyatts; j++)
			BIT_SET(bits, ind->indkey.values[j]);
		if (twin && memcmp(bits, chosen_bits, sizeof(bits)) == 0)
		{
			e->keytwins = true;
			if (!ind->indimmediate && !OidIsValid(e->deferrable_twin) &&
				upsert_same_key_semantics(chosen_tup, itup))
				e->deferrable_twin = indexoid;
		}
		ReleaseSysCache(itup);
	}
	ReleaseSysCache(chosen_tup);

	return chosen;
}

/* The key columns of the arbiter index, with its operators and collation. */
static void
upsert_build_keys(UpsertEntry *e, Relation rel)
{
	Oid			chosen = e->indexoid;
	HeapTuple	itup;
	Form_pg_index ind;
	oidvector  *indclass;
	oidvector  *indcoll;
	Datum		d;
	bool		isnull;
	int			i,
				j;

	itup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(chosen));
	if (!HeapTupleIsValid(itup))
		elog(ERROR, "cache lookup failed for index %u", chosen);
	ind = (Form_pg_index) GETSTRUCT(itup);
	e->nulls_not_distinct = ind->indnullsnotdistinct;
	e->nkeys = ind->indnkeyatts;
	e->keyparam = palloc(sizeof(int) * e->nkeys);
	e->keyeq = palloc(sizeof(char *) * e->nkeys);
	e->keycast = palloc(sizeof(char *) * e->nkeys);
	e->keylt = palloc(sizeof(char *) * e->nkeys);
	e->keycoll = palloc(sizeof(char *) * e->nkeys);
	e->keytarget = palloc(sizeof(char *) * e->nkeys);
	e->keyproc = palloc(sizeof(RegProcedure) * e->nkeys);
	e->keyltop = palloc(sizeof(Oid) * e->nkeys);
	e->keyeqfn = palloc(sizeof(FmgrInfo) * e->nkeys);
	e->keyindcoll = palloc(sizeof(Oid) * e->nkeys);
	e->plain = rel->rd_rel->relkind == RELKIND_RELATION && !rel->rd_rel->relhassubclass;
	d = SysCacheGetAttr(INDEXRELID, itup, Anum_pg_index_indclass, &isnull);
	Assert(!isnull);
	indclass = (oidvector *) DatumGetPointer(d);
	d = SysCacheGetAttr(INDEXRELID, itup, Anum_pg_index_indcollation, &isnull);
	Assert(!isnull);
	indcoll = (oidvector *) DatumGetPointer(d);
	for (i = 0; i < e->nkeys; i++)
	{
		AttrNumber	att = ind->indkey.values[i];
		Oid			opfamily = get_opclass_family(indclass->values[i]);
		Oid			opcintype = get_opclass_input_type(indclass->values[i]);
		Oid			eq = get_opfamily_member(opfamily, opcintype, opcintype,
											 BTEqualStrategyNumber);
		Oid			lt = get_opfamily_member(opfamily, opcintype, opcintype,
											 BTLessStrategyNumber);

		if (!OidIsValid(eq) || !OidIsValid(lt))
			ereport(ERROR,
					(errcode(ERRCODE_WRONG_OBJECT_TYPE),
					 errmsg("unique index \"%s\" of table \"%s\" is not a btree index",
							get_rel_name(chosen), e->relmsg),
					 errhint("Use a btree unique index as the key of table \"%s\".", e->relmsg)));
		e->keyeq[i] = operator_sql(eq);
		e->keycast[i] = cast_sql(TupleDescAttr(e->tupdesc, att - 1)->atttypid,
								 opcintype);
		e->keyproc[i] = get_opcode(eq);
		fmgr_info_cxt(e->keyproc[i], &e->keyeqfn[i], e->cxt);
		e->keyindcoll[i] = indcoll->values[i];
		e->keyltop[i] = lt;
		e->keylt[i] = operator_sql(lt);
		/*
		 * Compare keys under the index's collation, as ON CONFLICT and the
		 * direct probe do: with a nondeterministic collation that differs
		 * from the column's, the column's would find a different row, or
		 * none.
		 */
		if (OidIsValid(indcoll->values[i]) &&
			indcoll->values[i] != TupleDescAttr(e->tupdesc, att - 1)->attcollation)
			e->keycoll[i] = psprintf(" COLLATE %s",
									 catalog_name_sql(COLLOID, indcoll->values[i]));
		else
			e->keycoll[i] = "";

		/*
		 * ON CONFLICT (col) takes every unique index on col as an arbiter,
		 * whatever its collation or operator class: a conflict in another
		 * one (say a case-insensitive index on the same column) would be
		 * skipped, yet never found under the key's equality.  When the
		 * table has such a twin, naming the collation and the operator
		 * class leaves only the chosen index (and its exact twins), and a
		 * conflict in any other unique index raises 23505, as for any
		 * other column.  Only then: the names need USAGE on their schemas,
		 * which a plain INSERT does not.
		 */
		if (e->keytwins)
			e->keytarget[i] = psprintf("%s%s%s %s", colname(e, att),
									   OidIsValid(indcoll->values[i]) ? " COLLATE " : "",
									   OidIsValid(indcoll->values[i])
									   ? catalog_name_sql(COLLOID, indcoll->values[i]) : "",
									   catalog_name_sql(CLAOID, indclass->values[i]));
		else
			e->keytarget[i] = pstrdup(colname(e, att));
		e->keyparam[i] = -1;
		for (j = 0; j < e->ncols; j++)
			if (e->cols[j] == att)
				e->keyparam[i] = j;
		if (e->keyparam[i] < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("key column \"%s\" is not given in vals",
							NameStr(TupleDescAttr(e->tupdesc, att - 1)->attname)),
					 errhint("Every key column of table \"%s\" needs a value in vals.", e->relmsg)));
	}
	ReleaseSysCache(itup);
}

/* Does a value of this type contain composite values (a domain's base, an array's elements)? */
static bool
type_holds_composite(Oid typid)
{
	Oid			base = getBaseType(typid);
	Oid			elem;

	if (type_is_rowtype(base))
		return true;
	elem = get_element_type(base);
	return OidIsValid(elem) && type_holds_composite(elem);
}

/* jsonb_populate_record(rowtype, jsonb) with a call expression. */
static void
upsert_build_populate(UpsertEntry *e)
{
	int			i;
	Datum	   *nullvals;
	bool	   *nullflags;
	HeapTuple	empty;
	FuncExpr   *fexpr;

	fmgr_info_cxt(F_JSONB_POPULATE_RECORD, &e->populate, e->cxt);

	/*
	 * jsonb_populate_record keeps, in fn_extra, the layout of each composite
	 * type it fills, and notices a change of type, not an ALTER TYPE of the
	 * same one (ADD, DROP or RENAME ATTRIBUTE), which invalidates nothing
	 * of the table.  For a table with such a column, each call starts from
	 * a copy of populate without that cache.
	 */
	for (i = 0; i < e->tupdesc->natts; i++)
		if (!TupleDescAttr(e->tupdesc, i)->attisdropped &&
			type_holds_composite(TupleDescAttr(e->tupdesc, i)->atttypid))
			e->populate_percall = true;
	fexpr = makeFuncExpr(F_JSONB_POPULATE_RECORD, e->rowtype,
						 list_make2(makeNullConst(e->rowtype, -1, InvalidOid),
									makeNullConst(JSONBOID, -1, InvalidOid)),
						 InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
	fmgr_info_set_expr((Node *) fexpr, &e->populate);

	nullvals = palloc0(sizeof(Datum) * e->tupdesc->natts);
	nullflags = palloc(sizeof(bool) * e->tupdesc->natts);
	memset(nullflags, true, sizeof(bool) * e->tupdesc->natts);
	empty = heap_form_tuple(e->tupdesc, nullvals, nullflags);
	e->emptyrow = heap_copy_tuple_as_datum(empty, e->tupdesc);
}

/* ---------------------------------------------------------------------
 * Citus (see "Citus" in the header)
 * --------------------------------------------------------------------- */

/*
 * Decided once per entry: is the table one Citus manages (local, reference
 * or distributed)?  Then the statements name every column instead of the
 * whole row (Citus deparses a whole-row reference with the shard's name on
 * the node that runs it), and the direct index probe is never used (it
 * would read this node's shell table, not the shards).
 */
static void
upsert_build_citus(UpsertEntry *e)
{
	int			i;

	e->citus = idem_citus_table_kind(e->relid) != IDEM_CITUS_NONE;
	e->rowcols = 1;
	if (!e->citus)
		return;
	e->rowcols = 0;
	for (i = 0; i < e->tupdesc->natts; i++)
		if (!TupleDescAttr(e->tupdesc, i)->attisdropped)
			e->rowcols++;
}

/*
 * Per call on a Citus table: refuse what cannot be right there, before
 * anything is read or written.
 */
static void
upsert_citus_check(UpsertEntry *e, const char *fname)
{
	const char *app = GetConfigOption("application_name", true, false);

	/*
	 * A connection Citus opened to run part of a distributed query (a shard
	 * query calling this function, pushed down): a nested distributed
	 * statement from there would not belong to the caller's distributed
	 * transaction.
	 */
	if (app != NULL && strncmp(app, "citus_internal", 14) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s cannot run inside a query that Citus runs on a shard", fname),
				 errdetail("Table \"%s\" is a %s; this call came over a Citus internal connection.",
						   e->relmsg, idem_citus_kind_name(idem_citus_table_kind(e->relid))),
				 errhint("Call %s at the top level of a statement (SELECT %s(...)), not from a query over a distributed table.",
						 fname, fname)));

	/*
	 * Row level security: the checks that tell a row hidden by a policy from
	 * a concurrent delete read system columns as the table owner, which
	 * Citus does not carry over to the shards.
	 */
	if (check_enable_rls(e->relid, InvalidOid, true) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s does not support row level security on Citus table \"%s\"",
						fname, e->relmsg),
				 errdetail("Row level security applies to role \"%s\" on this %s.",
						   GetUserNameFromId(GetUserId(), false),
						   idem_citus_kind_name(idem_citus_table_kind(e->relid))),
				 errhint("Call %s as a role that bypasses row level security on table \"%s\", or disable it there.",
						 fname, e->relmsg)));
}

/* The row in a select list: "alias", or "alias.c1, alias.c2, ..." on Citus. */
static void
append_row(StringInfo buf, UpsertEntry *e, const char *alias)
{
	int			i;
	bool		first = true;

	if (!e->citus)
	{
		appendStringInfoString(buf, alias);
		return;
	}
	for (i = 0; i < e->tupdesc->natts; i++)
	{
		if (TupleDescAttr(e->tupdesc, i)->attisdropped)
			continue;
		appendStringInfo(buf, "%s%s.%s", first ? "" : ", ", alias, colname(e, i + 1));
		first = false;
	}
}

/*
 * The row from a result tuple whose columns first .. first + rowcols - 1
 * are what append_row() listed: that column, or a row formed from the
 * columns (dropped ones NULL) in the current memory context.
 */
static Datum
upsert_result_row(UpsertEntry *e, HeapTuple tup, TupleDesc desc, int first)
{
	Datum	   *values;
	bool	   *isnull;
	HeapTuple	row;
	Datum		res;
	int			i,
				c;

	if (!e->citus)
	{
		bool		null;

		return SPI_getbinval(tup, desc, first, &null);
	}
	values = palloc0(sizeof(Datum) * e->tupdesc->natts);
	isnull = palloc(sizeof(bool) * e->tupdesc->natts);
	for (i = 0, c = first; i < e->tupdesc->natts; i++)
	{
		if (TupleDescAttr(e->tupdesc, i)->attisdropped)
		{
			isnull[i] = true;
			continue;
		}
		values[i] = SPI_getbinval(tup, desc, c++, &isnull[i]);
	}
	row = heap_form_tuple(e->tupdesc, values, isnull);
	/* flattens any TOAST pointer, as a row datum must */
	res = heap_copy_tuple_as_datum(row, e->tupdesc);
	heap_freetuple(row);
	pfree(values);
	pfree(isnull);
	return res;
}

/* ---------------------------------------------------------------------
 * SQL generation
 * --------------------------------------------------------------------- */

static const char *
colname(UpsertEntry *e, AttrNumber att)
{
	return quote_identifier(NameStr(TupleDescAttr(e->tupdesc, att - 1)->attname));
}

/*
 * An alias for the table that is not one of its column names, so that a
 * bare alias is a whole-row reference.
 */
static const char *
row_alias(UpsertEntry *e)
{
	static char buf[NAMEDATALEN];
	int			n = 0;
	int			i;
	bool		clash;

	do
	{
		snprintf(buf, sizeof(buf), n == 0 ? "idem_row" : "idem_row%d", n);
		clash = false;
		for (i = 0; i < e->tupdesc->natts; i++)
			if (!TupleDescAttr(e->tupdesc, i)->attisdropped &&
				strcmp(NameStr(TupleDescAttr(e->tupdesc, i)->attname), buf) == 0)
				clash = true;
		n++;
	} while (clash);
	return buf;
}

/* "a.k1 = $1 AND a.k2 IS NULL ..." */
/*
 * "a is NULL" (b NULL), or "a and b are both NULL", for values of type
 * typid.  IS NULL of a composite value is also true for a row of null
 * fields, which is another value: for those, count the null values.
 */
static char *
sql_all_null(Oid typid, const char *a, const char *b)
{
	if (type_is_rowtype(typid))
		return b == NULL
			? psprintf("pg_catalog.num_nulls(%s) OPERATOR(pg_catalog.=) 1", a)
			: psprintf("pg_catalog.num_nulls(%s, %s) OPERATOR(pg_catalog.=) 2", a, b);
	return b == NULL
		? psprintf("%s IS NULL", a)
		: psprintf("%s IS NULL AND %s IS NULL", a, b);
}

static void
append_key_match(StringInfo buf, UpsertEntry *e, const char *alias, uint32 nullmask)
{
	int			i;

	for (i = 0; i < e->nkeys; i++)
	{
		AttrNumber	att = e->cols[e->keyparam[i]];

		if (i > 0)
			appendStringInfoString(buf, " AND ");
		if (nullmask & (((uint32) 1) << i))
			appendStringInfoString(buf,
								   sql_all_null(TupleDescAttr(e->tupdesc, att - 1)->atttypid,
												psprintf("%s.%s", alias, colname(e, att)),
												NULL));
		else
			appendStringInfo(buf, "%s.%s%s %s $%d%s%s", alias, colname(e, att),
							 e->keycast[i], e->keyeq[i], e->keyparam[i] + 1,
							 e->keycast[i], e->keycoll[i]);
	}
}

static bool
is_key(UpsertEntry *e, int colidx)
{
	int			i;

	for (i = 0; i < e->nkeys; i++)
		if (e->keyparam[i] == colidx)
			return true;
	return false;
}

/*
 * "(a.c1 differs from $1) OR ..." for the non-key columns, or "false".
 * Equality is the type's default equality operator; a type without one
 * (json, point, xml ...) is compared by its text form.
 */
static void
append_differs(StringInfo buf, UpsertEntry *e, const char *alias)
{
	int			j;
	bool		any = false;

	for (j = 0; j < e->ncols; j++)
	{
		TypeCacheEntry *tc;
		const char *c = colname(e, e->cols[j]);
		char	   *bothnull;

		if (is_key(e, j))
			continue;
		if (any)
			appendStringInfoString(buf, " OR ");
		any = true;

		bothnull = sql_all_null(e->coltypes[j], psprintf("%s.%s", alias, c),
								psprintf("$%d", j + 1));
		tc = lookup_type_cache(e->coltypes[j], TYPECACHE_EQ_OPR);
		if (OidIsValid(tc->eq_opr))
		{
			Oid			left,
						right;

			op_input_types(tc->eq_opr, &left, &right);
			appendStringInfo(buf,
							 "((%s.%s%s %s $%d%s) IS NOT TRUE AND NOT (%s))",
							 alias, c, cast_sql(e->coltypes[j], left),
							 operator_sql(tc->eq_opr), j + 1,
							 cast_sql(e->coltypes[j], right), bothnull);
		}
		else
			appendStringInfo(buf,
							 "((CAST(%s.%s AS pg_catalog.text) OPERATOR(pg_catalog.=) CAST($%d AS pg_catalog.text)) IS NOT TRUE"
							 " AND NOT (%s))",
							 alias, c, j + 1, bothnull);
	}
	if (!any)
		appendStringInfoString(buf, "false");
}

/*
 * "alias.k1 = (s.r).k1 AND ..." (alias given) or "i.k_0 = (s.r).k1 AND ..."
 * (alias NULL: the RETURNING columns of the batch INSERT).
 */
static void
append_batch_key_join(StringInfo buf, UpsertEntry *e, const char *alias)
{
	int			i;

	for (i = 0; i < e->nkeys; i++)
	{
		const char *c = colname(e, e->cols[e->keyparam[i]]);
		char	   *lhs = alias ? psprintf("%s.%s", alias, c) : psprintf("i.k_%d", i);

		if (i > 0)
			appendStringInfoString(buf, " AND ");
		if (e->nulls_not_distinct)
			appendStringInfo(buf, "(%s%s %s (s.r).%s%s%s OR (%s))",
							 lhs, e->keycast[i], e->keyeq[i], c, e->keycast[i],
							 e->keycoll[i],
							 sql_all_null(TupleDescAttr(e->tupdesc, e->cols[e->keyparam[i]] - 1)->atttypid,
										  lhs, psprintf("(s.r).%s", c)));
		else
			appendStringInfo(buf, "%s%s %s (s.r).%s%s%s", lhs, e->keycast[i],
							 e->keyeq[i], c, e->keycast[i], e->keycoll[i]);
	}
}

/* "a.c1, a.c2, ...": every column of the table (not dropped), in order. */
static void
append_returning_cols(StringInfo buf, UpsertEntry *e, const char *alias)
{
	int			i;
	bool		any = false;

	for (i = 0; i < e->tupdesc->natts; i++)
	{
		if (TupleDescAttr(e->tupdesc, i)->attisdropped)
			continue;
		appendStringInfo(buf, "%s%s.%s", any ? ", " : "", alias, colname(e, i + 1));
		any = true;
	}
}

static char *
upsert_sql(UpsertEntry *e, UpsertStmt stmt, uint32 nullmask)
{
	StringInfoData buf;
	const char *a = row_alias(e);
	char	   *alias = pstrdup(a);
	int			i,
				j;

	initStringInfo(&buf);
	switch (stmt)
	{
		case STMT_SELECT:
			/* column 2: would update_or_create have to change it? */
			appendStringInfoString(&buf, "SELECT ");
			append_row(&buf, e, alias);
			appendStringInfoString(&buf, ", ");
			if (e->key.op == UPSERT_UPDATE)
				append_differs(&buf, e, alias);
			else
				appendStringInfoString(&buf, "false");
			appendStringInfo(&buf, " FROM %s AS %s WHERE ", e->relname, alias);
			append_key_match(&buf, e, alias, nullmask);
			break;
		case STMT_PROBE:
			appendStringInfo(&buf, "SELECT %s.tableoid, %s.ctid, %s.xmin FROM %s AS %s WHERE ",
							 alias, alias, alias, e->relname, alias);
			append_key_match(&buf, e, alias, nullmask);
			break;
		case STMT_INSERT:
			appendStringInfo(&buf, "INSERT INTO %s AS %s (", e->relname, alias);
			for (j = 0; j < e->ncols; j++)
				appendStringInfo(&buf, "%s%s", j > 0 ? ", " : "", colname(e, e->cols[j]));
			appendStringInfoString(&buf, ") VALUES (");
			for (j = 0; j < e->ncols; j++)
				appendStringInfo(&buf, "%s$%d", j > 0 ? ", " : "", j + 1);
			appendStringInfoString(&buf, ") ON CONFLICT (");
			for (i = 0; i < e->nkeys; i++)
				appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "", e->keytarget[i]);
			/* column 2: does the row still have the key asked for? */
			appendStringInfoString(&buf, ") DO NOTHING RETURNING ");
			append_row(&buf, e, alias);
			appendStringInfoString(&buf, ", ");
			append_key_match(&buf, e, alias, nullmask);
			break;
		case STMT_UPDATE:
			appendStringInfo(&buf, "UPDATE %s AS %s SET ", e->relname, alias);
			for (j = 0, i = 0; j < e->ncols; j++)
			{
				if (is_key(e, j))
					continue;
				appendStringInfo(&buf, "%s%s = $%d", i++ > 0 ? ", " : "",
								 colname(e, e->cols[j]), j + 1);
			}
			appendStringInfoString(&buf, " WHERE ");
			append_key_match(&buf, e, alias, nullmask);
			appendStringInfoString(&buf, " AND (");
			append_differs(&buf, e, alias);
			appendStringInfoString(&buf, ") RETURNING ");
			append_row(&buf, e, alias);
			/* as for STMT_INSERT: does the row still have the key? */
			appendStringInfoString(&buf, ", ");
			append_key_match(&buf, e, alias, nullmask);
			break;
		case STMT_MANY_ORDER:
			/* Citus batches: the ordinals $3 in key order (no table read) */
			appendStringInfoString(&buf,
								   "SELECT w.o FROM pg_catalog.unnest($3) AS w(o) ORDER BY ");
			for (i = 0; i < e->nkeys; i++)
				appendStringInfo(&buf,
								 "(pg_catalog.jsonb_populate_record($2, $1 OPERATOR(pg_catalog.->) "
								 "CAST(w.o OPERATOR(pg_catalog.-) 1 AS pg_catalog.int4))).%s%s%s USING %s, ",
								 colname(e, e->cols[e->keyparam[i]]),
								 e->keycast[i], e->keycoll[i], e->keylt[i]);
			appendStringInfoString(&buf, "w.o");
			break;
		case STMT_MANY_SELECT:
		case STMT_MANY_INSERT:
			/* $1 jsonb array, $2 empty row, $3 int8[] ordinals wanted */
			/* element o of $1 is $1 -> (o - 1): linear, not a join */
			appendStringInfoString(&buf,
								   "WITH s AS MATERIALIZED (SELECT w.o AS o, "
								   "pg_catalog.jsonb_populate_record($2, $1 OPERATOR(pg_catalog.->) "
								   "CAST(w.o OPERATOR(pg_catalog.-) 1 AS pg_catalog.int4)) AS r "
								   "FROM pg_catalog.unnest($3) AS w(o))");
			if (stmt == STMT_MANY_SELECT)
			{
				appendStringInfo(&buf, " SELECT s.o, %s FROM s JOIN %s AS %s ON ",
								 alias, e->relname, alias);
				append_batch_key_join(&buf, e, alias);
				break;
			}
			appendStringInfo(&buf, ", i AS (INSERT INTO %s AS %s (", e->relname, alias);
			for (j = 0; j < e->ncols; j++)
				appendStringInfo(&buf, "%s%s", j > 0 ? ", " : "", colname(e, e->cols[j]));
			appendStringInfoString(&buf, ") SELECT DISTINCT ON (");
			for (i = 0; i < e->nkeys; i++)
				appendStringInfo(&buf, "%s(s.r).%s%s%s", i > 0 ? ", " : "",
								 colname(e, e->cols[e->keyparam[i]]),
								 e->keycast[i], e->keycoll[i]);
			appendStringInfoString(&buf, ") ");
			for (j = 0; j < e->ncols; j++)
				appendStringInfo(&buf, "%s(s.r).%s", j > 0 ? ", " : "", colname(e, e->cols[j]));
			appendStringInfoString(&buf, " FROM s ORDER BY ");
			for (i = 0; i < e->nkeys; i++)
				appendStringInfo(&buf, "(s.r).%s%s%s USING %s, ",
								 colname(e, e->cols[e->keyparam[i]]),
								 e->keycast[i], e->keycoll[i], e->keylt[i]);
			appendStringInfoString(&buf, "s.o ON CONFLICT (");
			for (i = 0; i < e->nkeys; i++)
				appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "", e->keytarget[i]);
			appendStringInfo(&buf, ") DO NOTHING RETURNING %s AS r", alias);
			for (i = 0; i < e->nkeys; i++)
				appendStringInfo(&buf, ", %s.%s AS k_%d", alias,
								 colname(e, e->cols[e->keyparam[i]]), i);
			appendStringInfoString(&buf, ") SELECT s.o, i.r FROM s JOIN i ON ");
			append_batch_key_join(&buf, e, NULL);
			break;
		case STMT_MANY_UNNEST:
		case STMT_MANY_PLAIN:

			/*
			 * $1 ... $n: one array per present column, the distinct new keys
			 * in the index's order; inserted in that order, the table's
			 * columns returned by name.  STMT_MANY_PLAIN is the same INSERT
			 * without ON CONFLICT (run in a subtransaction, see
			 * batch_insert_plain).
			 */
			appendStringInfo(&buf, "INSERT INTO %s AS %s (", e->relname, alias);
			for (j = 0; j < e->ncols; j++)
				appendStringInfo(&buf, "%s%s", j > 0 ? ", " : "", colname(e, e->cols[j]));
			appendStringInfoString(&buf, ") SELECT ");
			for (j = 0; j < e->ncols; j++)
				appendStringInfo(&buf, "%su.v%d", j > 0 ? ", " : "", j + 1);
			appendStringInfoString(&buf, " FROM ROWS FROM (");
			for (j = 0; j < e->ncols; j++)
				appendStringInfo(&buf, "%spg_catalog.unnest($%d)", j > 0 ? ", " : "", j + 1);
			appendStringInfoString(&buf, ") WITH ORDINALITY AS u(");
			for (j = 0; j < e->ncols; j++)
				appendStringInfo(&buf, "v%d, ", j + 1);
			appendStringInfoString(&buf, "o) ORDER BY u.o");
			if (stmt == STMT_MANY_UNNEST)
			{
				appendStringInfoString(&buf, " ON CONFLICT (");
				for (i = 0; i < e->nkeys; i++)
					appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "", e->keytarget[i]);
				appendStringInfoString(&buf, ") DO NOTHING");
			}
			appendStringInfoString(&buf, " RETURNING ");
			append_returning_cols(&buf, e, alias);
			break;
		default:
			elog(ERROR, "unexpected statement %d", (int) stmt);
	}
	return buf.data;
}

/* ---------------------------------------------------------------------
 * Execution
 * --------------------------------------------------------------------- */

/*
 * Run one statement of the entry; the kept plan when no key is NULL, a
 * one-off plan otherwise (NULLS NOT DISTINCT keys match with IS NULL).
 */
static int
upsert_exec(UpsertEntry *e, UpsertStmt stmt, uint32 nullmask, Datum *values,
			const char *nulls, long count)
{
	SPIPlanPtr	plan;
	int			nargs;
	Oid			batchtypes[3];
	Oid		   *argtypes;
	int			rc;

	if (OidIsValid(e->deferrable_twin) &&
		(stmt == STMT_INSERT || stmt == STMT_MANY_INSERT ||
		 stmt == STMT_MANY_UNNEST || stmt == STMT_MANY_PLAIN))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot insert into table \"%s\": deferrable unique index \"%s\" has the key's columns",
						e->relmsg, get_rel_name(e->deferrable_twin)),
				 errdetail("INSERT ... ON CONFLICT takes every unique index on the key's columns with the key's collation and operator class as an arbiter, and does not support deferrable ones."),
				 errhint("Make that constraint NOT DEFERRABLE, or key table \"%s\" on other columns.",
						 e->relmsg)));

	if (stmt == STMT_MANY_UNNEST || stmt == STMT_MANY_PLAIN)
	{
		argtypes = e->colarray;
		nargs = e->ncols;
	}
	else if (stmt == STMT_MANY_SELECT || stmt == STMT_MANY_INSERT ||
			 stmt == STMT_MANY_ORDER)
	{
		batchtypes[0] = JSONBOID;
		batchtypes[1] = e->rowtype;
		batchtypes[2] = INT8ARRAYOID;
		argtypes = batchtypes;
		nargs = 3;
	}
	else
	{
		argtypes = e->coltypes;
		nargs = e->ncols;
	}

	if (nullmask != 0)
	{
		plan = SPI_prepare(upsert_sql(e, stmt, nullmask), nargs, argtypes);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		rc = SPI_execute_plan(plan, values, nulls, false, count);
		SPI_freeplan(plan);
	}
	else
	{
		if (e->plan[stmt] == NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(e->cxt);

			e->sql[stmt] = upsert_sql(e, stmt, 0);
			MemoryContextSwitchTo(old);
			plan = SPI_prepare(e->sql[stmt], nargs, argtypes);
			if (plan == NULL)
				elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
			SPI_keepplan(plan);
			e->plan[stmt] = plan;
		}
		rc = SPI_execute_plan(e->plan[stmt], values, nulls, false, count);
	}
	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
	return (int) SPI_processed;
}

/*
 * Look the key up with row level security off, as the table owner (like
 * the RI triggers do): which tuple holds this key now?
 */
static UpsertProbe
upsert_probe(UpsertEntry *e, uint32 nullmask, Datum *values, const char *nulls)
{
	UpsertProbe res;
	Oid			save_userid;
	int			save_sec;
	int			guc_level;
	SPIPlanPtr	plan;
	bool		isnull;

	memset(&res, 0, sizeof(res));
	GetUserIdAndSecContext(&save_userid, &save_sec);
	/* as idem_spi_begin(): the owner's code resolves names safely */
	guc_level = idem_pin_search_path();
	SetUserIdAndSecContext(e->owner, save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION | SECURITY_NOFORCE_RLS);
	plan = SPI_prepare(upsert_sql(e, STMT_PROBE, nullmask), e->ncols, e->coltypes);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	if (SPI_execute_plan(plan, values, nulls, false, 1) < 0)
		elog(ERROR, "SPI_execute_plan failed");
	SPI_freeplan(plan);
	SetUserIdAndSecContext(save_userid, save_sec);
	AtEOXact_GUC(true, guc_level);
	if (SPI_processed > 0)
	{
		res.found = true;
		res.tableoid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc, 1, &isnull));
		ItemPointerCopy((ItemPointer) DatumGetPointer(SPI_getbinval(SPI_tuptable->vals[0],
														  SPI_tuptable->tupdesc, 2, &isnull)),
						&res.tid);
		res.xmin = DatumGetTransactionId(SPI_getbinval(SPI_tuptable->vals[0],
													   SPI_tuptable->tupdesc, 3, &isnull));
	}
	return res;
}

/*
 * The start of an object's data, after its children: its keys' entries,
 * then its values'.
 */
static inline const char *
jsonb_object_data(const JsonbContainer *jc)
{
	return (const char *) &jc->children[2 * JsonContainerSize(jc)];
}

/*
 * Where present column j's value is in object jc, when jc has exactly the
 * entry's keys (vals, or a batch element of the entry's group): jsonb keeps
 * an object's keys, in its order, before their values, so the column's key
 * is entry keypos[j] of jc and its value the entry npairs after.  That key
 * is checked, and the value's index in jc->children returned; -1 when jc
 * is not such an object (the caller looks the key up by name).
 */
static int
upsert_value_index(UpsertEntry *e, const JsonbContainer *jc, int j)
{
	const char *name = NameStr(TupleDescAttr(e->tupdesc, e->cols[j] - 1)->attname);
	uint32		npairs = JsonContainerSize(jc);
	int			k = e->keypos[j];
	uint32		len;

	if (!JsonContainerIsObject(jc) || npairs != (uint32) e->ncols)
		return -1;
	len = strlen(name);
	if (getJsonbLength(jc, k) != len ||
		memcmp(jsonb_object_data(jc) + getJsonbOffset(jc, k), name, len) != 0)
		return -1;
	return npairs + k;
}

/*
 * Where every present column is of type text and every value a JSON string
 * or null, what jsonb_populate_record makes of them without it: a string's
 * text (the server's textin of it), null's NULL.  False (values undefined)
 * otherwise.
 */
static bool
upsert_convert_text(UpsertEntry *e, Jsonb *vals, Datum *values, char *nulls)
{
	const JsonbContainer *jc = &vals->root;
	int			j;

	if (!e->alltext)
		return false;
	for (j = 0; j < e->ncols; j++)
	{
		const char *name = NameStr(TupleDescAttr(e->tupdesc, e->cols[j] - 1)->attname);
		int			idx = upsert_value_index(e, jc, j);
		JsonbValue	kv;
		JsonbValue *v;

		if (idx >= 0)
		{
			JEntry		je = jc->children[idx];

			if (JBE_ISNULL(je))
			{
				values[j] = (Datum) 0;
				nulls[j] = 'n';
				continue;
			}
			if (!JBE_ISSTRING(je))
				return false;
			values[j] = PointerGetDatum(cstring_to_text_with_len(jsonb_object_data(jc) +
																  getJsonbOffset(jc, idx),
																  getJsonbLength(jc, idx)));
			nulls[j] = ' ';
			continue;
		}

		kv.type = jbvString;
		kv.val.string.val = (char *) name;
		kv.val.string.len = strlen(name);
		v = findJsonbValueFromContainer(&vals->root, JB_FOBJECT, &kv);
		if (v == NULL)
			return false;
		if (v->type == jbvNull)
		{
			values[j] = (Datum) 0;
			nulls[j] = 'n';
		}
		else if (v->type == jbvString)
		{
			values[j] = PointerGetDatum(cstring_to_text_with_len(v->val.string.val,
																  v->val.string.len));
			nulls[j] = ' ';
		}
		else
			return false;
	}
	return true;
}

/*
 * Convert vals with jsonb_populate_record; values/nulls per present column
 * (SPI convention: ' ' or 'n').
 */
static void
upsert_convert(UpsertEntry *e, Jsonb *vals, Datum *values, char *nulls)
{
	Datum		row;
	HeapTupleHeader th;
	HeapTupleData tup;
	Datum	   *all;
	bool	   *allnull;
	int			j;

	if (upsert_convert_text(e, vals, values, nulls))
		return;
	all = palloc(sizeof(Datum) * e->tupdesc->natts);
	allnull = palloc(sizeof(bool) * e->tupdesc->natts);
	if (e->populate_percall)
	{
		/* its cache in a context of its own, gone with this element */
		FmgrInfo	fresh = e->populate;

		fresh.fn_mcxt = AllocSetContextCreate(CurrentMemoryContext,
											  "idempotency populate",
											  ALLOCSET_SMALL_SIZES);
		fresh.fn_extra = NULL;
		row = FunctionCall2(&fresh, e->emptyrow, JsonbPGetDatum(vals));
		MemoryContextDelete(fresh.fn_mcxt);
	}
	else
		row = FunctionCall2(&e->populate, e->emptyrow, JsonbPGetDatum(vals));
	th = DatumGetHeapTupleHeader(row);
	tup.t_len = HeapTupleHeaderGetDatumLength(th);
	ItemPointerSetInvalid(&tup.t_self);
	tup.t_tableOid = InvalidOid;
	tup.t_data = th;
	heap_deform_tuple(&tup, e->tupdesc, all, allnull);
	for (j = 0; j < e->ncols; j++)
	{
		values[j] = all[e->cols[j] - 1];
		nulls[j] = allnull[e->cols[j] - 1] ? 'n' : ' ';
	}
}

/* 22004 for a NULL key, unless NULLS NOT DISTINCT; returns the null mask. */
static uint32
upsert_check_keys(UpsertEntry *e, const char *nulls)
{
	uint32		mask = 0;
	int			i;

	for (i = 0; i < e->nkeys; i++)
	{
		if (nulls[e->keyparam[i]] != 'n')
			continue;
		if (!e->nulls_not_distinct)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("key column \"%s\" of table \"%s\" is null",
							NameStr(TupleDescAttr(e->tupdesc, e->cols[e->keyparam[i]] - 1)->attname), e->relmsg),
					 errdetail("A unique index treats NULLs as distinct, so a NULL key would insert a new row on every call."),
					 errhint("Give a non-null value for every key column, or make the unique index of table \"%s\" NULLS NOT DISTINCT.",
							 e->relmsg)));
		if (i >= 32)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("null key values are supported in the first 32 key columns only")));
		mask |= ((uint32) 1) << i;
	}
	return mask;
}

/*
 * The hit path without the executor: look the key up in the arbiter index
 * directly, with a fresh snapshot, exactly as the SELECT would.  Only where
 * that is the same thing as the SELECT: a plain table without inheritance
 * children (the SELECT would scan those too), SELECT privilege on the whole
 * table, no row level security for this user, not SERIALIZABLE (the SELECT's
 * predicate locks), no NULL key, no virtual generated column (PostgreSQL
 * 18: the heap tuple lacks its value), and only for the first look (idempotent_upsert,
 * get_or_create and batches).  After a miss the SQL path runs from the
 * INSERT on (the probe stood for its first SELECT).
 */
static bool
upsert_direct_ok(UpsertEntry *e, Relation rel, UpsertOp op)
{
	if (op == UPSERT_UPDATE || !e->plain || e->citus || IsolationIsSerializable() ||
		e->nkeys > INDEX_MAX_KEYS || e->virtual_generated)
		return false;
	if (pg_class_aclcheck(e->relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		return false;
	return !idem_rls_applies(rel);
}

/*
 * Begin direct probes of e's index.  many: several keys will be probed;
 * their heap tuples are then fetched through a fetch state of our own
 * (d->fetch), which keeps its pin on the last heap page from one key to the
 * next (index_rescan() drops the scan's own), as the executor's single scan
 * of "key = ANY ($1)" does.
 */
static void
upsert_direct_begin(UpsertEntry *e, UpsertDirect *d, Relation rel, bool many)
{
	Assert(RelationGetRelid(rel) == e->relid);
	d->heap = rel;				/* locked by upsert_open_table */
	d->index = index_open(e->indexoid, AccessShareLock);

	/*
	 * As SPI does before the SELECT it replaces: what this transaction
	 * wrote so far, even earlier in the caller's statement (a DELETE in a
	 * WITH clause, a function called before this one), must be seen, and a
	 * row deleted by it must not.
	 */
	CommandCounterIncrement();
	d->snap = RegisterSnapshot(GetTransactionSnapshot());
	d->slot = table_slot_create(d->heap, NULL);
	d->scan = index_beginscan(d->heap, d->index, d->snap, e->nkeys, 0);
	d->fetch = many ? table_index_fetch_begin(d->heap) : NULL;
}

/*
 * The next visible heap tuple of the scan into d->slot, through d->fetch:
 * index_getnext_slot() with our fetch state in place of the scan's.  The
 * snapshot is an MVCC one, so a HOT chain yields at most one tuple and is
 * never continued.
 */
static bool
upsert_direct_next(UpsertDirect *d)
{
	ItemPointer tid;

	while ((tid = index_getnext_tid(d->scan, ForwardScanDirection)) != NULL)
	{
		bool		call_again = false;
		bool		all_dead = false;
		bool		found;

		found = table_index_fetch_tuple(d->fetch, tid, d->snap, d->slot,
										&call_again, &all_dead);
		Assert(!call_again);
		/* as index_fetch_heap(): a dead chain's index entry may be killed */
		if (!d->scan->xactStartedInRecovery)
			d->scan->kill_prior_tuple = all_dead;
		if (found)
		{
			pgstat_count_heap_fetch(d->index);
			return true;
		}
	}
	return false;
}

/* Probe one key (values per present column); the row or false. */
static bool
upsert_direct_fetch(UpsertEntry *e, UpsertDirect *d, Datum *values, Datum *row)
{
	ScanKeyData keys[INDEX_MAX_KEYS];
	int			i;

	for (i = 0; i < e->nkeys; i++)
	{
		ScanKeyInit(&keys[i], i + 1, BTEqualStrategyNumber, e->keyproc[i],
					values[e->keyparam[i]]);
		keys[i].sk_collation = d->index->rd_indcollation[i];
	}
	index_rescan(d->scan, keys, e->nkeys, NULL, 0);
	if (d->fetch != NULL ? !upsert_direct_next(d) :
		!index_getnext_slot(d->scan, ForwardScanDirection, d->slot))
		return false;
	*row = upsert_direct_row(d);
	return true;
}

/*
 * The row in d->slot as a composite datum, in the current memory context;
 * clears the slot (and so drops its buffer pin).
 */
static Datum
upsert_direct_row(UpsertDirect *d)
{
	HeapTuple	tup;
	bool		shouldfree;
	Datum		row;

	tup = ExecFetchSlotHeapTuple(d->slot, false, &shouldfree);
	if (HeapTupleHeaderGetNatts(tup->t_data) == d->slot->tts_tupleDescriptor->natts)
	{
		/* one copy, straight from the buffer; TOAST pointers inlined */
		row = heap_copy_tuple_as_datum(tup, d->slot->tts_tupleDescriptor);
	}
	else
	{
		/* a column added since: its missing value filled in */
		slot_getallattrs(d->slot);
		tup = heap_form_tuple(d->slot->tts_tupleDescriptor, d->slot->tts_values,
							  d->slot->tts_isnull);
		row = heap_copy_tuple_as_datum(tup, d->slot->tts_tupleDescriptor);
		heap_freetuple(tup);
	}
	ExecClearTuple(d->slot);
	return row;
}

static void
upsert_direct_end(UpsertDirect *d)
{
	if (d->fetch != NULL)
		table_index_fetch_end(d->fetch);
	index_endscan(d->scan);
	ExecDropSingleTupleTableSlot(d->slot);
	UnregisterSnapshot(d->snap);
	index_close(d->index, NoLock);
}

static bool
upsert_direct_lookup(UpsertEntry *e, Relation rel, UpsertOp op, uint32 nullmask,
					 Datum *values, Datum *row, bool *probed)
{
	UpsertDirect d;
	bool		found;

	*probed = false;
	if (nullmask != 0 || !upsert_direct_ok(e, rel, op))
		return false;
	*probed = true;
	upsert_direct_begin(e, &d, rel, false);
	found = upsert_direct_fetch(e, &d, values, row);
	upsert_direct_end(&d);
	return found;
}

/*
 * May a miss of e insert its row without SPI (upsert_direct_insert)?
 * Decided on the first miss after the entry was built, with rel locked
 * ROW EXCLUSIVE, and kept with the entry (any change of the table's
 * triggers, rules, constraints, defaults, indexes, privileges or policies
 * sends the relcache invalidation that rebuilds it).  Nothing but the
 * insert may happen: no rule, trigger on INSERT, CHECK constraint or
 * generated column (stored or virtual), no inheritance or partitioning, the heap access
 * method, indexes that run no code (no expression, predicate, exclusion
 * or operator class not built in), no other unique index the key's
 * ON CONFLICT would take as an arbiter, and defaults that run no code
 * (src/plans.c: constants, nextval(), identity, now() and a few alike),
 * none on a domain (whose constraints check even a NULL).  Fills in the
 * planned defaults of the columns vals leaves out.
 */
static bool
upsert_insert_direct_build(UpsertEntry *e, Relation rel)
{
	Form_pg_class form = RelationGetForm(rel);
	TupleDesc	desc = RelationGetDescr(rel);
	TupleConstr *constr = desc->constr;
	TriggerDesc *trig = rel->trigdesc;
	MemoryContext old;
	List	   *indexes;
	ListCell   *lc;
	bool		ok = true;
	int			i,
				j;

	/* e->plain: a plain table (not partitioned) without children */
	if (!e->plain || e->citus || e->virtual_generated || e->keytwins ||
		e->nulls_not_distinct || form->relam != HEAP_TABLE_AM_OID ||
		form->relhasrules || form->relispartition ||
		(constr != NULL && constr->num_check > 0))
		return false;
	if (trig != NULL &&
		(trig->trig_insert_before_row || trig->trig_insert_after_row ||
		 trig->trig_insert_instead_row || trig->trig_insert_before_statement ||
		 trig->trig_insert_after_statement || trig->trig_insert_new_table))
		return false;
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		if (idem_index_runs_code(lfirst_oid(lc)))
			ok = false;
	}
	list_free(indexes);
	if (!ok)
		return false;

	old = MemoryContextSwitchTo(e->cxt);
	e->defatt = palloc(sizeof(AttrNumber) * desc->natts);
	e->defexpr = palloc(sizeof(Expr *) * desc->natts);
	e->ndefaults = 0;
	for (i = 0, j = 0; ok && i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Node	   *def;

		if (att->attisdropped)
			continue;
		/* the executor computes it (not a default: it reads the row) */
		if (att->attgenerated)
		{
			ok = false;
			continue;
		}
		if (j < e->ncols && e->cols[j] == att->attnum)
		{
			/* the statement refuses a value for it (428C9) */
			if (att->attidentity == ATTRIBUTE_IDENTITY_ALWAYS)
				ok = false;
			j++;
			continue;
		}
		if (get_typtype(att->atttypid) == TYPTYPE_DOMAIN)
		{
			ok = false;
			continue;
		}
		def = build_column_default(rel, att->attnum);
		if (def == NULL)
			continue;
		if (idem_expr_runs_code(def))
		{
			ok = false;
			continue;
		}
		e->defatt[e->ndefaults] = att->attnum;
		e->defexpr[e->ndefaults] = expression_planner((Expr *) def);
		e->ndefaults++;
	}
	e->arbiters = list_make1_oid(e->indexoid);
	MemoryContextSwitchTo(old);
	return ok;
}

/*
 * May e's new rows be inserted here now (upsert_insert_direct_build)?
 * Takes the statement's ROW EXCLUSIVE lock first.  An invalidation it
 * brings in (a trigger, a constraint, a grant committed while we waited for
 * it), or one the build's catalog reads bring in, makes the entry stale:
 * the statement runs, and the next call rebuilds the entry.
 */
static bool
upsert_insert_direct_ready(UpsertEntry *e, Relation rel)
{
	if (e->insert_direct < 0 || ExecutorCheckPerms_hook != NULL ||
		OidIsValid(e->deferrable_twin))
		return false;
	LockRelationOid(e->relid, RowExclusiveLock);
	if (e->insert_direct == 0 && e->valid)
		e->insert_direct = upsert_insert_direct_build(e, rel) ? 1 : -1;
	return e->valid && e->insert_direct > 0 &&
		pg_class_aclcheck(e->relid, GetUserId(), ACL_INSERT) == ACLCHECK_OK;
}

/*
 * The states of e's defaults for one call's rows, in estate's memory, as
 * the executor makes them for each statement (what a function caches in
 * its fn_extra lives no longer than the call).
 */
static ExprState **
upsert_default_states(UpsertEntry *e, EState *estate)
{
	MemoryContext old = MemoryContextSwitchTo(estate->es_query_cxt);
	ExprState **states = palloc(sizeof(ExprState *) * (e->ndefaults + 1));
	int			i;

	for (i = 0; i < e->ndefaults; i++)
		states[i] = ExecInitExpr(e->defexpr[i], NULL);
	MemoryContextSwitchTo(old);
	return states;
}

/*
 * Form in slot (of e's table) the row an INSERT naming the present columns
 * would insert: their values (nulls: ' ' or 'n'), the other columns'
 * defaults (states from upsert_default_states()) evaluated in econtext's
 * per-tuple memory, NULL for the rest.
 */
static void
upsert_form_new_row(UpsertEntry *e, TupleTableSlot *slot,
					ExprContext *econtext, ExprState **defaults,
					const Datum *values, const char *nulls)
{
	int			i;

	ExecClearTuple(slot);
	memset(slot->tts_isnull, true,
		   slot->tts_tupleDescriptor->natts * sizeof(bool));
	for (i = 0; i < e->ncols; i++)
	{
		slot->tts_values[e->cols[i] - 1] = values[i];
		slot->tts_isnull[e->cols[i] - 1] = (nulls[i] == 'n');
	}
	for (i = 0; i < e->ndefaults; i++)
	{
		AttrNumber	att = e->defatt[i];

		slot->tts_values[att - 1] =
			ExecEvalExprSwitchContext(defaults[i], econtext,
									  &slot->tts_isnull[att - 1]);
	}
	ExecStoreVirtualTuple(slot);
	slot->tts_tableOid = e->relid;
}

/*
 * The row a direct insert wrote from slot, as the composite datum of desc
 * (the table's row type) that RETURNING gives, allocated in cxt.
 */
static Datum
upsert_slot_row(TupleTableSlot *slot, TupleDesc desc, MemoryContext cxt)
{
	bool		shouldfree;
	HeapTuple	tup = ExecFetchSlotHeapTuple(slot, false, &shouldfree);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	Datum		row = heap_copy_tuple_as_datum(tup, desc);

	MemoryContextSwitchTo(old);
	if (shouldfree)
		heap_freetuple(tup);
	return row;
}

/*
 * The miss path without SPI and the executor: right after a direct probe
 * missed the key (upsert_direct_lookup; RLS does not apply, the caller may
 * SELECT), INSERT ... ON CONFLICT (key) DO NOTHING RETURNING the row, made
 * by src/rows.c as the executor makes it, the given values with the
 * defaults of the other columns evaluated as the statement evaluates them.
 * Only where upsert_insert_direct_ready() says so (table-level INSERT, no
 * module checking statements' permissions (sepgsql), nothing else could
 * happen), under READ COMMITTED, where a conflict needs no check against
 * the transaction's snapshot.  IDEM_ROW_DONE: *row is the new row;
 * IDEM_ROW_NONE: a row with the key is there now; IDEM_ROW_FALLBACK:
 * nothing done, the statement must run (a NOT NULL constraint broken
 * included: it raises the error).
 */
static IdemRowResult
upsert_direct_insert(UpsertEntry *e, Relation rel, const Datum *values,
					 const char *nulls, Datum *row)
{
	TupleDesc	desc = RelationGetDescr(rel);
	EState	   *estate;
	TupleTableSlot *slot;
	ItemPointerData tid;
	IdemRowResult result;

	if (IsolationUsesXactSnapshot() || !upsert_insert_direct_ready(e, rel))
		return IDEM_ROW_FALLBACK;
	estate = CreateExecutorState();
	slot = table_slot_create(rel, NULL);
	upsert_form_new_row(e, slot, GetPerTupleExprContext(estate),
						upsert_default_states(e, estate), values, nulls);
	result = idem_row_insert_slot(rel, slot, e->arbiters, true, &tid);
	if (result == IDEM_ROW_DONE)
		*row = upsert_slot_row(slot, desc, CurrentMemoryContext);
	ExecDropSingleTupleTableSlot(slot);
	FreeExecutorState(estate);
	return result;
}

/*
 * The same for the elements of a batch group, with one snapshot and one
 * index scan: fills rows[] (indexed by ordinal - 1) for the keys found.
 * False when the direct path does not apply (nothing filled).
 */
static bool
upsert_direct_batch(UpsertEntry *e, Relation rel, Jsonb **elems, const int64 *ords, int n,
					Datum *rows)
{
	UpsertDirect d;
	Datum	   *values;
	char	   *nulls;
	int			i;

	if (e->nulls_not_distinct || !upsert_direct_ok(e, rel, UPSERT_GET))
		return false;
	values = palloc(sizeof(Datum) * (e->ncols + 1));
	nulls = palloc(sizeof(char) * (e->ncols + 1));
	upsert_direct_begin(e, &d, rel, n > 1);
	for (i = 0; i < n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		upsert_convert(e, elems[ords[i] - 1], values, nulls);
		upsert_direct_fetch(e, &d, values, &rows[ords[i] - 1]);
	}
	upsert_direct_end(&d);
	return true;
}

/*
 * The one-row algorithm (see the file header) for a batch element that the
 * set statements left without a row: their lookups already missed it, so
 * no direct probe; the loop starts at the SELECT.  Must be called inside
 * SPI.  Returns the row datum, still in SPI memory.
 */
static Datum
upsert_one(UpsertEntry *e, Jsonb *vals, UpsertOp op, bool *created)
{
	Datum	   *values = palloc(sizeof(Datum) * (e->ncols + 1));
	char	   *nulls = palloc(sizeof(char) * (e->ncols + 1));
	uint32		nullmask;

	upsert_convert(e, vals, values, nulls);
	nullmask = upsert_check_keys(e, nulls);
	return upsert_loop(e, op, values, nulls, nullmask, false, false, created);
}

/*
 * Run the entry's SELECT for the key; false when no row is visible.  On a
 * hit, *seen has the row (datum in SPI memory).
 */
static bool
upsert_select(UpsertEntry *e, uint32 nullmask, Datum *values,
			  const char *nulls, UpsertSeen *seen)
{
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;

	if (upsert_exec(e, STMT_SELECT, nullmask, values, nulls, 1) == 0)
		return false;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	seen->row = upsert_result_row(e, tup, desc, 1);
	seen->differs = DatumGetBool(SPI_getbinval(tup, desc, e->rowcols + 1, &isnull));
	return true;
}

/*
 * The SELECT / [UPDATE] / INSERT loop; must be called inside SPI.  Returns
 * the row datum, still in SPI memory.  probed: a direct probe (the same
 * thing as the SELECT, with a fresh snapshot) has just missed the key, so
 * the first round starts at the INSERT.  conflicted: a direct insert has
 * just met a row with the key, so the row the SELECT finds counts as a
 * conflict, not as a row that was there.
 */
static Datum
upsert_loop(UpsertEntry *e, UpsertOp op, Datum *values, char *nulls,
			uint32 nullmask, bool probed, bool conflicted, bool *created)
{
	bool		rls = false;
	bool		rls_checked = false;
	bool		have_probe = false;
	bool		insert_missed = false;
	UpsertProbe probe1;
	int			unchanged_misses = 0;
	int			max_attempts;
	int			attempt;

	max_attempts = IsolationUsesXactSnapshot() ? UPSERT_MAX_ATTEMPTS_XACT : UPSERT_MAX_ATTEMPTS;

	for (attempt = 0; attempt < max_attempts; attempt++)
	{
		UpsertSeen	seen;

		CHECK_FOR_INTERRUPTS();

		if ((attempt > 0 || !probed) && upsert_select(e, nullmask, values, nulls, &seen))
		{
			if (!seen.differs)
			{
				/*
				 * After our INSERT reported a conflict, a row written by this
				 * very transaction into another table than the one named
				 * (an inheritance child) is one that the INSERT's own BEFORE
				 * trigger put there instead, returning NULL: this call
				 * created it.  (Which row version it is is asked as the
				 * table owner: system columns need privileges that column
				 * grants do not give.)
				 */
				*created = false;
				if (insert_missed && !e->citus)
				{
					UpsertProbe p = upsert_probe(e, nullmask, values, nulls);

					*created = p.found && p.tableoid != e->relid &&
						TransactionIdIsCurrentTransactionId(p.xmin);
					/* the probe's SPI call replaced SPI_tuptable, not the datum */
				}
				idem_stats_note(*created ? IDEM_OC_INSERTED :
								attempt > 0 || conflicted ? IDEM_OC_CONFLICT :
								IDEM_OC_EXISTING);
				return seen.row;
			}

			/* update_or_create and some given value differs: set it */
			if (upsert_exec(e, STMT_UPDATE, nullmask, values, nulls, 1) > 0)
			{
				bool		isnull;

				if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
												SPI_tuptable->tupdesc,
												e->rowcols + 1, &isnull)) || isnull)
					ereport(ERROR,
							(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
							 errmsg("the row updated in table \"%s\" does not have the key that was asked for",
									e->relmsg),
							 errdetail("A BEFORE UPDATE trigger changed the key columns of the row."),
							 errhint("The key must survive the triggers of table \"%s\": change the trigger.",
									 e->relmsg)));
				*created = false;
				idem_stats_note(IDEM_OC_UPDATED);
				return upsert_result_row(e, SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 1);
			}

			/*
			 * The UPDATE did not find the row that the SELECT saw needing a
			 * change.  Either it changed or went away concurrently (go round
			 * again), or a policy lets us see but not update it, or a
			 * BEFORE UPDATE trigger skipped the update by returning NULL.
			 */
			if (!rls_checked)
			{
				rls = check_enable_rls(e->relid, InvalidOid, true) == RLS_ENABLED;
				rls_checked = true;
			}
			if (rls)
			{
				if (++unchanged_misses >= UPSERT_MAX_ATTEMPTS_XACT)
					ereport(ERROR,
							(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
							 errmsg("the existing row of table \"%s\" with this key cannot be updated by role \"%s\"",
									e->relmsg, GetUserNameFromId(GetUserId(), false)),
							 errdetail("A row level security policy lets the role see the row but not update it."),
							 errhint("Change the UPDATE policies of table \"%s\", or use get_or_create.",
									 e->relmsg)));
			}
			else
			{
				UpsertSeen	again;
				UpsertProbe p1 = upsert_probe(e, nullmask, values, nulls);

				/*
				 * The same row version live before and after a SELECT that
				 * still sees it differing: nobody changed it since the
				 * UPDATE, so a trigger skipped the update, as it would skip
				 * a plain UPDATE.  Return the row as it is.
				 */
				if (p1.found &&
					upsert_select(e, nullmask, values, nulls, &again))
				{
					Datum		row = again.row;
					UpsertProbe p2;

					if (!again.differs)
					{
						*created = false;
						idem_stats_note(IDEM_OC_EXISTING);
						return row;
					}
					p2 = upsert_probe(e, nullmask, values, nulls);
					if (p2.found && p1.tableoid == p2.tableoid &&
						ItemPointerEquals(&p1.tid, &p2.tid))
					{
						*created = false;
						idem_stats_note(IDEM_OC_EXISTING);
						return row;
					}
				}
			}
			continue;
		}

		if (have_probe)
		{
			UpsertProbe probe2 = upsert_probe(e, nullmask, values, nulls);

			/* live before and after the SELECT that missed it: hidden */
			if (probe1.found && probe2.found &&
				probe1.tableoid == probe2.tableoid &&
				ItemPointerEquals(&probe1.tid, &probe2.tid))
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("a row of table \"%s\" with this key exists but is hidden from role \"%s\" by row level security",
								e->relmsg, GetUserNameFromId(GetUserId(), false)),
						 errdetail("The row cannot be returned and a second row cannot be inserted."),
						 errhint("Change the SELECT policies of table \"%s\" so that the role can see the row, or use a different key.",
								 e->relmsg)));
		}

		if (upsert_exec(e, STMT_INSERT, nullmask, values, nulls, 1) > 0)
		{
			bool		isnull;
			bool		same_key;

			same_key = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
												  SPI_tuptable->tupdesc,
												  e->rowcols + 1, &isnull));
			if (isnull || !same_key)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("the row inserted into table \"%s\" does not have the key that was asked for",
								e->relmsg),
						 errdetail("A BEFORE INSERT trigger changed the key columns of the new row."),
						 errhint("The key must survive the triggers of table \"%s\": change the trigger, or pass the key it produces.",
								 e->relmsg)));
			*created = true;
			idem_stats_note(IDEM_OC_INSERTED);
			return upsert_result_row(e, SPI_tuptable->vals[0],
									 SPI_tuptable->tupdesc, 1);
		}
		insert_missed = true;

		/* The key exists but we did not see it. */
		if (!rls_checked)
		{
			rls = check_enable_rls(e->relid, InvalidOid, true) == RLS_ENABLED;
			rls_checked = true;
		}
		if (rls)
		{
			probe1 = upsert_probe(e, nullmask, values, nulls);
			have_probe = true;
		}
	}

	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("could not insert or find the row of table \"%s\" with this key after %d attempts",
					e->relmsg, attempt),
			 errdetail("The INSERT reported a conflicting row each time, but no row with this key was visible afterwards."),
			 errhint("A BEFORE INSERT trigger on table \"%s\" may suppress the row or change its key; the key must survive the triggers.",
					 e->relmsg)));
	return (Datum) 0;			/* keep compiler quiet */
}

/* ---------------------------------------------------------------------
 * Argument handling
 * --------------------------------------------------------------------- */

/*
 * Open the table whose row type is the type of argument 0, with
 * AccessShareLock held to the end of the transaction: enough to trust the
 * cache (every invalidation for the table has been processed once a lock is
 * granted) and to read; the INSERT or UPDATE, if any, takes RowExclusiveLock
 * itself, so a hit by a role that may only read takes no stronger lock than
 * its SELECT would.
 */
static Relation
upsert_open_table(FunctionCallInfo fcinfo, const char *fname)
{
	Oid			argtype = get_fn_expr_argtype(fcinfo->flinfo, 0);
	Oid			relid;
	char		relkind;
	Relation	rel;

	if (!OidIsValid(argtype))
		elog(ERROR, "could not determine the type of the first argument of %s", fname);

	/* the table a table scan of this call opened and locked */
	rel = idem_callscan_relation(fcinfo);
	if (rel != NULL && rel->rd_rel->reltype == argtype &&
		(rel->rd_rel->relkind == RELKIND_RELATION ||
		 rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE))
	{
		Assert(CheckRelationLockedByMe(rel, AccessShareLock, true));
		RelationIncrementReferenceCount(rel);
		return rel;
	}

	/* the table of the last row type that named one (see upsert_memo) */
	if (argtype == upsert_memo_argtype && OidIsValid(upsert_memo_relid))
	{
		rel = try_relation_open(upsert_memo_relid, AccessShareLock);
		if (rel != NULL &&
			(rel->rd_rel->relkind == RELKIND_RELATION ||
			 rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE) &&
			rel->rd_rel->reltype == argtype)
			return rel;
		/* gone or changed: the full checks below say what */
		if (rel != NULL)
			relation_close(rel, AccessShareLock);
		upsert_memo_argtype = InvalidOid;
	}

	relid = get_typ_typrelid(argtype);
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("%s needs a table's row type as its first argument, not type %s",
						fname, format_type_be(argtype)),
				 errhint("Name the table by its row type, for example NULL::public.accounts.")));
	relkind = get_rel_relkind(relid);
	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", get_rel_name(relid)),
				 errdetail("%s works on plain and partitioned tables only; \"%s\" is a %s.",
						   fname, get_rel_name(relid),
						   relkind == RELKIND_VIEW ? "view" :
						   relkind == RELKIND_MATVIEW ? "materialized view" :
						   relkind == RELKIND_FOREIGN_TABLE ? "foreign table" :
						   relkind == RELKIND_COMPOSITE_TYPE ? "composite type" : "relation"),
				 errhint("Pass the row type of the table that stores the rows.")));
	rel = try_relation_open(relid, AccessShareLock);
	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table with OID %u does not exist", relid)));
	/* re-check after the lock: the relation may have been replaced */
	if (rel->rd_rel->relkind != RELKIND_RELATION &&
		rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", RelationGetRelationName(rel))));
	upsert_memo_argtype = argtype;
	upsert_memo_relid = relid;
	return rel;
}

/*
 * The pg_attribute tuple (the caller releases it) of the column a call
 * gives a value for: 42703 if there is none (or a system column), 428C9
 * for a generated one.  argname and what name the argument in the hints.
 */
static HeapTuple
upsert_given_column(Relation rel, const char *name, const char *argname,
					const char *what)
{
	HeapTuple	atup = SearchSysCacheAttName(RelationGetRelid(rel), name);

	if (!HeapTupleIsValid(atup) || ((Form_pg_attribute) GETSTRUCT(atup))->attnum <= 0)
	{
		if (HeapTupleIsValid(atup))
			ReleaseSysCache(atup);
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist",
						name, RelationGetRelationName(rel)),
				 errhint("Every %s must be a column of table \"%s\".",
						 what, RelationGetRelationName(rel))));
	}
	if (((Form_pg_attribute) GETSTRUCT(atup))->attgenerated)
	{
		ReleaseSysCache(atup);
		ereport(ERROR,
				(errcode(ERRCODE_GENERATED_ALWAYS),
				 errmsg("cannot insert a non-DEFAULT value into column \"%s\"", name),
				 errdetail("Column \"%s\" is a generated column.", name),
				 errhint("Leave column \"%s\" out of %s.", name, argname)));
	}
	return atup;
}

/* Columns named by the keys of a jsonb object: 42703, 428C9. */
static void
upsert_cols_of(Relation rel, Jsonb *obj, uint64 *cols, const char *fname)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken r;
	bool		skip = false;

	char		names[UPSERT_COLMEMO_MAXNAMES];
	int			len = 0;
	UpsertColMemo *memo = NULL;

	memset(cols, 0, sizeof(uint64) * UPSERT_COLWORDS);
	if (!JB_ROOT_IS_OBJECT(obj) || JB_ROOT_IS_SCALAR(obj))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("vals must be a JSON object"),
				 errhint("Pass the row as {\"column\": value, ...} to %s.", fname)));

	/*
	 * The same keys as a recent call on this table: the same columns (a
	 * relcache invalidation of the table empties its memos, and the table is
	 * locked, so every invalidation for it has been processed).
	 */
	upsert_init_cache();
	it = JsonbIteratorInit(&obj->root);
	while ((r = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (r != WJB_KEY)
			continue;
		if (len < 0 || len + v.val.string.len + 1 > UPSERT_COLMEMO_MAXNAMES)
		{
			len = -1;			/* too long to memoize */
			continue;
		}
		memcpy(names + len, v.val.string.val, v.val.string.len);
		len += v.val.string.len;
		names[len++] = '\0';
	}
	if (len > 0)
	{
		uint32		h = hash_bytes((const unsigned char *) names, len) ^
			murmurhash32(RelationGetRelid(rel));

		memo = &upsert_colmemo[h % UPSERT_COLMEMO_SLOTS];
		if (memo->relid == RelationGetRelid(rel) && memo->len == len &&
			memcmp(memo->names, names, len) == 0)
		{
			memcpy(cols, memo->cols, sizeof(uint64) * UPSERT_COLWORDS);
			return;
		}
	}

	it = JsonbIteratorInit(&obj->root);
	while ((r = JsonbIteratorNext(&it, &v, skip)) != WJB_DONE)
	{
		HeapTuple	atup;
		Form_pg_attribute att;
		char	   *name;

		skip = true;
		if (r != WJB_KEY)
			continue;
		name = pnstrdup(v.val.string.val, v.val.string.len);
		atup = upsert_given_column(rel, name, "vals", "key of vals");
		att = (Form_pg_attribute) GETSTRUCT(atup);
		BIT_SET(cols, att->attnum);
		ReleaseSysCache(atup);
	}
	if (bitmap_empty(cols))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("vals must name at least the key columns"),
				 errhint("Pass the row as {\"column\": value, ...} to %s.", fname)));
	if (memo != NULL)
	{
		memo->relid = RelationGetRelid(rel);
		memo->len = len;
		memcpy(memo->names, names, len);
		memcpy(memo->cols, cols, sizeof(uint64) * UPSERT_COLWORDS);
	}
}

/*
 * The names in a text[] argument of column names (key_cols, cols), as C
 * strings: 22023 if it is not one-dimensional, 22004 for a NULL name.
 */
static char **
upsert_names_of(ArrayType *arr, const char *argname, int *n)
{
	Datum	   *elems;
	bool	   *enulls;
	char	  **names;
	int			i;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a one-dimensional array", argname)));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &enulls, n);
	names = palloc(sizeof(char *) * (*n + 1));
	for (i = 0; i < *n; i++)
	{
		if (enulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not contain NULL", argname)));
		names[i] = TextDatumGetCString(elems[i]);
	}
	return names;
}

static void
upsert_keycols_of(Relation rel, ArrayType *arr, uint64 *keycols)
{
	char	  **names;
	int			n,
				i;

	memset(keycols, 0, sizeof(uint64) * UPSERT_COLWORDS);
	if (arr == NULL)
		return;
	names = upsert_names_of(arr, "key_cols", &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key_cols must not be empty"),
				 errhint("Pass NULL to infer the key from the table's unique indexes.")));
	for (i = 0; i < n; i++)
	{
		char	   *name = names[i];
		AttrNumber	att;

		att = get_attnum(RelationGetRelid(rel), name);
		if (att <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" of relation \"%s\" does not exist",
							name, RelationGetRelationName(rel)),
					 errhint("key_cols must name columns of table \"%s\".",
							 RelationGetRelationName(rel))));
		if (BIT_ISSET(keycols, att))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("column \"%s\" appears more than once in key_cols", name)));
		BIT_SET(keycols, att);
	}
}

/* ---------------------------------------------------------------------
 * Name/value pairs: calls rewritten by the planner (upsert_support)
 * --------------------------------------------------------------------- */

/*
 * The types whose values a pair passes as they are: for these, converting
 * a value to jsonb (as jsonb_build_object does) and back to the same type
 * (as jsonb_populate_record does) gives back the very value.  Not so for
 * float8 (-0 comes back as 0), timestamps (the session's time zone and
 * DateStyle), numeric in a column with a typmod, and so on.
 */
static bool
upsert_pair_type_ok(Oid typid)
{
	switch (typid)
	{
		case TEXTOID:
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case BOOLOID:
		case UUIDOID:
			return true;
		default:
			return false;
	}
}

/*
 * The pairs of jsonb_build_object('c1', v1, ...) with constant names (not
 * VARIADIC): their number (0 if the call is not such), the names and the
 * value expressions.
 */
static int
support_pairs_of_call(FuncExpr *vals, char ***names, Node ***exprs)
{
	int			n = list_length(vals->args);
	int			npairs = 0;
	ListCell   *lc;

	if (vals->funcid != F_JSONB_BUILD_OBJECT_ANY || vals->funcvariadic ||
		n == 0 || n % 2 != 0 || n / 2 > UPSERT_MAX_PAIRS)
		return 0;
	*names = palloc(sizeof(char *) * (n / 2));
	*exprs = palloc(sizeof(Node *) * (n / 2));
	for (lc = list_head(vals->args); lc != NULL; lc = lnext(vals->args, lc))
	{
		Const	   *key = (Const *) lfirst(lc);

		lc = lnext(vals->args, lc);
		if (!IsA(key, Const) || key->constisnull)
			return 0;
		if (key->consttype == TEXTOID)
			(*names)[npairs] = TextDatumGetCString(key->constvalue);
		else if (key->consttype == UNKNOWNOID)
			(*names)[npairs] = DatumGetCString(key->constvalue);
		else
			return 0;
		(*exprs)[npairs++] = (Node *) lfirst(lc);
	}
	return npairs;
}

/*
 * The pairs of a constant jsonb object ('{"c1": v1, ...}'::jsonb): their
 * number (0 if it is not one, or a value is an object or an array), the
 * keys and the values.
 */
static int
support_pairs_of_const(Const *vals, char ***names, JsonbValue **jvals)
{
	Jsonb	   *jb;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken r;
	int			n;
	int			npairs = 0;

	if (vals->consttype != JSONBOID || vals->constisnull)
		return 0;
	jb = DatumGetJsonbP(vals->constvalue);
	if (!JB_ROOT_IS_OBJECT(jb) || JB_ROOT_IS_SCALAR(jb))
		return 0;
	n = JB_ROOT_COUNT(jb);
	if (n == 0 || n > UPSERT_MAX_PAIRS)
		return 0;
	*names = palloc(sizeof(char *) * n);
	*jvals = palloc(sizeof(JsonbValue) * n);
	it = JsonbIteratorInit(&jb->root);
	while ((r = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (r == WJB_KEY)
			(*names)[npairs] = pnstrdup(v.val.string.val, v.val.string.len);
		else if (r == WJB_VALUE)
		{
			if (v.type == jbvBinary)
				return 0;
			(*jvals)[npairs++] = v;
		}
	}
	return npairs;
}

/*
 * A constant of type typid (one of upsert_pair_type_ok()'s) whose value is
 * what the conversion of the JSON value v into a column of that type gives
 * (jsonb_populate_record: a JSON null is NULL, a string is its text, a
 * boolean a boolean, a number the input function's reading of its text),
 * or NULL when that is not certain without converting at run time (a
 * string for a non-text column, a number that is not an integer in the
 * type's range, which raise their errors then).
 */
static Const *
support_const_value(const JsonbValue *v, Oid typid, Oid collid)
{
	if (v->type == jbvNull)
		return makeNullConst(typid, -1, collid);
	if (v->type == jbvString && typid == TEXTOID)
		return makeConst(TEXTOID, -1, collid, -1,
						 PointerGetDatum(cstring_to_text_with_len(v->val.string.val,
																  v->val.string.len)),
						 false, false);
	if (v->type == jbvBool && typid == BOOLOID)
		return makeConst(BOOLOID, -1, InvalidOid, 1,
						 BoolGetDatum(v->val.boolean), false, true);
	if (v->type == jbvNumeric &&
		(typid == INT2OID || typid == INT4OID || typid == INT8OID))
	{
		char	   *digits = DatumGetCString(DirectFunctionCall1(numeric_out,
																 NumericGetDatum(v->val.numeric)));
		char	   *p = digits;
		int64		i;

		/* at most 18 digits: no overflow */
		if (*p == '-')
			p++;
		if (*p == '\0' || strspn(p, "0123456789") != strlen(p) ||
			strlen(p) > 18)
			return NULL;
		i = strtoi64(digits, NULL, 10);
		if (typid == INT2OID && i >= PG_INT16_MIN && i <= PG_INT16_MAX)
			return makeConst(INT2OID, -1, InvalidOid, 2,
							 Int16GetDatum((int16) i), false, true);
		if (typid == INT4OID && i >= PG_INT32_MIN && i <= PG_INT32_MAX)
			return makeConst(INT4OID, -1, InvalidOid, 4,
							 Int32GetDatum((int32) i), false, true);
		if (typid == INT8OID)
			return makeConst(INT8OID, -1, InvalidOid, 8,
							 Int64GetDatum(i), false, FLOAT8PASSBYVAL);
	}
	return NULL;
}

/*
 * How many rows a batch call returns, where its planner can tell: one per
 * element of a constant JSON array (idempotent_upsert_many), or per
 * element of the first array of values, a constant or an ARRAY[...]
 * (idempotent_upsert_columns); -1 otherwise.  A malformed argument gets no
 * estimate: the call raises its error when it runs.
 */
static double
support_batch_rows(FuncExpr *call)
{
	Node	   *arg;

	if (list_length(call->args) < 3)
		return -1;
	if (exprType(lsecond(call->args)) == JSONBOID)
	{
		Const	   *c = (Const *) lsecond(call->args);
		Jsonb	   *jb;

		if (!IsA(c, Const) || c->constisnull)
			return -1;
		jb = DatumGetJsonbP(c->constvalue);
		if (!JB_ROOT_IS_ARRAY(jb) || JB_ROOT_IS_SCALAR(jb))
			return -1;
		return JB_ROOT_COUNT(jb);
	}
	if (list_length(call->args) < 4)
		return -1;
	arg = lfourth(call->args);
	if (IsA(arg, ArrayExpr) && !((ArrayExpr *) arg)->multidims)
		return list_length(((ArrayExpr *) arg)->elements);
	if (IsA(arg, Const) && !((Const *) arg)->constisnull &&
		OidIsValid(get_element_type(((Const *) arg)->consttype)))
	{
		ArrayType  *a = DatumGetArrayTypeP(((Const *) arg)->constvalue);

		if (ARR_NDIM(a) <= 1)
			return ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a));
	}
	return -1;
}

/*
 * Planner support function of idempotent_upsert, get_or_create,
 * update_or_create and the batches.  Of a batch it tells only how many
 * rows it returns (support_batch_rows()); callscan.c takes the calls of
 * the three one-row functions by it, not the batches'.  A call of one of
 * the three one-row functions
 *
 *	 f(tbl, jsonb_build_object('c1', v1, ..., 'cn', vn), key_cols)
 *
 * with distinct constant names of columns of the table, not generated,
 * every value of its column's type and that type one of
 * upsert_pair_type_ok()'s, and key_cols a constant (NULL, or a non-empty
 * one-dimensional array without NULLs), or a call whose vals is a constant
 * object ('{"c1": v1, ...}') whose keys name such columns and whose values
 * convert to them without a doubt (support_const_value: a string for a
 * text column, a boolean, an integer in range, null), becomes
 *
 *	 f(tbl, '{c1, ..., cn, key_cols...}'::text[], v1, ..., vn)
 *
 * a call of the same function (EXECUTE privilege is checked on it, as
 * before) that the function tells from a call with a jsonb object by the
 * type of its second argument (no SQL call can pass a text[] there).  It
 * then takes the values as they are, without building the jsonb object and
 * taking it apart again, and the executor sets up n + 2 argument
 * expressions, not the jsonb_build_object's and the key_cols' besides.
 *
 * Nothing decided here is trusted at execution: the table may change
 * between planning and execution.  Its OID is added to the plan's
 * dependencies, so that a cached plan is made again after a change of the
 * table, and upsert_pairs_cols() checks the pairs against the table at
 * every call all the same; a call whose pairs no longer fit it builds the
 * jsonb object with jsonb_build_object and goes the ordinary way.
 */
Datum
idempotency_upsert_support(PG_FUNCTION_ARGS)
{
	Node	   *rawreq = (Node *) PG_GETARG_POINTER(0);
	SupportRequestSimplify *req;
	FuncExpr   *call;
	Node	   *vals;
	Const	   *keycols;
	FuncExpr   *result;
	Oid			relid;
	char		relkind;
	List	   *values = NIL;
	Bitmapset  *seen = NULL;
	Datum	   *spec;
	int			nspec = 0;
	int			npairs;
	char	  **names;
	Node	  **exprs = NULL;
	JsonbValue *jvals = NULL;
	int			i;

	if (IsA(rawreq, SupportRequestRows))
	{
		SupportRequestRows *rreq = (SupportRequestRows *) rawreq;
		double		rows;

		if (!IsA(rreq->node, FuncExpr))
			PG_RETURN_POINTER(NULL);
		rows = support_batch_rows((FuncExpr *) rreq->node);
		if (rows < 0)
			PG_RETURN_POINTER(NULL);
		rreq->rows = rows;
		PG_RETURN_POINTER(rreq);
	}
	if (!IsA(rawreq, SupportRequestSimplify))
		PG_RETURN_POINTER(NULL);
	req = (SupportRequestSimplify *) rawreq;
	call = req->fcall;
	if (call->funcretset)
		PG_RETURN_POINTER(NULL);

	/* f(tbl, jsonb_build_object(...) or a constant object, constant key_cols) */
	if (list_length(call->args) != 3 || !IsA(lthird(call->args), Const))
		PG_RETURN_POINTER(NULL);
	vals = lsecond(call->args);
	keycols = lthird_node(Const, call->args);
	if (IsA(vals, FuncExpr))
		npairs = support_pairs_of_call((FuncExpr *) vals, &names, &exprs);
	else if (IsA(vals, Const))
		npairs = support_pairs_of_const((Const *) vals, &names, &jvals);
	else
		npairs = 0;
	if (npairs <= 0 || npairs > UPSERT_MAX_PAIRS)
		PG_RETURN_POINTER(NULL);
	relid = get_typ_typrelid(exprType(linitial(call->args)));
	if (!OidIsValid(relid))
		PG_RETURN_POINTER(NULL);

	/*
	 * Citus deparses the planned expressions of a query it sends to its
	 * workers, where the rewritten call would be no valid SQL (and the
	 * call's refusal, 0A000, would become "function does not exist").
	 */
	if (idem_citus_installed())
		PG_RETURN_POINTER(NULL);
	relkind = get_rel_relkind(relid);
	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
		PG_RETURN_POINTER(NULL);

	spec = palloc(sizeof(Datum) * (npairs + MaxHeapAttributeNumber));
	for (i = 0; i < npairs; i++)
	{
		Node	   *value;
		AttrNumber	attnum;
		Oid			typid;
		int32		typmod;
		Oid			collid;

		attnum = get_attnum(relid, names[i]);
		if (attnum <= 0 || bms_is_member(attnum, seen) ||
			get_attgenerated(relid, attnum) != '\0')
			PG_RETURN_POINTER(NULL);
		seen = bms_add_member(seen, attnum);
		get_atttypetypmodcoll(relid, attnum, &typid, &typmod, &collid);
		if (typmod != -1 || !upsert_pair_type_ok(typid))
			PG_RETURN_POINTER(NULL);
		if (exprs != NULL)
			value = exprs[i];
		else
			value = (Node *) support_const_value(&jvals[i], typid, collid);
		if (value == NULL || exprType(value) != typid)
			PG_RETURN_POINTER(NULL);
		spec[nspec++] = CStringGetTextDatum(names[i]);
		values = lappend(values, value);
	}
	if (!keycols->constisnull)
	{
		ArrayType  *arr = DatumGetArrayTypeP(keycols->constvalue);
		Datum	   *elems;
		bool	   *enulls;
		int			nelems;

		if (keycols->consttype != TEXTARRAYOID || ARR_NDIM(arr) != 1)
			PG_RETURN_POINTER(NULL);
		deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &enulls, &nelems);
		if (nelems == 0 || nelems > MaxHeapAttributeNumber)
			PG_RETURN_POINTER(NULL);
		for (i = 0; i < nelems; i++)
		{
			if (enulls[i])
				PG_RETURN_POINTER(NULL);
			spec[nspec++] = elems[i];
		}
	}

	result = makeNode(FuncExpr);
	memcpy(result, call, sizeof(FuncExpr));
	result->args = lcons(linitial(call->args),
						 lcons(makeConst(TEXTARRAYOID, -1, InvalidOid, -1,
										 PointerGetDatum(construct_array(spec, nspec,
																		 TEXTOID, -1, false,
																		 TYPALIGN_INT)),
										 false, false),
							   values));
	if (req->root != NULL && req->root->glob != NULL)
		req->root->glob->relationOids =
			lappend_oid(req->root->glob->relationOids, relid);
	PG_RETURN_POINTER(result);
}

/* Is this a call rewritten by upsert_support()? */
static bool
upsert_pairs_call(FunctionCallInfo fcinfo)
{
	return PG_NARGS() > 2 &&
		get_fn_expr_argtype(fcinfo->flinfo, 1) == TEXTARRAYOID;
}

/*
 * The names and the key_cols of a rewritten call, from its text[]: the
 * first npairs elements are the names, the rest key_cols (NULL if none).
 */
static void
upsert_pairs_spec(FunctionCallInfo fcinfo, int npairs, Datum **names,
				  ArrayType **keyarr)
{
	ArrayType  *spec = PG_GETARG_ARRAYTYPE_P(1);
	Datum	   *elems;
	bool	   *enulls;
	int			nelems;
	int			i;

	deconstruct_array(spec, TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &enulls, &nelems);
	if (ARR_NDIM(spec) != 1 || nelems < npairs)
		elog(ERROR, "malformed name/value pairs");
	for (i = 0; i < nelems; i++)
		if (enulls[i])
			elog(ERROR, "malformed name/value pairs");
	*names = elems;
	*keyarr = nelems == npairs ? NULL :
		construct_array(elems + npairs, nelems - npairs, TEXTOID, -1, false,
						TYPALIGN_INT);
}

/*
 * Columns, key columns and value order of a rewritten call, from the memo
 * or the catalogs: false when the pairs do not (or no longer) fit the table
 * as upsert_support() wanted them (a name that is no column or a generated
 * one, twice the same column, a value not of its column's type or not of a
 * type taken as it is): the caller then builds the jsonb object
 * (upsert_pairs_jsonb) and goes the ordinary way, which raises the errors
 * such a call deserves.  Errors in key_cols are raised here, by
 * upsert_keycols_of(), as the ordinary way raises them.  The table is
 * locked.
 */
static bool
upsert_pairs_cols(FunctionCallInfo fcinfo, Relation rel, uint64 *cols,
				  uint64 *keycols, int *order)
{
	int			npairs = PG_NARGS() - 2;
	ArrayType  *spec = PG_GETARG_ARRAYTYPE_P(1);
	Size		len = VARSIZE(spec);
	UpsertPairMemo *m;
	int			i;

	if (npairs > UPSERT_MAX_PAIRS)
		return false;
	upsert_init_cache();
	m = &upsert_pairmemo[(hash_bytes((const unsigned char *) spec, len) ^
						  murmurhash32(RelationGetRelid(rel))) %
						 UPSERT_COLMEMO_SLOTS];
	if (m->relid != RelationGetRelid(rel) || m->npairs != npairs ||
		m->len != len || memcmp(m->spec, spec, len) != 0)
	{
		AttrNumber	attnum[UPSERT_MAX_PAIRS];
		Datum	   *names;
		ArrayType  *keyarr;
		int			j;

		m->relid = InvalidOid;
		memset(m->cols, 0, sizeof(m->cols));
		upsert_pairs_spec(fcinfo, npairs, &names, &keyarr);
		for (i = 0; i < npairs; i++)
		{
			char	   *name = TextDatumGetCString(names[i]);
			HeapTuple	atup;
			Form_pg_attribute att;
			bool		ok;

			atup = SearchSysCacheAttName(RelationGetRelid(rel), name);
			if (!HeapTupleIsValid(atup))
				return false;
			att = (Form_pg_attribute) GETSTRUCT(atup);
			ok = (att->attnum > 0 && !att->attgenerated &&
				  att->atttypmod == -1 && upsert_pair_type_ok(att->atttypid) &&
				  !BIT_ISSET(m->cols, att->attnum));
			attnum[i] = att->attnum;
			m->typid[i] = att->atttypid;
			ReleaseSysCache(atup);
			if (!ok)
				return false;
			BIT_SET(m->cols, attnum[i]);
		}
		upsert_keycols_of(rel, keyarr, m->keycols);
		/* pairs by ascending attnum: the entry's order of its columns */
		for (i = 0; i < npairs; i++)
		{
			int			pos = 0;

			for (j = 0; j < npairs; j++)
				if (attnum[j] < attnum[i])
					pos++;
			m->order[pos] = i;
		}
		if (len > UPSERT_PAIRMEMO_MAXSPEC)
		{
			/* too long to memoize: used once */
			memcpy(cols, m->cols, sizeof(uint64) * UPSERT_COLWORDS);
			memcpy(keycols, m->keycols, sizeof(uint64) * UPSERT_COLWORDS);
			memcpy(order, m->order, sizeof(int) * npairs);
			goto check_types;
		}
		m->npairs = npairs;
		m->len = len;
		memcpy(m->spec, spec, len);
		m->relid = RelationGetRelid(rel);
	}
	/* copies: the memo may change before the values are taken */
	memcpy(cols, m->cols, sizeof(uint64) * UPSERT_COLWORDS);
	memcpy(keycols, m->keycols, sizeof(uint64) * UPSERT_COLWORDS);
	memcpy(order, m->order, sizeof(int) * npairs);
check_types:
	for (i = 0; i < npairs; i++)
		if (get_fn_expr_argtype(fcinfo->flinfo, 2 + i) != m->typid[i])
			return false;
	return true;
}

/* The values of a rewritten call, in the entry's column order. */
static void
upsert_pairs_convert(FunctionCallInfo fcinfo, UpsertEntry *e,
					 const int *order, Datum *values, char *nulls)
{
	int			j;

	for (j = 0; j < e->ncols; j++)
	{
		int			argno = 2 + order[j];

		if (PG_ARGISNULL(argno))
		{
			values[j] = (Datum) 0;
			nulls[j] = 'n';
			continue;
		}
		values[j] = PG_GETARG_DATUM(argno);
		if (e->coltypes[j] == TEXTOID)	/* the one varlena among them */
			values[j] = PointerGetDatum(PG_DETOAST_DATUM_PACKED(values[j]));
		nulls[j] = ' ';
	}
}

/*
 * The jsonb object a rewritten call's vals was, and its key_cols:
 * jsonb_build_object called with the names and the values, under an
 * expression with their types.
 */
static Jsonb *
upsert_pairs_jsonb(FunctionCallInfo fcinfo, ArrayType **keyarr)
{
	FuncExpr   *call = (FuncExpr *) fcinfo->flinfo->fn_expr;
	int			npairs = PG_NARGS() - 2;
	Datum	   *names;
	List	   *args = NIL;
	FuncExpr   *expr;
	FmgrInfo	flinfo;
	FunctionCallInfo jfc;
	Datum		result;
	int			i;

	if (call == NULL || !IsA(call, FuncExpr) ||
		list_length(call->args) != PG_NARGS())
		elog(ERROR, "could not determine the name/value pairs' types");
	upsert_pairs_spec(fcinfo, npairs, &names, keyarr);
	jfc = palloc(SizeForFunctionCallInfo(2 * npairs));
	for (i = 0; i < npairs; i++)
	{
		args = lappend(args, makeNullConst(TEXTOID, -1, DEFAULT_COLLATION_OID));
		args = lappend(args, list_nth(call->args, 2 + i));
		jfc->args[2 * i].value = names[i];
		jfc->args[2 * i].isnull = false;
		jfc->args[2 * i + 1] = fcinfo->args[2 + i];
	}
	expr = makeFuncExpr(F_JSONB_BUILD_OBJECT_ANY, JSONBOID, args,
						InvalidOid, call->inputcollid, COERCE_EXPLICIT_CALL);
	fmgr_info(F_JSONB_BUILD_OBJECT_ANY, &flinfo);
	fmgr_info_set_expr((Node *) expr, &flinfo);
	InitFunctionCallInfoData(*jfc, &flinfo, 2 * npairs, call->inputcollid,
							 NULL, NULL);
	result = FunctionCallInvoke(jfc);
	if (jfc->isnull)
		elog(ERROR, "jsonb_build_object returned NULL");
	return DatumGetJsonbP(result);
}

/* ---------------------------------------------------------------------
 * Entry points
 * --------------------------------------------------------------------- */

/*
 * What every entry point does first: check the versions, refuse standbys,
 * read-only and parallel contexts and a NULL second argument (vals, or the
 * cols of a batch of columns), and open the table named by the first
 * argument.
 */
static Relation
upsert_call_begin(FunctionCallInfo fcinfo, const char *fname, UpsertForm form)
{
	Relation	rel;

	idempotency_check_version();
	idem_check_writable(fname);
	idem_forbid_parallel(fname);
	if (PG_ARGISNULL(1) && form == UPSERT_FORM_COLUMNS)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("cols must not be null"),
				 errhint("Pass the names of the columns whose arrays follow, as a text[].")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("vals must not be null"),
				 form == UPSERT_FORM_MANY
				 ? errhint("Pass the rows as a JSON array of objects to %s.", fname)
				 : errhint("Pass the row as {\"column\": value, ...} to %s.", fname)));
	rel = upsert_open_table(fcinfo, fname);

	/*
	 * idempotent_upsert(_many) return the table's rows: the statement must
	 * expect the columns the table has now that it is locked (an ALTER
	 * TABLE may have committed since the statement was planned).  Checked
	 * before anything is read or written.
	 */
	if (get_fn_expr_rettype(fcinfo->flinfo) == rel->rd_rel->reltype)
		idem_check_result_shape(fcinfo, RelationGetDescr(rel), fname);
	return rel;
}

static Datum
upsert_single(FunctionCallInfo fcinfo, UpsertOp op, const char *fname, bool *created)
{
	Relation	rel;
	Jsonb	   *vals;
	uint64		cols[UPSERT_COLWORDS];
	uint64		keycols[UPSERT_COLWORDS];
	UpsertEntry *e;
	Datum		row;
	Datum	   *values;
	char	   *nulls;
	uint32		nullmask;
	bool		probed;
	bool		conflicted = false;
	bool		found;
	int			order[UPSERT_MAX_PAIRS];

	rel = upsert_call_begin(fcinfo, fname, UPSERT_FORM_ROW);
	if (upsert_pairs_call(fcinfo) &&
		upsert_pairs_cols(fcinfo, rel, cols, keycols, order))
		vals = NULL;
	else
	{
		ArrayType  *keyarr;

		if (upsert_pairs_call(fcinfo))
			vals = upsert_pairs_jsonb(fcinfo, &keyarr);
		else
		{
			vals = PG_GETARG_JSONB_P(1);
			keyarr = PG_ARGISNULL(2) ? NULL : PG_GETARG_ARRAYTYPE_P(2);
		}
		upsert_cols_of(rel, vals, cols, fname);
		upsert_keycols_of(rel, keyarr, keycols);
	}
	e = upsert_entry(rel, op, cols, keycols);
	if (e->citus)
		upsert_citus_check(e, fname);

	values = palloc(sizeof(Datum) * (e->ncols + 1));
	nulls = palloc(sizeof(char) * (e->ncols + 1));
	if (vals != NULL)
		upsert_convert(e, vals, values, nulls);
	else
		upsert_pairs_convert(fcinfo, e, order, values, nulls);
	nullmask = upsert_check_keys(e, nulls);

	/* the hit path needs no SPI, nor does a plain table's miss */
	found = upsert_direct_lookup(e, rel, op, nullmask, values, &row, &probed);
	if (!found && probed)
	{
		switch (upsert_direct_insert(e, rel, values, nulls, &row))
		{
			case IDEM_ROW_DONE:
				relation_close(rel, NoLock);
				upsert_unpin(e);
				*created = true;
				idem_stats_note(IDEM_OC_INSERTED);
				return row;
			case IDEM_ROW_NONE:
				/* a row with the key now: the loop starts at the SELECT */
				probed = false;
				conflicted = true;
				break;
			case IDEM_ROW_FALLBACK:
				break;
		}
	}
	relation_close(rel, NoLock);
	if (found)
	{
		upsert_unpin(e);
		*created = false;
		idem_stats_note(IDEM_OC_EXISTING);
		return row;
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	row = upsert_loop(e, op, values, nulls, nullmask, probed, conflicted,
					  created);
	row = SPI_datumTransfer(row, false, -1);
	SPI_finish();
	upsert_unpin(e);
	return row;
}

static Datum
upsert_result_pair(FunctionCallInfo fcinfo, Datum row, bool created)
{
	TupleDesc	tupdesc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	tupdesc = idem_result_desc(fcinfo);
	values[0] = row;
	values[1] = BoolGetDatum(created);
	return HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls));
}

Datum
idempotency_idempotent_upsert(PG_FUNCTION_ARGS)
{
	bool		created;
	Datum		row;

	idem_stats_begin(IDEM_OP_UPSERT);
	row = upsert_single(fcinfo, UPSERT_GET, "idempotent_upsert", &created);
	idem_stats_end(IDEM_OC_NONE);
	PG_RETURN_DATUM(row);
}

Datum
idempotency_get_or_create(PG_FUNCTION_ARGS)
{
	bool		created;
	Datum		row;

	idem_stats_begin(IDEM_OP_GET_OR_CREATE);
	row = upsert_single(fcinfo, UPSERT_GET, "get_or_create", &created);
	idem_stats_end(IDEM_OC_NONE);

	PG_RETURN_DATUM(upsert_result_pair(fcinfo, row, created));
}

Datum
idempotency_update_or_create(PG_FUNCTION_ARGS)
{
	bool		created;
	Datum		row;

	idem_stats_begin(IDEM_OP_UPDATE_OR_CREATE);
	row = upsert_single(fcinfo, UPSERT_UPDATE, "update_or_create", &created);
	idem_stats_end(IDEM_OC_NONE);

	PG_RETURN_DATUM(upsert_result_pair(fcinfo, row, created));
}

/* One group of batch elements with the same keys. */
typedef struct UpsertGroup
{
	uint64		cols[UPSERT_COLWORDS];
	int			n;
	int64	   *ords;			/* 1-based ordinals */
	bool		direct;			/* existing rows found by direct probes */
} UpsertGroup;

/*
 * A batch given as one array per column (idempotent_upsert_columns): the
 * arrays' elements as given, and the same values laid out as
 * upsert_convert() lays out a batch's (per element, the entry's columns in
 * its order, 'n' in nulls for a NULL).
 */
typedef struct UpsertColumns
{
	int			ncols;			/* columns given, in the order of cols */
	int			nrows;
	AttrNumber *attnums;		/* per column given: the table's column */
	Datum	  **elems;			/* ... its nrows values */
	bool	  **enulls;
	bool		typmods;		/* a column given has a type modifier */
	Datum	   *vals;			/* nrows x the entry's columns */
	char	   *nulls;
} UpsertColumns;

/* Everything one idempotent_upsert_many() call works with. */
typedef struct UpsertBatch
{
	const char *fname;
	Relation	rel;
	Jsonb	   *arr;			/* the vals argument */
	uint64		keycols[UPSERT_COLWORDS];
	int			nelems;
	Jsonb	  **elems;			/* the elements, in input order */
	Datum	   *rows;			/* their rows; (Datum) 0 until found */
	struct UpsertColumns *columns;	/* idempotent_upsert_columns: the
									 * values; arr and elems NULL until
									 * made from them */
	UpsertGroup *groups;
	int			ngroups;
	MemoryContext callcxt;		/* where elements and rows live */
} UpsertBatch;

/*
 * Do two JSON objects have the same keys?  An object's container holds its
 * keys' entries first, then its values', and the keys' bytes first in its
 * data, in an order that depends on the keys alone (jsonb sorts them): the
 * same set of keys is stored the same way.
 */
static bool
jsonb_same_keys(const JsonbContainer *a, const JsonbContainer *b)
{
	uint32		n = JsonContainerSize(a);

	if (n != JsonContainerSize(b))
		return false;
	if (n == 0)
		return true;
	if (memcmp(a->children, b->children, sizeof(JEntry) * n) != 0)
		return false;
	/* the keys' entries are equal, so are their lengths */
	return memcmp(jsonb_object_data(a), jsonb_object_data(b), getJsonbOffset(a, n)) == 0;
}

/*
 * Split vals into its elements and group them by the columns they name.
 * An element with the same keys as the one before names the same columns
 * (elements of a batch usually do): its keys are not looked up again.
 */
static void
batch_split(UpsertBatch *b)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken r;
	int			i = 0;
	int			g = 0;
	int		   *group_of;
	int			maxgroups = 4;
	Jsonb	   *prev = NULL;

	/*
	 * The groups array grows as groups appear, and each group's ordinals
	 * are allocated once its size is known: memory stays linear in the
	 * batch, however many different sets of columns its elements name.
	 */
	b->nelems = JB_ROOT_COUNT(b->arr);
	b->elems = palloc(sizeof(Jsonb *) * (b->nelems + 1));
	b->rows = palloc0(sizeof(Datum) * (b->nelems + 1));
	group_of = palloc(sizeof(int) * (b->nelems + 1));
	b->groups = palloc(sizeof(UpsertGroup) * maxgroups);
	b->ngroups = 0;
	it = JsonbIteratorInit(&b->arr->root);
	while ((r = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		uint64		cols[UPSERT_COLWORDS];

		if (r != WJB_ELEM)
			continue;
		if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("element %d of vals is not a JSON object", i + 1),
					 errhint("Pass the rows as [{\"column\": value, ...}, ...] to %s.", b->fname)));
		b->elems[i] = JsonbValueToJsonb(&v);
		/* the same keys as the element before: its group, g still */
		if (prev == NULL || !jsonb_same_keys(&prev->root, &b->elems[i]->root))
		{
			prev = b->elems[i];
			upsert_cols_of(b->rel, b->elems[i], cols, b->fname);
			for (g = 0; g < b->ngroups; g++)
				if (memcmp(b->groups[g].cols, cols, sizeof(cols)) == 0)
					break;
			if (g == b->ngroups)
			{
				if (b->ngroups == maxgroups)
				{
					maxgroups *= 2;
					b->groups = repalloc(b->groups, sizeof(UpsertGroup) * maxgroups);
				}
				memcpy(b->groups[g].cols, cols, sizeof(cols));
				b->groups[g].n = 0;
				b->ngroups++;
			}
		}
		b->groups[g].n++;
		group_of[i] = g;
		i++;
	}
	for (g = 0; g < b->ngroups; g++)
	{
		b->groups[g].ords = palloc(sizeof(int64) * b->groups[g].n);
		b->groups[g].n = 0;
	}
	for (i = 0; i < b->nelems; i++)
	{
		UpsertGroup *grp = &b->groups[group_of[i]];

		grp->ords[grp->n++] = i + 1;
	}
	pfree(group_of);
}

/*
 * NULL keys (22004) are checked for the whole batch up front, before
 * anything is inserted, on the JSON itself: only a JSON null converts to a
 * NULL.
 */
static void
batch_check_null_keys(UpsertBatch *b)
{
	int			g,
				i,
				k;

	for (g = 0; g < b->ngroups; g++)
	{
		UpsertGroup *grp = &b->groups[g];
		UpsertEntry *e = upsert_entry(b->rel, UPSERT_MANY, grp->cols, b->keycols);
		char	   *nulls = palloc(sizeof(char) * (e->ncols + 1));

		for (i = 0; i < grp->n; i++)
		{
			Jsonb	   *el = b->elems[grp->ords[i] - 1];

			memset(nulls, ' ', e->ncols);
			for (k = 0; k < e->nkeys; k++)
			{
				JsonbValue	kv;
				JsonbValue *found;
				const char *name = NameStr(TupleDescAttr(e->tupdesc, e->cols[e->keyparam[k]] - 1)->attname);
				int			idx = upsert_value_index(e, &el->root, e->keyparam[k]);

				if (idx >= 0)
				{
					if (JBE_ISNULL(el->root.children[idx]))
						nulls[e->keyparam[k]] = 'n';
					continue;
				}
				kv.type = jbvString;
				kv.val.string.val = (char *) name;
				kv.val.string.len = strlen(name);
				found = findJsonbValueFromContainer(&el->root, JB_FOBJECT, &kv);
				if (found == NULL || found->type == jbvNull)
					nulls[e->keyparam[k]] = 'n';
			}
			upsert_check_keys(e, nulls);
		}
		upsert_unpin(e);
	}
}

/*
 * The order of a batch's keys, for one call: the sort support of each
 * key's "<" (an operator of the index's operator family; btree requires
 * every family that contains it to order alike) under the index's
 * collation; for text in the C collation a memcmp, without a function call
 * per comparison.  Prepared per call, in the call's memory context, as
 * PostgreSQL prepares it per sort: its state (a collation's comparison
 * buffers, the last result) is a sort's scratch space, which an error
 * during a comparison may leave inconsistent and a long key may grow.
 */
static SortSupport
batch_sort_support(UpsertEntry *e)
{
	SortSupport ssup = palloc0(sizeof(SortSupportData) * e->nkeys);
	int			k;

	for (k = 0; k < e->nkeys; k++)
	{
		ssup[k].ssup_cxt = CurrentMemoryContext;
		ssup[k].ssup_collation = e->keyindcoll[k];
		ssup[k].ssup_nulls_first = false;
		ssup[k].abbreviate = false;
		PrepareSortSupportFromOrderingOp(e->keyltop[k], &ssup[k]);
	}
	return ssup;
}

/* Compare the keys of two rows of present-column values, in index order. */
static int
batch_cmp_keys(UpsertEntry *e, SortSupport ssup, const Datum *a, const Datum *b)
{
	int			k;

	for (k = 0; k < e->nkeys; k++)
	{
		int			p = e->keyparam[k];
		int			r = ApplySortComparator(a[p], false, b[p], false, &ssup[k]);

		if (r != 0)
			return r < 0 ? -1 : 1;
	}
	return 0;
}

typedef struct BatchSortArg
{
	UpsertEntry *e;
	SortSupport ssup;			/* per key */
	const Datum *vals;			/* n x ncols */
} BatchSortArg;

/* qsort_arg: element positions by key, then by position (input order). */
static int
batch_sort_cmp(const void *a, const void *b, void *arg)
{
	BatchSortArg *c = (BatchSortArg *) arg;
	int			ia = *(const int *) a;
	int			ib = *(const int *) b;
	int			nc = c->e->ncols;
	int			r = batch_cmp_keys(c->e, c->ssup, &c->vals[ia * nc], &c->vals[ib * nc]);

	if (r != 0)
		return r;
	return (ia > ib) - (ia < ib);
}

/* A single-column key and its element's position, for batch_sort(). */
typedef struct BatchKeyPos
{
	Datum		key;
	int			pos;
} BatchKeyPos;

/* qsort_arg: the same order for a key of one column (arg: its SortSupport). */
static int
batch_sort_cmp1(const void *a, const void *b, void *arg)
{
	const BatchKeyPos *ka = (const BatchKeyPos *) a;
	const BatchKeyPos *kb = (const BatchKeyPos *) b;
	int			r = ApplySortComparator(ka->key, false, kb->key, false,
										(SortSupport) arg);

	if (r != 0)
		return r;
	return (ka->pos > kb->pos) - (ka->pos < kb->pos);
}

/*
 * Sort order[0 .. n-1] (element positions) by batch_sort_cmp's order.  A
 * key of one column is sorted beside its position, without the indirection
 * through the rows of values for every comparison.
 */
static void
batch_sort(BatchSortArg *arg, int *order, int n)
{
	UpsertEntry *e = arg->e;
	BatchKeyPos *kp;
	int			p;
	int			i;

	if (n < 2)
		return;
	if (e->nkeys != 1)
	{
		qsort_arg(order, n, sizeof(int), batch_sort_cmp, arg);
		return;
	}
	p = e->keyparam[0];
	kp = palloc(sizeof(BatchKeyPos) * n);
	for (i = 0; i < n; i++)
	{
		kp[i].key = arg->vals[order[i] * e->ncols + p];
		kp[i].pos = order[i];
	}
	qsort_arg(kp, n, sizeof(BatchKeyPos), batch_sort_cmp1, &arg->ssup[0]);
	for (i = 0; i < n; i++)
		order[i] = kp[i].pos;
	pfree(kp);
}

/* Any key of this element NULL?  (Such elements take the one-row path.) */
static bool
batch_null_key(UpsertEntry *e, const char *nulls)
{
	int			k;

	for (k = 0; k < e->nkeys; k++)
		if (nulls[e->keyparam[k]] == 'n')
			return true;
	return false;
}

/*
 * A batch group on a Citus table (inside SPI): every element through the
 * one-row path, in the key order of the arbiter index (so that two batches
 * with overlapping keys wait for each other in the same order, as the
 * set INSERT orders them on a plain table).  The set statements are not
 * used: they carry the table's row type through a CTE that Citus would
 * have to ship to the shards.
 */
static void
batch_citus_group(UpsertBatch *b, UpsertGroup *grp, UpsertEntry *e)
{
	Datum		args[3];
	Datum	   *ords = palloc(sizeof(Datum) * grp->n);
	int64	   *order = palloc(sizeof(int64) * grp->n);
	uint64		k;
	int			i;

	upsert_citus_check(e, b->fname);
	for (i = 0; i < grp->n; i++)
		ords[i] = Int64GetDatum(grp->ords[i]);
	args[0] = JsonbPGetDatum(b->arr);
	args[1] = e->emptyrow;
	args[2] = PointerGetDatum(construct_array(ords, grp->n, INT8OID, 8,
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	upsert_exec(e, STMT_MANY_ORDER, 0, args, "   ", 0);
	if (SPI_processed != (uint64) grp->n)
		elog(ERROR, "batch ordering returned " UINT64_FORMAT " rows for %d elements",
			 SPI_processed, grp->n);
	for (k = 0; k < SPI_processed; k++)
	{
		bool		isnull;

		order[k] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[k],
											   SPI_tuptable->tupdesc, 1, &isnull));
	}
	for (i = 0; i < grp->n; i++)
	{
		UpsertEntry *one = upsert_entry(b->rel, UPSERT_GET, grp->cols, b->keycols);
		bool		created;
		Datum		row;

		CHECK_FOR_INTERRUPTS();
		row = upsert_one(one, b->elems[order[i] - 1], UPSERT_GET, &created);
		b->rows[order[i] - 1] = SPI_datumTransfer(row, false, -1);
		upsert_unpin(one);
	}
	upsert_unpin(e);
}

/*
 * Are a group's keys probed as one array?  Where the key is a single column
 * and btree walks an array of keys along its leaf pages (compat.h).
 */
static inline bool
batch_probe_as_array(UpsertEntry *e)
{
	return IDEM_BTREE_ARRAY_SKIPS && e->nkeys == 1;
}

/*
 * Probe directly, with one fresh snapshot, the elements of a group among
 * order[0 .. n-1] that have no row yet (positions in the group, none with
 * a NULL key); returns how many it found.  Rows land in b->rows, in
 * b->callcxt.
 *
 * Where batch_probe_as_array(), order[] is sorted by batch_sort() (by key
 * in the index's order, then by position), and the keys are looked up as
 * the executor looks up "key = ANY ($1)": one scan of the index with the
 * sorted keys as an array (a scan key with SK_SEARCHARRAY), which returns
 * the rows found in the index's order, moving from one key to the next on
 * a leaf page instead of descending from the root for each.  Each row is
 * matched to the next keys of order[] with the sort support that sorted
 * them (ssup: the index's order and collation), keys before it having no
 * row; one copy of it serves every element with its key.  A row that
 * matched no key (which cannot happen) would leave its key without a row
 * here, for the insert path after, which finds it.  Otherwise each key is
 * looked up in turn, by a rescan of one scan, and ssup is not used.
 */
static int
batch_fast_probe(UpsertBatch *b, UpsertGroup *grp, UpsertEntry *e,
				 const Datum *vals, const int *order, int n, SortSupport ssup)
{
	UpsertDirect d;
	int			nc = e->ncols;
	int			found = 0;
	int		   *pos;
	int			npos = 0;
	Datum	   *keys = NULL;
	ArrayType  *arr = NULL;
	int			i;

	if (n == 0)
		return 0;
	pos = palloc(sizeof(int) * n);
	for (i = 0; i < n; i++)
		if (b->rows[grp->ords[order[i]] - 1] == (Datum) 0)
			pos[npos++] = order[i];
	if (npos == 0)
	{
		pfree(pos);
		return 0;
	}
	upsert_direct_begin(e, &d, b->rel, npos > 1);
	if (npos > 1 && batch_probe_as_array(e) && d.index->rd_indam->amsearcharray)
	{
		int			p = e->keyparam[0];
		AttrNumber	keyatt = e->cols[p];
		ScanKeyData sk;
		int			next = 0;

		/* the scan reads the array's elements in place until it ends */
		keys = palloc(sizeof(Datum) * npos);
		for (i = 0; i < npos; i++)
			keys[i] = vals[pos[i] * nc + p];
		arr = construct_array(keys, npos, e->coltypes[p], e->coltyplen[p],
							  e->coltypbyval[p], e->coltypalign[p]);
		ScanKeyEntryInitialize(&sk, SK_SEARCHARRAY, 1, BTEqualStrategyNumber,
							   InvalidOid, d.index->rd_indcollation[0],
							   e->keyproc[0], PointerGetDatum(arr));
		index_rescan(d.scan, &sk, 1, NULL, 0);
		while (next < npos && upsert_direct_next(&d))
		{
			bool		isnull;
			Datum		key = slot_getattr(d.slot, keyatt, &isnull);
			int			c = -1;
			Datum		row;

			CHECK_FOR_INTERRUPTS();
			while (!isnull && next < npos &&
				   (c = ApplySortComparator(keys[next], false, key, false, &ssup[0])) < 0)
				next++;
			if (c != 0)
			{
				ExecClearTuple(d.slot);
				continue;
			}
			row = upsert_direct_row(&d);
			do
			{
				b->rows[grp->ords[pos[next]] - 1] = row;
				found++;
				next++;
			} while (next < npos &&
					 ApplySortComparator(keys[next], false, keys[next - 1], false,
										 &ssup[0]) == 0);
		}
	}
	else
	{
		for (i = 0; i < npos; i++)
		{
			CHECK_FOR_INTERRUPTS();
			if (upsert_direct_fetch(e, &d, (Datum *) &vals[pos[i] * nc],
									&b->rows[grp->ords[pos[i]] - 1]))
				found++;
		}
	}
	upsert_direct_end(&d);
	if (arr != NULL)
	{
		pfree(arr);
		pfree(keys);
	}
	pfree(pos);
	return found;
}

/* Do two rows of present-column values have equal keys (the index's =)? */
static bool
batch_keys_equal(UpsertEntry *e, const Datum *a, const Datum *b)
{
	int			k;

	for (k = 0; k < e->nkeys; k++)
	{
		int			p = e->keyparam[k];

		if (!DatumGetBool(FunctionCall2Coll(&e->keyeqfn[k], e->keyindcoll[k], a[p], b[p])))
			return false;
	}
	return true;
}

/*
 * Is a plain INSERT of a group's ndistinct new keys in a subtransaction
 * worth it (see batch_insert_plain)?  Not for fewer than two keys, nor
 * without room for the subtransaction's xid.
 */
static bool
batch_plain_pays(int ndistinct)
{
	return ndistinct >= 2 && idem_subxid_cache_room();
}

typedef struct BatchPlainArg
{
	UpsertEntry *e;
	Datum	   *args;
} BatchPlainArg;

static bool
batch_insert_plain_body(void *arg)
{
	BatchPlainArg *a = (BatchPlainArg *) arg;

	upsert_exec(a->e, STMT_MANY_PLAIN, 0, a->args, NULL, 0);
	return true;
}

/*
 * Insert the new keys of a group (arrays in args, ndistinct keys, sorted)
 * with a plain INSERT in a subtransaction; false when that was not tried
 * or a key's row appeared meanwhile (23505: the subtransaction, with every
 * row it inserted, is rolled back, and the caller runs the INSERT ... ON
 * CONFLICT DO NOTHING instead).  The keys were probed missing just before,
 * so a conflict is a race, and the plain INSERT saves what ON CONFLICT
 * does for every row: the pre-check of the arbiter index (a second descent
 * per key) and the speculative insertion (a lock and a confirmation WAL
 * record per row).  Not used for fewer than two keys, where the
 * subtransaction costs about what it saves, nor when the subtransaction's
 * xid would not fit the backend's cache of subtransaction xids (once that
 * overflows, every snapshot taken while this transaction runs has to look
 * into pg_subtrans).  A unique violation on another index raises again
 * from the INSERT ... ON CONFLICT.
 */
static bool
batch_insert_plain(UpsertEntry *e, Datum *args, int ndistinct)
{
	BatchPlainArg a;
	bool		caught;

	if (!batch_plain_pays(ndistinct))
		return false;
	a.e = e;
	a.args = args;
	return idem_subxact_run(batch_insert_plain_body, NULL, &a,
							ERRCODE_UNIQUE_VIOLATION, &caught);
}

/* Rows a batch's direct insert forms and writes at a time, as COPY does. */
#define BATCH_DIRECT_ROWS	1000

typedef struct BatchDirectArg
{
	UpsertEntry *e;
	Relation	rel;
	const Datum *vals;			/* per element, its present columns' values */
	const char *nulls;
	const int  *order;			/* elements in key order ... */
	const int  *runstart;		/* ... and where each distinct key starts */
	int			ndistinct;
	Datum	   *newrows;		/* out: the row of each distinct key ... */
	MemoryContext rowcxt;		/* ... allocated here */
} BatchDirectArg;

/*
 * The body of batch_insert_direct()'s subtransaction: the rows of the
 * distinct keys, in key order, BATCH_DIRECT_ROWS at a time.  False (undo
 * it all) when a row breaks NOT NULL.
 */
static bool
batch_insert_direct_body(void *arg)
{
	BatchDirectArg *a = (BatchDirectArg *) arg;
	UpsertEntry *e = a->e;
	TupleDesc	desc = RelationGetDescr(a->rel);
	int			chunk = Min(a->ndistinct, BATCH_DIRECT_ROWS);
	EState	   *estate = CreateExecutorState();
	ExprContext *econtext = GetPerTupleExprContext(estate);
	ExprState **defaults = upsert_default_states(e, estate);
	ResultRelInfo *rri = makeNode(ResultRelInfo);
	TupleTableSlot **slots = palloc(sizeof(TupleTableSlot *) * chunk);
	TupleDesc	slotdesc;
	CommandId	cid;
	bool		ok = true;
	int			start,
				i;

	InitResultRelInfo(rri, a->rel, 0, NULL, 0);
	ExecOpenIndices(rri, false);

	/*
	 * The slots share a copy of the descriptor, which is not reference
	 * counted: a slot of the relation's own would remember it in the
	 * resource owner, whose forgetting a thousand of them costs as much
	 * as inserting the rows.
	 */
	slotdesc = CreateTupleDescCopy(desc);
	for (i = 0; i < chunk; i++)
		slots[i] = MakeSingleTupleTableSlot(slotdesc,
											table_slot_callbacks(a->rel));
	/* as SPI runs a statement that writes */
	CommandCounterIncrement();
	cid = GetCurrentCommandId(true);
	for (start = 0; ok && start < a->ndistinct; start += chunk)
	{
		int			m = Min(chunk, a->ndistinct - start);

		for (i = 0; i < m; i++)
		{
			int			el = a->order[a->runstart[start + i]];

			CHECK_FOR_INTERRUPTS();
			upsert_form_new_row(e, slots[i], econtext, defaults,
								&a->vals[el * e->ncols],
								&a->nulls[el * e->ncols]);
		}
		ok = idem_row_insert_plain(a->rel, rri, estate, slots, m, cid);
		for (i = 0; ok && i < m; i++)
			a->newrows[start + i] = upsert_slot_row(slots[i], desc, a->rowcxt);
		for (i = 0; i < m; i++)
			ExecClearTuple(slots[i]);
		ResetExprContext(econtext);
	}
	CommandCounterIncrement();
	for (i = 0; i < chunk; i++)
		ExecDropSingleTupleTableSlot(slots[i]);
	ExecCloseIndices(rri);
	FreeExecutorState(estate);
	return ok;
}

typedef enum BatchDirect
{
	BATCH_DIRECT_NOT_TRIED,		/* the statements decide */
	BATCH_DIRECT_DONE,			/* newrows[] filled */
	BATCH_DIRECT_UNDONE			/* a key's row appeared, or a NOT NULL
								 * broken: nothing inserted, INSERT ... ON
								 * CONFLICT DO NOTHING must run */
} BatchDirect;

/*
 * The plain INSERT of batch_insert_plain() without SPI and the executor,
 * where a single new row would be inserted without them
 * (upsert_insert_direct_ready(); under any isolation level but
 * SERIALIZABLE, which the batch's direct probe excludes: a plain INSERT
 * needs no check against the snapshot, its unique checks raise), and
 * batch_insert_plain()'s conditions hold: the distinct new keys' rows
 * (the first element of each, defaults evaluated as the statement would)
 * formed and written a page at a time, each index's entries made in key
 * order after each page-full (so, as with the statement, two batches that
 * overlap wait for each other in key order), in a subtransaction that a
 * unique violation rolls back with every row.
 */
static BatchDirect
batch_insert_direct(UpsertBatch *b, UpsertEntry *e, const Datum *vals,
					const char *nulls, const int *order, const int *runstart,
					int ndistinct, Datum *newrows)
{
	BatchDirectArg a;
	bool		caught;

	if (!batch_plain_pays(ndistinct) || !upsert_insert_direct_ready(e, b->rel))
		return BATCH_DIRECT_NOT_TRIED;
	a.e = e;
	a.rel = b->rel;
	a.vals = vals;
	a.nulls = nulls;
	a.order = order;
	a.runstart = runstart;
	a.ndistinct = ndistinct;
	a.newrows = newrows;
	a.rowcxt = b->callcxt;
	return idem_subxact_run(batch_insert_direct_body, NULL, &a,
							ERRCODE_UNIQUE_VIOLATION, &caught)
		? BATCH_DIRECT_DONE : BATCH_DIRECT_UNDONE;
}

/*
 * The new keys' rows one at a time, in key order, each inserted as a
 * single new row is (upsert_direct_insert(): ON CONFLICT's protocol, no
 * subtransaction), where batch_insert_direct() is not tried (a single new
 * key, no room for a subtransaction's xid), under READ COMMITTED.  A key
 * that a concurrent insert took meanwhile gets no row here (newrows[k] is
 * 0: the look after the inserts finds it).  BATCH_DIRECT_UNDONE, with the
 * rows of the keys before it inserted, when a row breaks NOT NULL: the
 * statement must run, and raises it.
 */
static BatchDirect
batch_insert_each(UpsertBatch *b, UpsertEntry *e, const Datum *vals,
				  const char *nulls, const int *order, const int *runstart,
				  int ndistinct, Datum *newrows)
{
	TupleDesc	desc = RelationGetDescr(b->rel);
	BatchDirect result = BATCH_DIRECT_DONE;
	EState	   *estate;
	ExprContext *econtext;
	ExprState **defaults;
	TupleTableSlot *slot;
	int			k;

	if (IsolationUsesXactSnapshot() || !upsert_insert_direct_ready(e, b->rel))
		return BATCH_DIRECT_NOT_TRIED;
	estate = CreateExecutorState();
	econtext = GetPerTupleExprContext(estate);
	defaults = upsert_default_states(e, estate);
	slot = table_slot_create(b->rel, NULL);
	for (k = 0; k < ndistinct; k++)
	{
		int			el = order[runstart[k]];
		ItemPointerData tid;
		IdemRowResult r;

		CHECK_FOR_INTERRUPTS();
		upsert_form_new_row(e, slot, econtext, defaults, &vals[el * e->ncols],
							&nulls[el * e->ncols]);
		r = idem_row_insert_slot(b->rel, slot, e->arbiters, true, &tid);
		if (r == IDEM_ROW_FALLBACK)
		{
			result = BATCH_DIRECT_UNDONE;
			break;
		}
		newrows[k] = (r == IDEM_ROW_DONE)
			? upsert_slot_row(slot, desc, b->callcxt) : (Datum) 0;
		ResetExprContext(econtext);
	}
	ExecDropSingleTupleTableSlot(slot);
	FreeExecutorState(estate);
	return result;
}

/*
 * The set-based path of a group (inside SPI), where the direct probe
 * applies and every present column has an array type: each element is
 * converted once (vals and nulls, when given: the values of a batch of
 * columns, already in the entry's order); the existing keys are found by
 * one index scan; the
 * distinct missing keys are sorted here in the index's order (first
 * occurrence wins) and inserted by one INSERT ... SELECT FROM ROWS FROM
 * (unnest(one array per column)) ORDER BY ordinality RETURNING the columns
 * (batch_insert_plain: plain in a subtransaction, else ON CONFLICT DO
 * NOTHING); the returned rows are matched to the elements by key (the next
 * sorted key, else binary search); a second index scan with a fresh
 * snapshot finds the keys that conflicted.  What is still missing is left
 * to the one-row path.
 */
static void
batch_fast_group(UpsertBatch *b, UpsertGroup *grp, UpsertEntry *e,
				 Datum *vals, char *nulls)
{
	MemoryContext spicxt = MemoryContextSwitchTo(b->callcxt);
	int			n = grp->n;
	int			nc = e->ncols;
	int			natts = e->tupdesc->natts;
	int		   *order = palloc(sizeof(int) * n);
	int		   *runstart = palloc(sizeof(int) * (n + 1));
	int			nmiss = 0;
	int			ndistinct = 0;
	int			found;
	int			inserted = 0;
	int			next = 0;
	int			i,
				j;
	Datum	   *args;
	Datum	   *cv;
	bool	   *cn;
	Datum	   *all;
	bool	   *allnull;
	Datum	   *rv;
	bool	   *rn;
	Datum	   *probe;
	Datum	   *newrows;
	BatchDirect direct;
	BatchSortArg sortarg;
	uint64		k;

	if (vals == NULL)
	{
		vals = palloc(sizeof(Datum) * n * nc);
		nulls = palloc(sizeof(char) * n * nc);
		for (i = 0; i < n; i++)
		{
			CHECK_FOR_INTERRUPTS();
			upsert_convert(e, b->elems[grp->ords[i] - 1], &vals[i * nc], &nulls[i * nc]);
		}
	}
	/*
	 * The missing keys are inserted in the index's order, so that
	 * overlapping batches cannot deadlock.  Where the probe takes the keys
	 * as one array (batch_fast_probe), all are sorted before it; otherwise
	 * the probe goes in input order and only the missing keys are sorted
	 * (the sort support prepared only if there are any).
	 */
	for (i = 0; i < n; i++)
		if (b->rows[grp->ords[i] - 1] == (Datum) 0 && !batch_null_key(e, &nulls[i * nc]))
			order[nmiss++] = i;
	sortarg.e = e;
	sortarg.ssup = NULL;
	sortarg.vals = vals;
	if (batch_probe_as_array(e))
	{
		sortarg.ssup = batch_sort_support(e);
		batch_sort(&sortarg, order, nmiss);
	}
	found = batch_fast_probe(b, grp, e, vals, order, nmiss, sortarg.ssup);
	idem_stats_note_n(IDEM_OC_EXISTING, found);
	for (i = 0, j = 0; i < nmiss; i++)
		if (b->rows[grp->ords[order[i]] - 1] == (Datum) 0)
			order[j++] = order[i];
	nmiss = j;
	if (nmiss == 0)
	{
		MemoryContextSwitchTo(spicxt);
		return;
	}
	if (sortarg.ssup == NULL)
	{
		sortarg.ssup = batch_sort_support(e);
		batch_sort(&sortarg, order, nmiss);
	}

	for (i = 0; i < nmiss; i++)
		if (i == 0 || batch_cmp_keys(e, sortarg.ssup, &vals[order[i - 1] * nc],
									 &vals[order[i] * nc]) != 0)
			runstart[ndistinct++] = i;
	runstart[ndistinct] = nmiss;

	/* the rows made without SPI, where that applies */
	newrows = palloc(sizeof(Datum) * ndistinct);
	direct = batch_insert_direct(b, e, vals, nulls, order, runstart,
								 ndistinct, newrows);
	if (direct == BATCH_DIRECT_NOT_TRIED)
		direct = batch_insert_each(b, e, vals, nulls, order, runstart,
								   ndistinct, newrows);
	if (direct == BATCH_DIRECT_DONE)
	{
		for (k = 0; k < (uint64) ndistinct; k++)
			for (i = runstart[k]; newrows[k] != (Datum) 0 && i < runstart[k + 1]; i++)
			{
				b->rows[grp->ords[order[i]] - 1] = newrows[k];
				inserted++;
			}
		idem_stats_note_n(IDEM_OC_INSERTED, inserted);
		if (inserted < nmiss)
			idem_stats_note_n(IDEM_OC_CONFLICT,
							  batch_fast_probe(b, grp, e, vals, order, nmiss,
											   sortarg.ssup));
		MemoryContextSwitchTo(spicxt);
		return;
	}

	/* one array per present column: the first element of each key */
	args = palloc(sizeof(Datum) * nc);
	cv = palloc(sizeof(Datum) * ndistinct);
	cn = palloc(sizeof(bool) * ndistinct);
	for (j = 0; j < nc; j++)
	{
		int			dims[1] = {ndistinct};
		int			lbs[1] = {1};

		for (i = 0; i < ndistinct; i++)
		{
			int			el = order[runstart[i]];

			cv[i] = vals[el * nc + j];
			cn[i] = nulls[el * nc + j] == 'n';
		}
		args[j] = PointerGetDatum(construct_md_array(cv, cn, 1, dims, lbs, e->coltypes[j],
													 e->coltyplen[j], e->coltypbyval[j],
													 e->coltypalign[j]));
	}

	MemoryContextSwitchTo(spicxt);
	if (direct == BATCH_DIRECT_UNDONE || !batch_insert_plain(e, args, ndistinct))
		upsert_exec(e, STMT_MANY_UNNEST, 0, args, NULL, 0);
	MemoryContextSwitchTo(b->callcxt);

	/* the returned rows, matched to the elements by key */
	all = palloc(sizeof(Datum) * natts);
	allnull = palloc(sizeof(bool) * natts);
	rv = palloc(sizeof(Datum) * (natts + 1));
	rn = palloc(sizeof(bool) * (natts + 1));
	probe = palloc(sizeof(Datum) * nc);
	for (k = 0; k < SPI_processed; k++)
	{
		int			lo = 0,
					hi = ndistinct - 1,
					hit = -1,
					r;
		bool		nullkey = false;
		HeapTuple	tup;
		Datum		row;

		heap_deform_tuple(SPI_tuptable->vals[k], SPI_tuptable->tupdesc, rv, rn);
		for (i = 0, r = 0; i < natts; i++)
		{
			if (TupleDescAttr(e->tupdesc, i)->attisdropped)
			{
				all[i] = (Datum) 0;
				allnull[i] = true;
				continue;
			}
			all[i] = rv[r];
			allnull[i] = rn[r];
			r++;
		}
		for (j = 0; j < e->nkeys; j++)
		{
			int			p = e->keyparam[j];

			probe[p] = all[e->cols[p] - 1];
			if (allnull[e->cols[p] - 1])
				nullkey = true;
		}
		/* a row whose key a trigger changed matches no element */
		if (nullkey)
			continue;
		/* rows come back in the order inserted: try the next key first */
		if (next < ndistinct &&
			batch_keys_equal(e, probe, &vals[order[runstart[next]] * nc]))
			hit = next;
		while (hit < 0 && lo <= hi)
		{
			int			mid = lo + (hi - lo) / 2;
			int			c = batch_cmp_keys(e, sortarg.ssup, probe,
										   &vals[order[runstart[mid]] * nc]);

			if (c == 0)
			{
				hit = mid;
				break;
			}
			if (c < 0)
				hi = mid - 1;
			else
				lo = mid + 1;
		}
		if (hit < 0)
			continue;
		next = hit + 1;
		tup = heap_form_tuple(e->tupdesc, all, allnull);
		row = heap_copy_tuple_as_datum(tup, e->tupdesc);
		heap_freetuple(tup);
		for (i = runstart[hit]; i < runstart[hit + 1]; i++)
		{
			Datum	   *slot = &b->rows[grp->ords[order[i]] - 1];

			if (*slot == (Datum) 0)
			{
				*slot = row;
				inserted++;
			}
		}
	}
	idem_stats_note_n(IDEM_OC_INSERTED, inserted);

	/* the keys that conflicted: inserted concurrently, or just missed */
	if (inserted < nmiss)
		idem_stats_note_n(IDEM_OC_CONFLICT,
						  batch_fast_probe(b, grp, e, vals, order, nmiss,
										   sortarg.ssup));
	MemoryContextSwitchTo(spicxt);
}

/*
 * Find or insert the rows of one group (inside SPI): the set-based path
 * above where it applies; otherwise direct probes where they apply, then
 * the set statements (SELECT, INSERT in key order, SELECT again).  Then the
 * one-row path for what is still missing (concurrent deletes, RLS,
 * triggers).
 */
static void
batch_run_group(UpsertBatch *b, UpsertGroup *grp)
{
	UpsertEntry *e = upsert_entry(b->rel, UPSERT_MANY, grp->cols, b->keycols);
	Datum		args[3];
	int			round;
	int64	   *missing = palloc(sizeof(int64) * grp->n);
	Datum	   *ords = palloc(sizeof(Datum) * grp->n);
	int			nmissing = 0;
	int			i;
	MemoryContext spicxt;
	UpsertColumns *c = b->columns;

	/*
	 * The set-based path; for a batch of columns only where no column given
	 * has a type modifier, which the JSON form's conversion applies.  A
	 * batch of columns takes every other path as JSON elements.
	 */
	bool		fast = !e->citus && e->arrays_ok && !e->nulls_not_distinct &&
		!(c != NULL && c->typmods) && upsert_direct_ok(e, b->rel, UPSERT_GET);

	if (c != NULL && !fast)
		batch_columns_elems(b);
	if (e->citus)
	{
		batch_citus_group(b, grp, e);
		return;
	}

	if (fast)
	{
		batch_fast_group(b, grp, e, c ? c->vals : NULL, c ? c->nulls : NULL);
		grp->direct = true;
		for (i = 0; i < grp->n; i++)
			if (b->rows[grp->ords[i] - 1] == (Datum) 0)
				missing[nmissing++] = grp->ords[i];
		round = 3;				/* straight to the one-row path */
		if (c != NULL && nmissing > 0)
			batch_columns_elems(b);
	}
	else
	{
		/* rows found directly are kept in the caller's memory, like the rest */
		spicxt = MemoryContextSwitchTo(b->callcxt);
		grp->direct = upsert_direct_batch(e, b->rel, b->elems, grp->ords, grp->n, b->rows);
		MemoryContextSwitchTo(spicxt);

		for (i = 0; i < grp->n; i++)
			if (b->rows[grp->ords[i] - 1] == (Datum) 0)
				missing[nmissing++] = grp->ords[i];
		idem_stats_note_n(IDEM_OC_EXISTING, grp->n - nmissing);
		/* after the direct probe, the missing ones go straight to INSERT */
		round = grp->direct ? 1 : 0;
	}

	args[0] = JsonbPGetDatum(b->arr);
	args[1] = e->emptyrow;
	for (; round < 3 && nmissing > 0; round++)
	{
		UpsertStmt	stmt = (round == 1) ? STMT_MANY_INSERT : STMT_MANY_SELECT;
		uint64		k;
		int			n;

		CHECK_FOR_INTERRUPTS();
		for (i = 0; i < nmissing; i++)
			ords[i] = Int64GetDatum(missing[i]);
		args[2] = PointerGetDatum(construct_array(ords, nmissing, INT8OID, 8,
												  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		upsert_exec(e, stmt, 0, args, "   ", 0);
		for (k = 0; k < SPI_processed; k++)
		{
			bool		isnull;
			int64		o = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[k],
														SPI_tuptable->tupdesc, 1, &isnull));
			Datum		row = SPI_getbinval(SPI_tuptable->vals[k],
											SPI_tuptable->tupdesc, 2, &isnull);

			if (o >= 1 && o <= b->nelems && b->rows[o - 1] == (Datum) 0)
				b->rows[o - 1] = SPI_datumTransfer(row, false, -1);
		}
		for (i = 0, n = 0; i < nmissing; i++)
			if (b->rows[missing[i] - 1] == (Datum) 0)
				missing[n++] = missing[i];
		idem_stats_note_n(round == 0 ? IDEM_OC_EXISTING : round == 1 ? IDEM_OC_INSERTED : IDEM_OC_CONFLICT,
						  nmissing - n);
		nmissing = n;
	}

	for (i = 0; i < nmissing; i++)
	{
		UpsertEntry *one = upsert_entry(b->rel, UPSERT_GET, grp->cols, b->keycols);
		bool		created;
		Datum		row = upsert_one(one, b->elems[missing[i] - 1], UPSERT_GET, &created);

		b->rows[missing[i] - 1] = SPI_datumTransfer(row, false, -1);
		upsert_unpin(one);
	}
	upsert_unpin(e);
}

/* The rows, in input order, into the result set. */
static void
batch_emit(UpsertBatch *b, ReturnSetInfo *rsinfo)
{
	int			i;

	for (i = 0; i < b->nelems; i++)
	{
		HeapTupleHeader th = DatumGetHeapTupleHeader(b->rows[i]);
		HeapTupleData tup;

		tup.t_len = HeapTupleHeaderGetDatumLength(th);
		ItemPointerSetInvalid(&tup.t_self);
		tup.t_tableOid = InvalidOid;
		tup.t_data = th;
		tuplestore_puttuple(rsinfo->setResult, &tup);
	}
}

/*
 * Keep the memory a batch needs in the backend's heap from one call to the
 * next.  A batch takes a few hundred kB per thousand rows (its elements,
 * keys and rows, and the result's tuplestore), all freed when its statement
 * ends.  Until glibc has raised its thresholds (see compat.h), so much free
 * memory at the top of the heap goes back to the kernel after every call,
 * and the next call faults it in again page by page: a backend repeating one
 * batch of 1000 existing keys took 9 to 160 page faults per call, and ran
 * at half the calls per second.  So once, and again when a batch needs more,
 * free a block that glibc maps on its own, of at least 1 MB and twice this
 * batch's memory: the backend then keeps up to twice that free in its heap,
 * as it does anyway once it has freed any large block (a sort's, a hash
 * table's).  Elsewhere than glibc, nothing is done.
 */
static void
batch_keep_heap(UpsertBatch *b)
{
#if IDEM_MALLOC_DYNAMIC
	static Size kept = 0;
	Size		want;
	void	   *volatile block;

	want = Max((Size) 1024 * 1024,
			   2 * MemoryContextMemAllocated(b->callcxt, true));
	want = Min(want, IDEM_MALLOC_DYNAMIC_MAX / 2);
	if (want <= kept)
		return;
	/* volatile: the compiler may drop a malloc() whose block is unused */
	block = malloc(want);
	free(block);
	kept = want;
#endif
}

/*
 * Run a batch's groups (inside SPI), close its table, and return its rows,
 * in input order, as the call's result set.
 */
static Datum
batch_finish(UpsertBatch *b, FunctionCallInfo fcinfo)
{
	int			g;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	for (g = 0; g < b->ngroups; g++)
		batch_run_group(b, &b->groups[g]);
	SPI_finish();
	relation_close(b->rel, NoLock);

	MemoryContextSwitchTo(b->callcxt);
	batch_emit(b, (ReturnSetInfo *) fcinfo->resultinfo);
	batch_keep_heap(b);
	idem_stats_end(IDEM_OC_NONE);
	return (Datum) 0;
}

/* idempotent_upsert_many(tbl, vals jsonb array, key_cols) */
Datum
idempotency_idempotent_upsert_many(PG_FUNCTION_ARGS)
{
	UpsertBatch b;

	idem_stats_begin(IDEM_OP_UPSERT_MANY);
	memset(&b, 0, sizeof(b));
	b.fname = "idempotent_upsert_many";
	b.callcxt = CurrentMemoryContext;
	/* a first argument that is no table's row type is 42809, not XX000 */
	b.rel = upsert_call_begin(fcinfo, b.fname, UPSERT_FORM_MANY);
	InitMaterializedSRF(fcinfo, 0);
	b.arr = PG_GETARG_JSONB_P(1);
	if (!JB_ROOT_IS_ARRAY(b.arr) || JB_ROOT_IS_SCALAR(b.arr))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("vals must be a JSON array of objects"),
				 errhint("Pass the rows as [{\"column\": value, ...}, ...] to %s.", b.fname)));
	upsert_keycols_of(b.rel, PG_ARGISNULL(2) ? NULL : PG_GETARG_ARRAYTYPE_P(2), b.keycols);

	batch_split(&b);
	batch_check_null_keys(&b);
	return batch_finish(&b, fcinfo);
}

/* ---------------------------------------------------------------------
 * A batch given as one array per column
 * --------------------------------------------------------------------- */

/*
 * The arguments of idempotent_upsert_columns(tbl, cols, key_cols,
 * VARIADIC vals): every name of cols a column that may be given (42703,
 * 428C9, 42701), one array per name, each of exactly its column's type
 * (42804), one-dimensional, all of one length (22023).  A column of an
 * array, composite or json type is refused (0A000): its values would go
 * through jsonb where the fast path does not apply, and would not come
 * back the same.  Sets c and cols (the columns given, as a bitmap).
 */
static void
columns_args(FunctionCallInfo fcinfo, UpsertBatch *b, UpsertColumns *c,
			 uint64 *cols)
{
	char	  **names;
	int			nnames;
	int			j;

	memset(cols, 0, sizeof(uint64) * UPSERT_COLWORDS);
	if (get_fn_expr_variadic(fcinfo->flinfo))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s takes one array per column, not a VARIADIC array", b->fname),
				 errhint("Pass each column's array as an argument of its own, without VARIADIC.")));
	names = upsert_names_of(PG_GETARG_ARRAYTYPE_P(1), "cols", &nnames);
	if (nnames == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cols must name at least the key columns"),
				 errhint("Pass the names of the columns whose arrays follow, as a text[].")));
	if (nnames != PG_NARGS() - 3)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the number of arrays of values (%d) differs from the number of names in cols (%d)",
						PG_NARGS() - 3, nnames),
				 errhint("Pass one array of values per name in cols, in the same order.")));

	c->ncols = nnames;
	c->attnums = palloc(sizeof(AttrNumber) * nnames);
	c->elems = palloc(sizeof(Datum *) * nnames);
	c->enulls = palloc(sizeof(bool *) * nnames);
	c->typmods = false;
	for (j = 0; j < nnames; j++)
	{
		char	   *name;
		HeapTuple	atup;
		Form_pg_attribute att;
		Oid			coltype;
		Oid			base;
		Oid			argtype;
		ArrayType  *arr;
		int16		typlen;
		bool		typbyval;
		char		typalign;
		int			n;

		name = names[j];
		atup = upsert_given_column(b->rel, name, "cols", "name in cols");
		att = (Form_pg_attribute) GETSTRUCT(atup);
		c->attnums[j] = att->attnum;
		coltype = att->atttypid;
		if (att->atttypmod != -1)
			c->typmods = true;
		ReleaseSysCache(atup);
		if (BIT_ISSET(cols, c->attnums[j]))
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_COLUMN),
					 errmsg("column \"%s\" specified more than once", name)));
		BIT_SET(cols, c->attnums[j]);

		base = getBaseType(coltype);
		if (base == JSONOID || OidIsValid(get_element_type(base)) ||
			get_typtype(base) == TYPTYPE_COMPOSITE)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("%s does not take values for column \"%s\" of type %s",
							b->fname, name, format_type_be(coltype)),
					 errdetail("Columns of array, composite and json types are not supported."),
					 errhint("Pass these rows as a JSON array to idempotent_upsert_many.")));
		argtype = get_fn_expr_argtype(fcinfo->flinfo, 3 + j);
		if (argtype != UNKNOWNOID && get_element_type(argtype) != coltype)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("the values for column \"%s\" are of type %s, not %s[]",
							name, format_type_be(argtype), format_type_be(coltype)),
					 errhint("Cast the array for column \"%s\" to %s[].",
							 name, format_type_be(coltype))));
		if (PG_ARGISNULL(3 + j))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("the values for column \"%s\" are null", name),
					 errhint("Pass an array (an empty one for no rows).")));
		if (argtype == UNKNOWNOID)
		{
			/* a literal: read as an array of the column's type */
			Oid			arraytype = get_array_type(coltype);
			Oid			infunc;
			Oid			ioparam;

			if (!OidIsValid(arraytype))
				ereport(ERROR,
						(errcode(ERRCODE_DATATYPE_MISMATCH),
						 errmsg("type %s has no array type", format_type_be(coltype))));
			getTypeInputInfo(arraytype, &infunc, &ioparam);
			arr = DatumGetArrayTypeP(OidInputFunctionCall(infunc,
														  DatumGetCString(PG_GETARG_DATUM(3 + j)),
														  ioparam, -1));
		}
		else
			arr = PG_GETARG_ARRAYTYPE_P(3 + j);
		if (ARR_NDIM(arr) > 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the values for column \"%s\" must be a one-dimensional array",
							name)));
		get_typlenbyvalalign(coltype, &typlen, &typbyval, &typalign);
		deconstruct_array(arr, coltype, typlen, typbyval, typalign,
						  &c->elems[j], &c->enulls[j], &n);
		if (j == 0)
			c->nrows = n;
		else if (n != c->nrows)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the arrays of values must all have the same length"),
					 errdetail("The array for column \"%s\" has length %d, the array for column \"%s\" length %d.",
							   names[0], c->nrows, name, n)));
	}
}

/*
 * The elements of a batch of columns as the JSON form has them (b->arr and
 * b->elems), for the paths that take those: every value as a JSON string
 * of its text form, which the conversion turns back into the same value
 * with the column's input function (and type modifier), a jsonb value as
 * it is, a NULL as JSON null.  The text is written as pg_dump writes it,
 * whatever the session's settings: extra_float_digits = 3 (the shortest
 * text that reads back as the same floating-point value), DateStyle ISO
 * (a numeric UTC offset: under SQL or Postgres a timestamptz carries its
 * zone's abbreviation, which may read back as another zone's, IST as
 * Israel's rather than India's) and IntervalStyle postgres.
 */
static void
batch_columns_elems(UpsertBatch *b)
{
	UpsertColumns *c = b->columns;
	JsonbParseState *arrstate = NULL;
	JsonbValue *res;
	MemoryContext oldcxt;
	Oid		   *outfunc;
	bool	   *isjsonb;
	int			nest;
	int			r,
				j;

	if (b->elems != NULL)
		return;
	oldcxt = MemoryContextSwitchTo(b->callcxt);
	outfunc = palloc(sizeof(Oid) * c->ncols);
	isjsonb = palloc(sizeof(bool) * c->ncols);
	for (j = 0; j < c->ncols; j++)
	{
		Oid			typid = TupleDescAttr(RelationGetDescr(b->rel),
										  c->attnums[j] - 1)->atttypid;
		bool		isvarlena;

		getTypeOutputInfo(typid, &outfunc[j], &isvarlena);
		isjsonb[j] = getBaseType(typid) == JSONBOID;
	}
	nest = NewGUCNestLevel();
	(void) set_config_option("extra_float_digits", "3", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("DateStyle", "ISO", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("IntervalStyle", "postgres", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	b->elems = palloc(sizeof(Jsonb *) * (c->nrows + 1));
	(void) pushJsonbValue(&arrstate, WJB_BEGIN_ARRAY, NULL);
	for (r = 0; r < c->nrows; r++)
	{
		JsonbParseState *state = NULL;
		JsonbValue	v;

		CHECK_FOR_INTERRUPTS();
		(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
		for (j = 0; j < c->ncols; j++)
		{
			Form_pg_attribute att = TupleDescAttr(RelationGetDescr(b->rel),
												  c->attnums[j] - 1);

			v.type = jbvString;
			v.val.string.val = NameStr(att->attname);
			v.val.string.len = strlen(NameStr(att->attname));
			(void) pushJsonbValue(&state, WJB_KEY, &v);
			if (c->enulls[j][r])
				v.type = jbvNull;
			else if (isjsonb[j])
			{
				Jsonb	   *jb = DatumGetJsonbP(c->elems[j][r]);

				v.type = jbvBinary;
				v.val.binary.data = &jb->root;
				v.val.binary.len = VARSIZE(jb) - VARHDRSZ;
			}
			else
			{
				v.type = jbvString;
				v.val.string.val = OidOutputFunctionCall(outfunc[j], c->elems[j][r]);
				v.val.string.len = strlen(v.val.string.val);
			}
			(void) pushJsonbValue(&state, WJB_VALUE, &v);
		}
		res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
		b->elems[r] = JsonbValueToJsonb(res);
		v.type = jbvBinary;
		v.val.binary.data = &b->elems[r]->root;
		v.val.binary.len = VARSIZE(b->elems[r]) - VARHDRSZ;
		(void) pushJsonbValue(&arrstate, WJB_ELEM, &v);
	}
	res = pushJsonbValue(&arrstate, WJB_END_ARRAY, NULL);
	b->arr = JsonbValueToJsonb(res);
	AtEOXact_GUC(true, nest);
	MemoryContextSwitchTo(oldcxt);
}

/*
 * idempotent_upsert_columns(tbl, cols, key_cols, VARIADIC vals): the rows
 * of the batch are the arrays' elements taken at the same position.  Where
 * the set-based path applies, their values go to it as they are (no JSON
 * is made or parsed); otherwise, and for what that path leaves to the
 * one-row path, they are made into the JSON form's elements.
 */
Datum
idempotency_idempotent_upsert_columns(PG_FUNCTION_ARGS)
{
	UpsertBatch b;
	UpsertColumns c;
	UpsertGroup grp;
	uint64		cols[UPSERT_COLWORDS];
	int			r,
				j;

	idem_stats_begin(IDEM_OP_UPSERT_MANY);
	memset(&b, 0, sizeof(b));
	memset(&c, 0, sizeof(c));
	b.fname = "idempotent_upsert_columns";
	b.callcxt = CurrentMemoryContext;
	b.rel = upsert_call_begin(fcinfo, b.fname, UPSERT_FORM_COLUMNS);
	InitMaterializedSRF(fcinfo, 0);
	columns_args(fcinfo, &b, &c, cols);
	upsert_keycols_of(b.rel, PG_ARGISNULL(2) ? NULL : PG_GETARG_ARRAYTYPE_P(2), b.keycols);
	b.columns = &c;
	b.nelems = c.nrows;
	b.rows = palloc0(sizeof(Datum) * (c.nrows + 1));

	if (c.nrows > 0)
	{
		UpsertEntry *e = upsert_entry(b.rel, UPSERT_MANY, cols, b.keycols);
		int			nc = e->ncols;
		int		   *pos = palloc(sizeof(int) * c.ncols);

		/* each given column's place among the entry's (ascending attnum) */
		for (j = 0; j < c.ncols; j++)
			for (pos[j] = 0; e->cols[pos[j]] != c.attnums[j]; pos[j]++)
				Assert(pos[j] < nc - 1);
		c.vals = palloc(sizeof(Datum) * c.nrows * nc);
		c.nulls = palloc(sizeof(char) * c.nrows * nc);
		for (r = 0; r < c.nrows; r++)
		{
			for (j = 0; j < c.ncols; j++)
			{
				c.vals[r * nc + pos[j]] = c.elems[j][r];
				c.nulls[r * nc + pos[j]] = c.enulls[j][r] ? 'n' : ' ';
			}
			/* NULL keys: 22004 before anything is read or written */
			(void) upsert_check_keys(e, &c.nulls[r * nc]);
		}
		upsert_unpin(e);

		memcpy(grp.cols, cols, sizeof(cols));
		grp.n = c.nrows;
		grp.ords = palloc(sizeof(int64) * c.nrows);
		for (r = 0; r < c.nrows; r++)
			grp.ords[r] = r + 1;
		grp.direct = false;
		b.groups = &grp;
		b.ngroups = 1;
	}
	return batch_finish(&b, fcinfo);
}

/* The entry point of 0.1.0's SQL objects, served until they are updated. */
Datum
idem_upsert_many(PG_FUNCTION_ARGS)
{
	return idempotency_idempotent_upsert_many(fcinfo);
}

Datum
idem_upsert(PG_FUNCTION_ARGS)
{
	return idempotency_idempotent_upsert(fcinfo);
}

Datum
idem_get_or_create(PG_FUNCTION_ARGS)
{
	return idempotency_get_or_create(fcinfo);
}

Datum
idem_update_or_create(PG_FUNCTION_ARGS)
{
	return idempotency_update_or_create(fcinfo);
}
