/*-------------------------------------------------------------------------
 *
 * callscan.c
 *	  A custom scan for a call of idempotent_upsert, get_or_create or
 *	  update_or_create in FROM ("IdempotencyCall"), in place of
 *	  PostgreSQL's Function Scan.
 *
 * Design
 * ------
 * A Function Scan runs a function that returns one row as it runs a set-
 * returning one: per execution it sets up an expression state for every
 * argument, resolves the polymorphic result type again, and at run time
 * copies that row type from the type cache, puts the row into a tuplestore
 * and reads it back.  For the upserts' hit that is about a sixth of the
 * call's CPU, as much as the function itself spends besides its index
 * search.  This node calls the function once and hands its row to the
 * plan as it is.
 *
 * Planning.  set_rel_pathlist_hook: a base relation that is a function in
 * FROM (one function, no WITH ORDINALITY), a call (FuncExpr) of a function
 * that returns no set (the batches have the same support function) and
 * whose planner support function is this library's upsert_support (so one
 * of the three, in a database whose extension has it), returning a row type
 * (called with anything else, the function raises its error from a Function
 * Scan), not where Citus is installed (it plans function calls over its
 * tables itself), and whose columns are needed as plain columns (no
 * whole-row reference, no placeholder): its paths are replaced by one
 * CustomPath with the same parameterization (the call's lateral
 * references) and the same costs, the call in its custom_private.  The
 * call is the plan's custom_exprs (its outer references become nestloop
 * parameters, as a Function Scan's do).  Two shapes of plan:
 *
 * - idempotent_upsert returns its table's own row type.  When every column
 *   the query uses is one the table has now, as the query was analyzed
 *   (callscan_table, which locks the table as the parser locks the tables a
 *   query names), the range table entry becomes the table's and the plan
 *   scans it (scanrelid): the executor takes the scan tuple's type from the
 *   relation, where it would build one at every execution, and the table
 *   is one of the plan's relations, so a cached plan is locked before it
 *   runs and made again when the table changes.  The entry asks for no
 *   permission: the function checks what it reads and writes.
 *
 * - Otherwise (get_or_create and update_or_create, whose row is the item
 *   and whether it was created; a query analyzed before the table
 *   changed) the plan has no scan relation; custom_scan_tlist lists the
 *   call's result columns, one per attribute of its row type, a NULL
 *   constant where the attribute is dropped, each column the query uses
 *   with the type the query was analyzed with (the row type may have
 *   changed since: a prepared statement planned again after an ALTER
 *   TABLE; the executor then raises 42804).
 *
 * Execution.  BeginCustomScan checks EXECUTE on the function and runs the
 * object-access hook, as the executor does for any call, and sets up the
 * arguments; the first ExecCustomScan evaluates them and calls the function
 * with a ReturnSetInfo whose expectedDesc is the plan's row type (the
 * function compares it with the table's columns once the table is locked,
 * as under a Function Scan, and raises 42804 before reading or writing
 * anything if they changed: under a table scan the plan's row type is the
 * table's own descriptor, and the function compares no further; it also
 * takes the relation the executor opened, callscan_rel, instead of opening
 * the table again), then stores the returned row in the scan slot: as it
 * is, where the slot is a heap tuple slot (from PostgreSQL 16, see
 * IDEM_CALLSCAN_SLOT_OPS) and the row is the table's (a table scan), whose
 * columns are then taken apart only as they are read; otherwise taken
 * apart into a virtual tuple.  A
 * rescan with a changed parameter calls the function again; without one it
 * returns the same row again, as a Function Scan rewinds its tuplestore (a
 * cross join with the call must not upsert once per outer row).  Backward
 * scans, mark/restore and parallel execution are not offered: the planner
 * adds a Material node where a cursor needs one, and the functions are
 * parallel unsafe.
 *
 * Memory.  The state lives in the executor's query context.  The
 * arguments are evaluated in the node's per-tuple memory, which ExecScan
 * resets before each fetch; the function runs in the node's own context
 * (callcxt), so the row it returns is kept there for rescans, and callcxt
 * is reset when the function is called again.  Kept between executions,
 * per backend: the hook's previous hook, and the functions' FmgrInfo
 * (callscan_fmgr_memo), forgotten on any pg_proc invalidation.
 * callscan_fcinfo and callscan_rel point into the running statement's
 * executor state only while its function is being called (PG_FINALLY
 * restores them), and the function clears them when it takes the
 * relation, before it runs any SQL of its own.  The scan slot may point
 * into callcxt (through the state's HeapTupleData), and is cleared before
 * callcxt is reset.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "idempotency.h"
#include "citus.h"
#include "compat.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_class.h"
#include "catalog/pg_proc.h"
#include "executor/executor.h"
#include "executor/nodeCustom.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "nodes/extensible.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "nodes/pathnodes.h"
#include "optimizer/pathnode.h"
#include "optimizer/paths.h"
#include "optimizer/optimizer.h"
#include "optimizer/restrictinfo.h"
#include "parser/parse_coerce.h"
#include "parser/parsetree.h"
#include "pgstat.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/ruleutils.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#define CALLSCAN_NAME "IdempotencyCall"

typedef struct CallScanState
{
	CustomScanState css;
	FuncExpr   *call;
	ExprState **args;			/* per argument: its state, or NULL for a
								 * constant (its value set once in fcinfo) */
	FmgrInfo	flinfo;
	FunctionCallInfo fcinfo;
	TupleDesc	expected;		/* the plan's row type, dropped columns
								 * marked */
	bool		table;			/* the plan scans the call as its table:
								 * the scan tuple is the table's row */
	MemoryContext callcxt;		/* the row kept for rescans */
	Datum		row;			/* the call's row, in callcxt, when called */
	bool		rownull;
	bool		called;			/* row holds this parameter set's call */
	bool		done;			/* the row was returned since (re)start */
	HeapTupleData tuple;		/* the row in a heap tuple scan slot */
} CallScanState;

/*
 * The functions' FmgrInfo, looked up once per backend and copied into each
 * execution's state (fmgr_info() reads pg_proc and the library's symbol
 * table on every call).  Forgotten on any pg_proc invalidation, and not
 * kept while a loaded module asks to wrap function calls
 * (needs_fmgr_hook), whose answer may change when another module loads.
 */
#define CALLSCAN_FMGR_MEMO 4
typedef struct CallScanFmgrMemo
{
	Oid			funcid;			/* InvalidOid: empty */
	FmgrInfo	finfo;			/* fn_mcxt TopMemoryContext; no fn_extra */
} CallScanFmgrMemo;

static CallScanFmgrMemo callscan_fmgr_memo[CALLSCAN_FMGR_MEMO];
static int	callscan_fmgr_next = 0; /* the slot to fill next */

/*
 * The call a table scan is making, and the relation the executor opened and
 * locked for it: the function takes the relation instead of opening it
 * again (idem_callscan_relation()).  Set only around the function's call,
 * restored however the call ends.
 */
static FunctionCallInfo callscan_fcinfo = NULL;
static Relation callscan_rel = NULL;

static set_rel_pathlist_hook_type prev_set_rel_pathlist_hook = NULL;

static void callscan_set_rel_pathlist(PlannerInfo *root, RelOptInfo *rel,
									  Index rti, RangeTblEntry *rte);
static Plan *callscan_plan(PlannerInfo *root, RelOptInfo *rel,
						   CustomPath *best_path, List *tlist,
						   List *clauses, List *custom_plans);
static Node *callscan_create_state(CustomScan *cscan);
static void callscan_begin(CustomScanState *node, EState *estate, int eflags);
static TupleTableSlot *callscan_exec(CustomScanState *node);
static void callscan_end(CustomScanState *node);
static void callscan_rescan(CustomScanState *node);
static void callscan_explain(CustomScanState *node, List *ancestors,
							 ExplainState *es);

static const CustomPathMethods callscan_path_methods = {
	.CustomName = CALLSCAN_NAME,
	.PlanCustomPath = callscan_plan,
};

static const CustomScanMethods callscan_scan_methods = {
	.CustomName = CALLSCAN_NAME,
	.CreateCustomScanState = callscan_create_state,
};

static const CustomExecMethods callscan_exec_methods = {
	.CustomName = CALLSCAN_NAME,
	.BeginCustomScan = callscan_begin,
	.ExecCustomScan = callscan_exec,
	.EndCustomScan = callscan_end,
	.ReScanCustomScan = callscan_rescan,
	.ExplainCustomScan = callscan_explain,
};

static void
callscan_proc_inval(Datum arg, int cacheid, uint32 hashvalue)
{
	memset(callscan_fmgr_memo, 0, sizeof(callscan_fmgr_memo));
}

/* The function's FmgrInfo into *finfo, its memory context the current one. */
static void
callscan_fmgr_info(Oid funcid, FmgrInfo *finfo)
{
	int			i;

	if (needs_fmgr_hook != NULL)
	{
		fmgr_info(funcid, finfo);
		return;
	}
	for (i = 0; i < CALLSCAN_FMGR_MEMO; i++)
		if (callscan_fmgr_memo[i].funcid == funcid)
		{
			fmgr_info_copy(finfo, &callscan_fmgr_memo[i].finfo,
						   CurrentMemoryContext);
			return;
		}
	fmgr_info(funcid, finfo);
	i = callscan_fmgr_next;
	callscan_fmgr_next = (i + 1) % CALLSCAN_FMGR_MEMO;
	fmgr_info_copy(&callscan_fmgr_memo[i].finfo, finfo, TopMemoryContext);
	callscan_fmgr_memo[i].funcid = funcid;
}

/* Called once from _PG_init(). */
void
idem_callscan_init(void)
{
	RegisterCustomScanMethods(&callscan_scan_methods);
	CacheRegisterSyscacheCallback(PROCOID, callscan_proc_inval, (Datum) 0);
	prev_set_rel_pathlist_hook = set_rel_pathlist_hook;
	set_rel_pathlist_hook = callscan_set_rel_pathlist;
}

/*
 * Is this a function whose planner support function is this library's
 * upsert_support?  (The three one-row upsert functions, and the two
 * batches, which return sets, of a 0.2.0 extension; a function of 0.1.0's
 * SQL has none.)
 */
static bool
callscan_is_upsert(Oid funcid)
{
	RegProcedure support = get_func_support(funcid);
	FmgrInfo	finfo;

	if (!OidIsValid(support))
		return false;
	fmgr_info(support, &finfo);
	return finfo.fn_addr == idempotency_upsert_support;
}

static void
callscan_set_rel_pathlist(PlannerInfo *root, RelOptInfo *rel, Index rti,
						  RangeTblEntry *rte)
{
	RangeTblFunction *rtfunc;
	FuncExpr   *call;
	TupleDesc	desc;
	ListCell   *lc;
	Path	   *scan = NULL;
	CustomPath *cpath;

	if (prev_set_rel_pathlist_hook)
		prev_set_rel_pathlist_hook(root, rel, rti, rte);

	if (!idem_call_scan || rte->rtekind != RTE_FUNCTION || rte->funcordinality ||
		list_length(rte->functions) != 1 ||
		rel->reloptkind != RELOPT_BASEREL)
		return;
	rtfunc = linitial_node(RangeTblFunction, rte->functions);
	if (!IsA(rtfunc->funcexpr, FuncExpr))
		return;
	call = (FuncExpr *) rtfunc->funcexpr;
	if (call->funcretset || !callscan_is_upsert(call->funcid) ||
		idem_citus_installed())
		return;
	/* a row type (the function refuses anything else when called) */
	if (get_expr_result_type((Node *) call, NULL, &desc) != TYPEFUNC_COMPOSITE)
		return;
	foreach(lc, rel->reltarget->exprs)
	{
		Var		   *var = (Var *) lfirst(lc);

		if (!IsA(var, Var) || var->varattno <= 0)
			return;
	}
	/* the Function Scan path to replace, with the call's lateral refs */
	foreach(lc, rel->pathlist)
	{
		Path	   *path = (Path *) lfirst(lc);

		if (path->pathtype == T_FunctionScan &&
			bms_equal(PATH_REQ_OUTER(path), rel->lateral_relids))
			scan = path;
	}
	if (scan == NULL)
		return;

	cpath = makeNode(CustomPath);
	cpath->path.pathtype = T_CustomScan;
	cpath->path.parent = rel;
	cpath->path.pathtarget = rel->reltarget;
	cpath->path.param_info = scan->param_info;
	cpath->path.parallel_aware = false;
	cpath->path.parallel_safe = false;
	cpath->path.parallel_workers = 0;
	cpath->path.rows = scan->rows;
	cpath->path.startup_cost = scan->startup_cost;
	cpath->path.total_cost = scan->total_cost;
	cpath->path.pathkeys = NIL;
	cpath->flags = 0;
	cpath->custom_paths = NIL;
	cpath->custom_private = list_make1(call);
	cpath->methods = &callscan_path_methods;

	rel->pathlist = list_delete_ptr(rel->pathlist, scan);
	add_path(rel, &cpath->path);
}

/*
 * The table the call returns rows of, locked, if the plan can scan the call
 * as that table: idempotent_upsert returns the table's own row type, and
 * every column the query uses (used[1..natts]) is one the table has now,
 * not dropped, of the type, type modifier and collation the query was
 * analyzed with; its relkind into *relkind.  InvalidOid otherwise (the
 * lock, if taken, released).
 *
 * The lock (AccessShareLock, the one the function takes first) is held
 * until the end of the transaction, as the parser holds the locks of the
 * tables a query names: the executor opens a plan's relations without
 * locking them, and a cached plan's are locked again before it runs.
 */
static Oid
callscan_table(FuncExpr *call, TupleDesc desc, Var **used, int natts,
			   char *relkind)
{
	Oid			relid;
	Relation	r;
	TupleDesc	td;
	bool		ok;
	int			i;

	if (call->args == NIL ||
		exprType((Node *) linitial(call->args)) != desc->tdtypeid)
		return InvalidOid;
	relid = get_typ_typrelid(desc->tdtypeid);
	if (!OidIsValid(relid))
		return InvalidOid;
	r = try_relation_open(relid, AccessShareLock);
	if (r == NULL)
		return InvalidOid;
	td = RelationGetDescr(r);
	ok = (r->rd_rel->relkind == RELKIND_RELATION ||
		  r->rd_rel->relkind == RELKIND_PARTITIONED_TABLE) &&
		r->rd_rel->reltype == desc->tdtypeid && natts <= td->natts;
	for (i = 1; ok && i <= natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(td, i - 1);

		if (used[i] != NULL &&
			(att->attisdropped || att->atttypid != used[i]->vartype ||
			 att->atttypmod != used[i]->vartypmod ||
			 att->attcollation != used[i]->varcollid))
			ok = false;
	}
	*relkind = r->rd_rel->relkind;
	relation_close(r, ok ? NoLock : AccessShareLock);
	return ok ? relid : InvalidOid;
}

static Plan *
callscan_plan(PlannerInfo *root, RelOptInfo *rel, CustomPath *best_path,
			  List *tlist, List *clauses, List *custom_plans)
{
	RangeTblEntry *rte = planner_rt_fetch(rel->relid, root);
	FuncExpr   *call = linitial_node(FuncExpr, best_path->custom_private);
	CustomScan *cscan = makeNode(CustomScan);
	TupleDesc	desc;
	List	   *scantlist = NIL;
	Var		  **used;
	int			natts;
	int			i;
	ListCell   *lc;
	List	   *vars;
	List	   *quals;
	Oid			relid;
	char		relkind;

	if (get_expr_result_type((Node *) call, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "%s: the call does not return a row", CALLSCAN_NAME);

	/*
	 * The columns the query uses, as it was analyzed: the row type may have
	 * changed since (a prepared statement planned again, a column dropped
	 * or added by a concurrent ALTER TABLE whose invalidation came in while
	 * planning).
	 */
	natts = desc->natts;
	quals = extract_actual_clauses(clauses, false);
	vars = pull_var_clause((Node *) list_make2(tlist, quals),
						   PVC_RECURSE_AGGREGATES | PVC_RECURSE_WINDOWFUNCS |
						   PVC_RECURSE_PLACEHOLDERS);
	foreach(lc, vars)
	{
		Var		   *var = lfirst_node(Var, lc);

		if ((Index) var->varno == rel->relid && var->varlevelsup == 0)
			natts = Max(natts, var->varattno);
	}
	used = palloc0(sizeof(Var *) * (natts + 1));
	foreach(lc, vars)
	{
		Var		   *var = lfirst_node(Var, lc);

		if ((Index) var->varno == rel->relid && var->varlevelsup == 0 &&
			var->varattno > 0)
			used[var->varattno] = var;
	}

	cscan->scan.plan.targetlist = tlist;
	cscan->scan.plan.qual = quals;
	cscan->flags = best_path->flags;
	cscan->custom_plans = NIL;
	cscan->custom_exprs = list_make1(copyObject(call));
	cscan->custom_private = NIL;
	cscan->custom_relids = bms_make_singleton(rel->relid);
	cscan->methods = &callscan_scan_methods;

	/*
	 * idempotent_upsert, whose row is the table's and whose columns the
	 * query uses as the table has them now: the range table entry becomes
	 * the table's (no permission to check: the function checks what it
	 * reads and writes), and the plan scans it, so that the executor takes
	 * the scan tuple's type from the table instead of building one for
	 * every execution, and a cached plan is made again when the table
	 * changes.  The call stays the node's expression; the function's row
	 * is stored as the table's row.
	 */
	relid = callscan_table(call, desc, used, natts, &relkind);
	if (OidIsValid(relid))
	{
		rte->rtekind = RTE_RELATION;
		rte->relid = relid;
		rte->relkind = relkind;
		rte->rellockmode = AccessShareLock;
		rte->inh = false;
		rte->functions = NIL;
		rte->funcordinality = false;
		cscan->scan.scanrelid = rel->relid;
		cscan->custom_scan_tlist = NIL;
		return &cscan->scan.plan;
	}

	/*
	 * Otherwise each column the query uses is a column of the scan tuple
	 * with the type the query expects, where the row type has it now or
	 * not; the executor then compares the row the function returns with
	 * them (callscan_store) and raises 42804, as a Function Scan does,
	 * instead of the planner failing to find a column the query uses.
	 */
	for (i = 0; i < natts; i++)
	{
		Form_pg_attribute att = i < desc->natts ? TupleDescAttr(desc, i) : NULL;
		Expr	   *expr;
		char	   *name = NULL;

		if (used[i + 1] != NULL)
		{
			expr = (Expr *) makeVar(rel->relid, i + 1, used[i + 1]->vartype,
									used[i + 1]->vartypmod,
									used[i + 1]->varcollid, 0);
			name = get_rte_attribute_name(rte, i + 1);
		}
		else if (att != NULL && !att->attisdropped)
		{
			expr = (Expr *) makeVar(rel->relid, i + 1, att->atttypid,
									att->atttypmod, att->attcollation, 0);
			name = NameStr(att->attname);
		}
		else
			expr = (Expr *) makeNullConst(INT4OID, -1, InvalidOid);
		scantlist = lappend(scantlist,
							makeTargetEntry(expr, i + 1,
											name ? pstrdup(name) : NULL,
											false));
	}
	cscan->scan.scanrelid = 0;
	cscan->custom_scan_tlist = scantlist;
	return &cscan->scan.plan;
}

static Node *
callscan_create_state(CustomScan *cscan)
{
	CallScanState *s = palloc0(sizeof(CallScanState));

	NodeSetTag(s, T_CustomScanState);
	s->css.methods = &callscan_exec_methods;
	idem_customscan_set_slot_ops(&s->css, IDEM_CALLSCAN_SLOT_OPS);
	return (Node *) s;
}

static void
callscan_begin(CustomScanState *node, EState *estate, int eflags)
{
	CallScanState *s = (CallScanState *) node;
	CustomScan *cscan = (CustomScan *) node->ss.ps.plan;
	TupleDesc	scandesc = node->ss.ss_ScanTupleSlot->tts_tupleDescriptor;
	AclResult	aclresult;
	ListCell   *lc;
	int			i = 0;

	s->call = linitial_node(FuncExpr, cscan->custom_exprs);
	s->table = cscan->scan.scanrelid > 0;

	/* what the executor checks before any call of a function */
	aclresult = idem_proc_aclcheck(s->call->funcid, GetUserId(), ACL_EXECUTE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_FUNCTION, get_func_name(s->call->funcid));
	InvokeFunctionExecuteHook(s->call->funcid);

	callscan_fmgr_info(s->call->funcid, &s->flinfo);
	fmgr_info_set_expr((Node *) s->call, &s->flinfo);
	s->fcinfo = palloc0(SizeForFunctionCallInfo(list_length(s->call->args)));
	InitFunctionCallInfoData(*s->fcinfo, &s->flinfo, list_length(s->call->args),
							 s->call->inputcollid, NULL, NULL);

	/*
	 * A constant argument (the row type's NULL, the names, a key_cols) is
	 * set once; only the others get an expression state, which is most of
	 * what setting up a call costs.
	 */
	s->args = palloc0(sizeof(ExprState *) * list_length(s->call->args));
	foreach(lc, s->call->args)
	{
		Expr	   *arg = (Expr *) lfirst(lc);

		if (IsA(arg, Const))
		{
			s->fcinfo->args[i].value = ((Const *) arg)->constvalue;
			s->fcinfo->args[i].isnull = ((Const *) arg)->constisnull;
		}
		else
			s->args[i] = ExecInitExpr(arg, &node->ss.ps);
		i++;
	}
	i = 0;

	/* the row type the plan expects, its dropped attributes marked */
	s->expected = scandesc;
	foreach(lc, cscan->custom_scan_tlist)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);

		if (!IsA(tle->expr, Var))
		{
			if (s->expected == scandesc)
				s->expected = CreateTupleDescCopy(scandesc);
			TupleDescAttr(s->expected, i)->attisdropped = true;
		}
		i++;
	}
	s->callcxt = AllocSetContextCreate(CurrentMemoryContext,
									   "idempotency call scan",
									   ALLOCSET_DEFAULT_SIZES);
}

/*
 * The relation a table scan opened for this call, once (the first caller
 * takes it), or NULL: another call, or none made by a table scan.  The
 * executor holds it open and locked (AccessShareLock) until the end of the
 * statement; the caller adds its own reference and closes it with NoLock.
 */
Relation
idem_callscan_relation(FunctionCallInfo fcinfo)
{
	Relation	rel;

	if (fcinfo != callscan_fcinfo)
		return NULL;
	rel = callscan_rel;
	callscan_fcinfo = NULL;
	callscan_rel = NULL;
	return rel;
}

/* The function's call under a table scan, with its relation offered. */
static Datum
callscan_invoke_table(FunctionCallInfo fcinfo, Relation rel)
{
	FunctionCallInfo save_fcinfo = callscan_fcinfo;
	Relation	save_rel = callscan_rel;
	Datum		result;

	callscan_fcinfo = fcinfo;
	callscan_rel = rel;
	PG_TRY();
	{
		result = FunctionCallInvoke(fcinfo);
	}
	PG_FINALLY();
	{
		callscan_fcinfo = save_fcinfo;
		callscan_rel = save_rel;
	}
	PG_END_TRY();
	return result;
}

/* Call the function (once per parameter set) and keep its row. */
static void
callscan_call(CallScanState *s)
{
	ExprContext *econtext = s->css.ss.ps.ps_ExprContext;
	FunctionCallInfo fcinfo = s->fcinfo;
	ReturnSetInfo rsinfo;
	PgStat_FunctionCallUsage fcusage;
	MemoryContext oldcxt;
	Datum		result;
	int			i;

	/* the slot may hold the previous call's row */
	ExecClearTuple(s->css.ss.ss_ScanTupleSlot);
	MemoryContextReset(s->callcxt);
	s->called = false;
	oldcxt = MemoryContextSwitchTo(econtext->ecxt_per_tuple_memory);
	for (i = 0; i < fcinfo->nargs; i++)
		if (s->args[i] != NULL)
			fcinfo->args[i].value = ExecEvalExpr(s->args[i], econtext,
												 &fcinfo->args[i].isnull);

	/* as a Function Scan calls a function that returns one row */
	rsinfo.type = T_ReturnSetInfo;
	rsinfo.econtext = econtext;
	rsinfo.expectedDesc = s->expected;
	rsinfo.allowedModes = (int) SFRM_ValuePerCall;
	rsinfo.returnMode = SFRM_ValuePerCall;
	rsinfo.isDone = ExprSingleResult;
	rsinfo.setResult = NULL;
	rsinfo.setDesc = NULL;
	fcinfo->resultinfo = (Node *) &rsinfo;
	fcinfo->isnull = false;

	/*
	 * The function runs in callcxt, so that the row it returns, made in
	 * its caller's memory, is kept for rescans without a copy.
	 */
	MemoryContextSwitchTo(s->callcxt);
	pgstat_init_function_usage(fcinfo, &fcusage);
	if (s->table)
		result = callscan_invoke_table(fcinfo, s->css.ss.ss_currentRelation);
	else
		result = FunctionCallInvoke(fcinfo);
	pgstat_end_function_usage(&fcusage, true);
	fcinfo->resultinfo = NULL;
	if (rsinfo.isDone != ExprSingleResult || rsinfo.returnMode != SFRM_ValuePerCall)
		elog(ERROR, "%s: the function returned a set", CALLSCAN_NAME);

	s->rownull = fcinfo->isnull;
	s->row = fcinfo->isnull ? (Datum) 0 :
		PointerGetDatum(DatumGetHeapTupleHeader(result));
	MemoryContextSwitchTo(oldcxt);
	s->called = true;
}

/* The kept row into the scan slot, checked against the plan's row type. */
static void
callscan_store(CallScanState *s, TupleTableSlot *slot)
{
	TupleDesc	scandesc = slot->tts_tupleDescriptor;
	int			i;

	if (s->rownull)
	{
		/* a NULL row is a row of NULLs, as in a Function Scan */
		ExecClearTuple(slot);
		memset(slot->tts_isnull, true, sizeof(bool) * scandesc->natts);
	}
	else
	{
		HeapTupleHeader td = DatumGetHeapTupleHeader(s->row);
		TupleDesc	rowdesc = scandesc;
		HeapTupleData tup;

		if (s->table)
		{
			/*
			 * The table's row, made by the function with the relation the
			 * executor opened for the scan: of the scan slot's descriptor.
			 * A heap tuple slot takes it as it is, and takes apart only
			 * the columns that are read, when they are.
			 */
			if (HeapTupleHeaderGetTypeId(td) != scandesc->tdtypeid)
				elog(ERROR, "%s: the function returned a row of type %u, not of its table's type %u",
					 CALLSCAN_NAME, HeapTupleHeaderGetTypeId(td), scandesc->tdtypeid);
			if (TTS_IS_HEAPTUPLE(slot))
			{
				s->tuple.t_len = HeapTupleHeaderGetDatumLength(td);
				ItemPointerSetInvalid(&s->tuple.t_self);
				s->tuple.t_tableOid = InvalidOid;
				s->tuple.t_data = td;
				ExecStoreHeapTuple(&s->tuple, slot, false);
				return;
			}
		}
		else
		{
			rowdesc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(td),
											 HeapTupleHeaderGetTypMod(td));
			if (rowdesc->natts != scandesc->natts)
				ereport(ERROR,
						(errcode(ERRCODE_DATATYPE_MISMATCH),
						 errmsg("function return row and query-specified return row do not match"),
						 errdetail_plural("Returned row contains %d attribute, but query expects %d.",
										  "Returned row contains %d attributes, but query expects %d.",
										  rowdesc->natts, rowdesc->natts, scandesc->natts)));
			/* as a Function Scan compares them (tupledesc_match) */
			for (i = 0; i < rowdesc->natts; i++)
			{
				Form_pg_attribute r = TupleDescAttr(rowdesc, i);
				Form_pg_attribute e = TupleDescAttr(s->expected, i);

				if (e->attisdropped ? !r->attisdropped :
					(r->attisdropped || !IsBinaryCoercible(r->atttypid, e->atttypid)))
					ereport(ERROR,
							(errcode(ERRCODE_DATATYPE_MISMATCH),
							 errmsg("function return row and query-specified return row do not match"),
							 errdetail("Returned type %s at ordinal position %d, but query expects %s.",
									   format_type_be(r->atttypid), i + 1,
									   format_type_be(e->atttypid))));
			}
		}
		ExecClearTuple(slot);
		tup.t_len = HeapTupleHeaderGetDatumLength(td);
		ItemPointerSetInvalid(&tup.t_self);
		tup.t_tableOid = InvalidOid;
		tup.t_data = td;
		heap_deform_tuple(&tup, rowdesc, slot->tts_values, slot->tts_isnull);
		if (rowdesc != scandesc)
		{
			ReleaseTupleDesc(rowdesc);
			/* a dropped attribute's old value is no value of the placeholder */
			for (i = 0; i < scandesc->natts; i++)
				if (TupleDescAttr(s->expected, i)->attisdropped)
					slot->tts_isnull[i] = true;
		}
	}
	ExecStoreVirtualTuple(slot);
}

static TupleTableSlot *
callscan_next(ScanState *ss)
{
	CallScanState *s = (CallScanState *) ss;
	TupleTableSlot *slot = ss->ss_ScanTupleSlot;

	if (s->done)
		return ExecClearTuple(slot);
	if (!s->called)
		callscan_call(s);
	s->done = true;
	callscan_store(s, slot);
	return slot;
}

static bool
callscan_recheck(ScanState *ss, TupleTableSlot *slot)
{
	return true;
}

static TupleTableSlot *
callscan_exec(CustomScanState *node)
{
	return ExecScan(&node->ss, callscan_next, callscan_recheck);
}

static void
callscan_end(CustomScanState *node)
{
	CallScanState *s = (CallScanState *) node;

	if (node->ss.ps.ps_ResultTupleSlot)
		ExecClearTuple(node->ss.ps.ps_ResultTupleSlot);
	ExecClearTuple(node->ss.ss_ScanTupleSlot);
	MemoryContextDelete(s->callcxt);
}

static void
callscan_rescan(CustomScanState *node)
{
	CallScanState *s = (CallScanState *) node;

	/* a changed parameter means another call; otherwise the same row */
	if (node->ss.ps.chgParam != NULL)
		s->called = false;
	s->done = false;
	ExecScanReScan(&node->ss);
}

static void
callscan_explain(CustomScanState *node, List *ancestors, ExplainState *es)
{
	CallScanState *s = (CallScanState *) node;
	List	   *context;

	if (!es->verbose)
	{
		ExplainPropertyText("Function", get_func_name(s->call->funcid), es);
		return;
	}
	context = set_deparse_context_plan(es->deparse_cxt, node->ss.ps.plan,
									   ancestors);
	ExplainPropertyText("Function Call",
						deparse_expression((Node *) s->call, context, true, false),
						es);
}
