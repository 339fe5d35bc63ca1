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
 * the statements as a parameter.  While the table has code the owner
 * attached, search_path is pinned to pg_catalog, pg_temp (a GUC nest level,
 * as a function's SET clause makes), as PostgreSQL 17 does for maintenance
 * commands: that code looks its unqualified names up in pg_catalog (and,
 * for relations, the session's temporary schema last), never in a schema
 * the caller put first in its search_path.  The switch to the owner
 * applies only while the schema belongs to a superuser: in 0.1.0's layout
 * (a database not updated yet) it belonged to the installing role, which
 * could rename it and put a table of its own under the name between the
 * owner lookup and the statement, so statements there run as the caller,
 * whom 0.1.0 granted what they need.
 *
 * When the pin is needed.  The statements themselves name every table,
 * operator, function and type with its schema, and read only the table itself
 * (ONLY; a Citus table's statements need not, since Citus gives the table a
 * trigger and so the pin), so the only code that can look names up at run
 * time is code the owner attached to the table: triggers, rules, CHECK
 * constraints, index expressions and predicates, operator classes, access
 * methods and domains of its own, and defaults, generated columns and row
 * security policies that call a function (not only one written in SQL or a
 * procedural language: to_regclass() and ts_rewrite() are built in).
 * table_runs_code() says whether the table has any of that, conservatively
 * (anything not plainly understood counts as code, and so do inheritance
 * children and a partition's constraint); the functions of the extension's
 * own defaults and policy are allowed by name.  A table without such code, as
 * the extension creates its tables, needs no pin, and the GUC nest level, two
 * computations of the search path and a visit of every setting at its end
 * (about a twentieth of a claim + complete) are saved, as long as the
 * backend's callers keep one search_path: the saved plans are made again
 * whenever the path they were made under changes, which would cost far more
 * than the pin in a backend whose callers switch paths (a schema per tenant),
 * so such a backend pins from the first switch on (callers_change_path()).
 * The answer is only good while no such code can be added: for statements
 * that write, idem_spi_begin() first takes the lock they will take (ROW
 * EXCLUSIVE), and answers after it.  Every command that adds code to a
 * table takes a lock that conflicts with ROW EXCLUSIVE (CREATE TRIGGER,
 * CREATE INDEX, ALTER TABLE, CREATE RULE, CREATE POLICY), so none can
 * commit until the transaction ends; CREATE INDEX CONCURRENTLY does not,
 * but the planner ignores its index until it is valid, and it waits for
 * the writers that might not know the index before the index is
 * maintained.  A read's lock (ACCESS SHARE, ROW SHARE) does not keep
 * CREATE INDEX out, and a plan calls the operator class of an index it
 * scans, so the statements that only read (lease_status(), lease_assert(),
 * the Citus mutex statements) always pin, without asking: none is a hot
 * path.  The answer is kept with the table's OID and forgotten with it:
 * each of those commands invalidates the table's relcache entry.
 *
 * The same answer, no code, lets src/rows.c change a row without the
 * executor (IdemSpi.direct): nothing but the change could happen.
 *
 * The tables' OIDs and owners are looked up once per backend and kept in
 * a small static array; relcache and schema invalidations (ALTER TABLE ...
 * OWNER TO, RENAME, DROP, DROP/ALTER SCHEMA) clear it, and the next call
 * looks them up again.  They are read before any lock on the table, as the
 * catalog lookups they replace were; idem_spi_begin() looks again if an
 * invalidation arrived while it waited for the lock.
 *
 * Memory and lifetime.  Kept plans live in CacheMemoryContext until the
 * backend exits; the table cache is static, and the search_path of the
 * first call that could skip the pin is kept in TopMemoryContext for the
 * life of the backend.  Nothing else here outlives a call.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "idempotency.h"
#include "plans.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/transam.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_language.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "rewrite/rowsecurity.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
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
	int			runs_code;		/* table_runs_code(): 1, 0, -1 not known yet */
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



/* The entry of idempotency.<table>, or NULL if it has none yet. */
static IdemTable *
table_entry(const char *table)
{
	int			i;

	for (i = 0; i < idem_ntables; i++)
		if (strcmp(idem_tables[i].name, table) == 0)
			return &idem_tables[i];
	return NULL;
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
	IdemTable  *t = table_entry(table);
	Oid			nsp;
	Oid			relid;
	HeapTuple	tup;
	uint64		invals;

	if (t != NULL && OidIsValid(t->relid))
	{
		*owner = t->owner;
		*nspowner = t->nspowner;
		return t->relid;
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
		t->runs_code = -1;
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

/*
 * An immutable function of the server's own (language internal, from its
 * initial catalog): its result depends on its arguments alone, so it reads
 * no catalog and looks no name up (a cast such as int4(bigint), which
 * a serial column's default calls around nextval(), lower(), ...).
 */
static bool
func_immutable_internal(Oid func)
{
	HeapTuple	tup;
	Form_pg_proc proc;
	bool		result;

	if (func >= FirstGenbkiObjectId)
		return false;
	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(func));
	if (!HeapTupleIsValid(tup))
		return false;
	proc = (Form_pg_proc) GETSTRUCT(tup);
	result = (proc->provolatile == PROVOLATILE_IMMUTABLE &&
			  proc->prolang == INTERNALlanguageId && !proc->proretset);
	ReleaseSysCache(tup);
	return result;
}

/*
 * Functions a default or a policy of a table without owner's code may
 * call: those of the extension's own tables, a few alike, and the
 * immutable internal ones.  Being built in is not enough: some built-in
 * functions look names up through search_path (to_regclass(), a
 * text-to-regclass cast, ts_rewrite() running a query it is given), none
 * of them immutable.  None of these does.
 */
static bool
func_not_listed(Oid func, void *context)
{
	switch (func)
	{
		case F_TEXT_NAME:
		case F_CURRENT_USER:
		case F_SESSION_USER:
		case F_NOW:
		case F_TRANSACTION_TIMESTAMP:
		case F_STATEMENT_TIMESTAMP:
		case F_CLOCK_TIMESTAMP:
		case F_GEN_RANDOM_UUID:
		case F_NEXTVAL:			/* of a regclass constant: no name to look up */
		case F_PG_HAS_ROLE_OID_TEXT:
		case F_TO_REGROLE:		/* roles are not in schemas */
		case F_QUOTE_IDENT:
			return false;
		default:
			return !func_immutable_internal(func);
	}
}

/*
 * Can evaluating a default, a generation expression or a row security
 * policy's expression run code other than the functions listed above?
 * Only the nodes listed here are understood; any other (a domain's check,
 * a subquery, a cast through text, ...) counts as code.
 */
static bool
expr_runs_code(Node *node, void *context)
{
	if (node == NULL)
		return false;
	switch (nodeTag(node))
	{
		case T_List:
		case T_Var:
		case T_Const:
		case T_FuncExpr:
		case T_OpExpr:
		case T_SQLValueFunction:
		case T_NextValueExpr:
		case T_RelabelType:
		case T_CollateExpr:
			break;
		default:
			return true;
	}
	/* CURRENT_SCHEMA reads search_path; the clock and the user do not */
	if (IsA(node, SQLValueFunction) &&
		(((SQLValueFunction *) node)->op == SVFOP_CURRENT_SCHEMA ||
		 ((SQLValueFunction *) node)->op == SVFOP_CURRENT_CATALOG))
		return true;
	if (check_functions_in_node(node, func_not_listed, context))
		return true;
	return expression_tree_walker(node, expr_runs_code, context);
}

/* A built-in type that is not a domain (whose checks are code)? */
static bool
type_is_builtin_plain(Oid type)
{
	return type < FirstNormalObjectId && get_typtype(type) != TYPTYPE_DOMAIN;
}

/*
 * Can maintaining index indexoid run code: an expression, a predicate, an
 * exclusion operator, an operator class or access method not built in?
 */
static bool
index_runs_code(Oid indexoid)
{
	HeapTuple	tup;
	Form_pg_index index;
	Datum		d;
	oidvector  *opclasses;
	bool		isnull;
	bool		result = false;
	int			i;

	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
	if (!HeapTupleIsValid(tup))
		return true;
	index = (Form_pg_index) GETSTRUCT(tup);
	if (index->indisexclusion ||
		!heap_attisnull(tup, Anum_pg_index_indexprs, NULL) ||
		!heap_attisnull(tup, Anum_pg_index_indpred, NULL))
		result = true;
	else
	{
		d = SysCacheGetAttr(INDEXRELID, tup, Anum_pg_index_indclass, &isnull);
		opclasses = (oidvector *) DatumGetPointer(d);
		for (i = 0; !isnull && i < opclasses->dim1; i++)
			if (opclasses->values[i] >= FirstNormalObjectId)
				result = true;
	}
	ReleaseSysCache(tup);
	if (!result)
	{
		tup = SearchSysCache1(RELOID, ObjectIdGetDatum(indexoid));
		if (!HeapTupleIsValid(tup))
			return true;
		result = ((Form_pg_class) GETSTRUCT(tup))->relam >= FirstNormalObjectId;
		ReleaseSysCache(tup);
	}
	return result;
}

bool
idem_expr_runs_code(Node *expr)
{
	return expr_runs_code(expr, NULL);
}

bool
idem_index_runs_code(Oid indexoid)
{
	return index_runs_code(indexoid);
}

/*
 * Can a statement on rel run code that looks names up through search_path
 * (see "When the pin is needed" above)?  rel must be locked.  The policy
 * the extension puts on processed_events (built-in functions of the owner
 * column) is not such code.
 */
static bool
rel_runs_code(Relation rel)
{
	Form_pg_class form = RelationGetForm(rel);
	TupleDesc	desc = RelationGetDescr(rel);
	TupleConstr *constr = desc->constr;
	List	   *indexes;
	ListCell   *lc;
	int			i;

	if (form->relkind != RELKIND_RELATION ||
		form->relam != HEAP_TABLE_AM_OID ||
		form->relhasrules || form->relhassubclass || form->relispartition ||
		rel->trigdesc != NULL)
		return true;
	/* a policy's expressions, whether or not they apply to the statements */
	if (form->relrowsecurity)
	{
		if (rel->rd_rsdesc == NULL)
			return true;
		foreach(lc, rel->rd_rsdesc->policies)
		{
			RowSecurityPolicy *policy = (RowSecurityPolicy *) lfirst(lc);

			if (expr_runs_code((Node *) policy->qual, NULL) ||
				expr_runs_code((Node *) policy->with_check_qual, NULL))
				return true;
		}
	}
	if (constr != NULL && constr->num_check > 0)
		return true;
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && !type_is_builtin_plain(att->atttypid))
			return true;
	}
	for (i = 0; constr != NULL && i < constr->num_defval; i++)
		if (expr_runs_code(stringToNode(constr->defval[i].adbin), NULL))
			return true;
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		if (index_runs_code(lfirst_oid(lc)))
			return true;
	}
	list_free(indexes);
	return false;
}

/*
 * rel_runs_code() for idempotency.<table>, whose OID is relid and which
 * the caller has locked; kept with the table's entry until an invalidation
 * clears it.  If an invalidation arrives while the catalogs are read, the
 * answer is "yes" for this call and is not kept.
 */
static bool
table_runs_code(const char *table, Oid relid)
{
	IdemTable  *t = table_entry(table);
	uint64		invals = idem_tables_invals;
	Relation	rel;
	bool		runs;

	if (t != NULL && t->relid == relid && t->runs_code >= 0)
		return t->runs_code > 0;

	rel = relation_open(relid, NoLock);
	runs = rel_runs_code(rel);
	relation_close(rel, NoLock);
	if (invals != idem_tables_invals)
		return true;
	if (t != NULL && t->relid == relid)
		t->runs_code = runs ? 1 : 0;
	return runs;
}

/*
 * Has this backend been called under more than one search_path (or by more
 * than one role, for "$user")?  The saved plans remember the path they
 * were made under and are made again when it changes; unpinned, they would
 * be made again at every switch.  From the first switch on, the backend
 * pins, and the plans, made once more under the pinned path, stay.
 */
static bool
callers_change_path(void)
{
	static char *first_path = NULL;		/* in TopMemoryContext */
	static Oid	first_user = InvalidOid;
	static bool changed = false;

	if (changed)
		return true;
	if (first_path == NULL)
	{
		first_path = MemoryContextStrdup(TopMemoryContext,
										 namespace_search_path);
		first_user = GetUserId();
	}
	else if (first_user != GetUserId() ||
			 strcmp(first_path, namespace_search_path) != 0)
		changed = true;
	return changed;
}

void
idem_spi_begin(IdemSpi *spi, const char *table, bool writes)
{
	Oid			relid;
	Oid			owner;
	Oid			nspowner;
	bool		pin = true;

	spi->direct = false;
	relid = table_lookup(table, false, &owner, &nspowner);
	/* a read always pins (its lock would not keep an index out): no lock */
	if (writes)
	{
		for (;;)
		{
			uint64		invals = idem_tables_invals;
			Oid			again;

			LockRelationOid(relid, RowExclusiveLock);
			if (invals == idem_tables_invals)
				break;
			/* renamed, dropped or replaced while we waited? */
			again = table_lookup(table, false, &owner, &nspowner);
			if (again == relid)
				break;
			UnlockRelationOid(relid, RowExclusiveLock);
			relid = again;
		}
		spi->direct = !table_runs_code(table, relid);
		pin = !spi->direct || callers_change_path();
	}
	spi->relid = relid;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	GetUserIdAndSecContext(&spi->save_userid, &spi->save_sec_context);
	spi->guc_level = pin ? idem_pin_search_path() : -1;
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
	if (spi->guc_level >= 0)
		AtEOXact_GUC(true, spi->guc_level);
	SetUserIdAndSecContext(spi->save_userid, spi->save_sec_context);
	SPI_finish();
}
