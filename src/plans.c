/*-------------------------------------------------------------------------
 *
 * plans.c
 *	  Two helpers every feature needs: saved SPI plans prepared from a table
 *	  of definitions, and internal subtransactions.
 *
 * Saved plans.  A feature describes its statements in a const IdemPlanDef
 * array (SQL text, parameter types) and keeps a static SPIPlanPtr array of
 * the same length; idem_plan() prepares a statement on first use and keeps
 * it (SPI_keepplan) for the life of the backend.  The plan cache revalidates
 * kept plans after DDL on the tables they use, so they never need to be
 * dropped.  The SQL must be fully schema-qualified (tables and operators),
 * as if it were planned under whatever search_path the caller has (it runs
 * under a pinned one, see below, but is written not to depend on that).
 *
 * Internal subtransactions.  BeginInternalSubTransaction() must always be
 * paired with a commit or a rollback before control returns to the caller,
 * also when the body raises: an error that escapes with the subtransaction
 * still open leaves the caller's transaction in a state that neither
 * PL/pgSQL's exception handling nor ROLLBACK expects (a FATAL error or a
 * crash at the next abort).  idem_subxact_run() is the only place that
 * begins one; it restores the caller's memory context and resource owner on
 * every path.  A subtransaction that is only an optimisation first asks
 * idem_subxid_cache_room() whether its xid would still fit the backend's
 * cache of subtransaction xids (PGPROC's subxids, read without a lock:
 * only this backend changes its own).
 *
 * Running as the table owner.  processed_events and leases grant no write
 * privilege to anyone but their owner: every change goes through the
 * extension's functions, which enforce the rules (a role acts on its own
 * records; a lease changes hands only by compare-and-swap).  Those functions
 * run their statements as the table's owner, the way PostgreSQL runs
 * maintenance commands and foreign-key checks: SetUserIdAndSecContext() with
 * SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION, so that any
 * trigger or policy the owner attached runs with the owner's rights, never
 * the caller's, and cannot change the session's role or create temporary
 * objects.  The caller's identity is read before the switch and passed to
 * the statements as a parameter.  search_path is pinned to pg_catalog,
 * pg_temp meanwhile (a GUC nest level, as a function's SET clause makes),
 * as PostgreSQL 17 does for maintenance commands: code the owner attached
 * looks its unqualified names up in pg_catalog (and, for relations, the
 * session's temporary schema last), never in a schema the caller put first
 * in its search_path.  The pin applies always; the switch to the owner only
 * while the schema belongs to a superuser: in 0.1.0's layout (a database
 * not updated yet) it belonged to the installing role, which could rename
 * it and put a table of its own under the name between the owner lookup
 * and the statement, so statements there run as the caller, whom 0.1.0
 * granted what they need.
 *
 * The tables' OIDs and owners are looked up once per backend and kept in
 * a small static array; relcache and schema invalidations (ALTER TABLE ...
 * OWNER TO, RENAME, DROP, DROP/ALTER SCHEMA) clear it, and the next call
 * looks them up again.  They are read before any lock on the table, as the
 * catalog lookups they replace were: the statements lock the table.
 *
 * Memory and lifetime.  Kept plans live in CacheMemoryContext until the
 * backend exits; the table cache is static.  Nothing else here outlives a
 * call.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "idempotency.h"
#include "plans.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_namespace.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "access/xact.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

/* The saved plan for statement which of set, prepared on first use. */
SPIPlanPtr
idem_plan(const IdemPlanSet *set, int which)
{
	Assert(which >= 0 && which < set->count);
	if (set->plans[which] == NULL)
	{
		const IdemPlanDef *def = &set->defs[which];
		SPIPlanPtr	plan;

		plan = SPI_prepare(def->sql, def->nargs, (Oid *) def->argtypes);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed for %s statement %d: %s",
				 set->feature, which, SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed for %s statement %d",
				 set->feature, which);
		set->plans[which] = plan;
	}
	return set->plans[which];
}

/*
 * Execute statement which of set (read-write, so each statement takes a
 * fresh snapshot under READ COMMITTED); returns the number of rows
 * processed.  The caller must be connected to SPI.
 */
uint64
idem_plan_exec(const IdemPlanSet *set, int which, Datum *values,
			   const char *nulls, long count)
{
	int			rc;

	rc = SPI_execute_plan(idem_plan(set, which), values, nulls, false, count);
	if (rc < 0)
		elog(ERROR, "%s statement %d failed: %s", set->feature, which,
			 SPI_result_code_string(rc));
	return SPI_processed;
}

bool
idem_subxact_run(IdemSubxactBody body, IdemSubxactCleanup cleanup, void *arg,
				 int catch_sqlstate, bool *caught)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile bool keep = false;
	ErrorData  *volatile edata = NULL;
	int			level;

	if (caught)
		*caught = false;

	BeginInternalSubTransaction(NULL);
	level = GetCurrentTransactionNestLevel();
	/* Results are allocated in the caller's context, not the subxact's. */
	MemoryContextSwitchTo(oldcxt);

	PG_TRY();
	{
		keep = body(arg);
		if (keep)
			ReleaseCurrentSubTransaction();
		else
			RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();

		/* Unless the error came from ending the subtransaction itself. */
		if (GetCurrentTransactionNestLevel() == level)
			RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_END_TRY();

	if (cleanup)
		cleanup(arg);

	if (edata != NULL)
	{
		if (catch_sqlstate == 0 || edata->sqlerrcode != catch_sqlstate)
			ReThrowError(edata);
		FreeErrorData(edata);
		if (caught)
			*caught = true;
		return false;
	}
	return keep;
}

bool
idem_subxid_cache_room(void)
{
	/* only this backend changes its own cache: no lock needed to read it */
	return !MyProc->subxidStatus.overflowed &&
		MyProc->subxidStatus.count < PGPROC_MAX_CACHED_SUBXIDS;
}

/*
 * The extension's own tables (idempotency.<name>): OID and owner, looked up
 * once per backend.  idem_tables_relcache_inval() forgets an entry when its table's
 * relcache entry is invalidated (ALTER TABLE ... OWNER TO, RENAME, DROP, a
 * reset of every entry) and idempotency.c's schema callback forgets them all when
 * any schema changes (the schema renamed or dropped).
 */
typedef struct IdemTable
{
	const char *name;			/* a string literal of the caller */
	Oid			relid;			/* InvalidOid: look it up again */
	Oid			owner;
	Oid			nspowner;		/* the schema's owner */
} IdemTable;

#define IDEM_MAX_TABLES	8

static IdemTable idem_tables[IDEM_MAX_TABLES];
static int	idem_ntables = 0;
static uint64 idem_tables_invals = 0;	/* invalidations seen, for lookups */

void
idem_tables_relcache_inval(Oid relid)
{
	int			i;

	idem_tables_invals++;
	for (i = 0; i < idem_ntables; i++)
		if (relid == InvalidOid || idem_tables[i].relid == relid)
			idem_tables[i].relid = InvalidOid;
}



static void
table_missing(const char *table)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_TABLE),
			 errmsg("relation \"%s.%s\" does not exist",
					IDEMPOTENCY_SCHEMA, table),
			 errhint("Drop and re-create extension \"%s\".",
					 IDEMPOTENCY_EXTNAME)));
}

/*
 * idem_table_lookup(), and the owner of the schema (*nspowner): only when
 * that is a superuser may statements on the table run as its owner (see
 * idem_spi_begin()).
 */
static Oid
table_lookup(const char *table, bool missing_ok, Oid *owner, Oid *nspowner)
{
	IdemTable  *t = NULL;
	Oid			nsp;
	Oid			relid;
	HeapTuple	tup;
	uint64		invals;
	int			i;

	for (i = 0; i < idem_ntables; i++)
		if (strcmp(idem_tables[i].name, table) == 0)
		{
			t = &idem_tables[i];
			if (OidIsValid(t->relid))
			{
				*owner = t->owner;
				*nspowner = t->nspowner;
				return t->relid;
			}
			break;
		}

	invals = idem_tables_invals;
	nsp = get_namespace_oid(IDEMPOTENCY_SCHEMA, false);
	relid = get_relname_relid(table, nsp);
	if (!OidIsValid(relid) && missing_ok)
		return InvalidOid;
	if (!OidIsValid(relid))
		table_missing(table);
	/* dropped since, concurrently: as if it had not been found */
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		table_missing(table);
	*owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	tup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nsp));
	if (!HeapTupleIsValid(tup))
		table_missing(table);
	*nspowner = ((Form_pg_namespace) GETSTRUCT(tup))->nspowner;
	ReleaseSysCache(tup);

	if (t == NULL && idem_ntables < IDEM_MAX_TABLES)
	{
		t = &idem_tables[idem_ntables++];
		t->name = table;
	}
	/* Not if an invalidation arrived while we were reading the catalogs. */
	if (t != NULL && invals == idem_tables_invals)
	{
		t->relid = relid;
		t->owner = *owner;
		t->nspowner = *nspowner;
	}
	return relid;
}

Oid
idem_table_lookup(const char *table, bool missing_ok, Oid *owner)
{
	Oid			nspowner;

	return table_lookup(table, missing_ok, owner, &nspowner);
}

/*
 * Set search_path to IDEM_SAFE_SEARCH_PATH in a new GUC nest level; the
 * caller ends it with AtEOXact_GUC(true, level) (an error unwinds it with
 * the (sub)transaction).
 */
int
idem_pin_search_path(void)
{
	int			level = NewGUCNestLevel();

	(void) set_config_option("search_path", IDEM_SAFE_SEARCH_PATH,
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	return level;
}

void
idem_spi_begin(IdemSpi *spi, const char *table)
{
	Oid			owner;
	Oid			nspowner;

	(void) table_lookup(table, false, &owner, &nspowner);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	GetUserIdAndSecContext(&spi->save_userid, &spi->save_sec_context);
	spi->guc_level = idem_pin_search_path();
	/* superuser_arg() keeps its answer fresh (ALTER ROLE ... NOSUPERUSER) */
	if (superuser_arg(nspowner))
		SetUserIdAndSecContext(owner,
							   spi->save_sec_context |
							   SECURITY_LOCAL_USERID_CHANGE |
							   SECURITY_RESTRICTED_OPERATION);
}

void
idem_spi_end(IdemSpi *spi)
{
	AtEOXact_GUC(true, spi->guc_level);
	SetUserIdAndSecContext(spi->save_userid, spi->save_sec_context);
	SPI_finish();
}
