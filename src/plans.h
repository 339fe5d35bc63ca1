/*-------------------------------------------------------------------------
 *
 * plans.h
 *	  Saved SPI plans from a table of definitions, and internal
 *	  subtransactions that are always rolled back on error (src/plans.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef IDEMPOTENCY_PLANS_H
#define IDEMPOTENCY_PLANS_H

#include "executor/spi.h"

#define IDEM_PLAN_MAX_ARGS	14

/* One statement: its SQL text and parameter types ($1 ... $nargs). */
typedef struct IdemPlanDef
{
	const char *sql;
	int			nargs;
	Oid			argtypes[IDEM_PLAN_MAX_ARGS];
} IdemPlanDef;

/*
 * A feature's statements: the definitions and the saved plans (NULL until
 * first use), both arrays of count elements.
 */
typedef struct IdemPlanSet
{
	const char *feature;		/* for internal error messages */
	const IdemPlanDef *defs;
	SPIPlanPtr *plans;
	int			count;
} IdemPlanSet;

extern SPIPlanPtr idem_plan(const IdemPlanSet *set, int which);
extern uint64 idem_plan_exec(const IdemPlanSet *set, int which, Datum *values,
							 const char *nulls, long count);

/*
 * Internal subtransactions.  body(arg) runs in a subtransaction; it returns
 * true to keep its work (the subtransaction commits) or false to undo it.
 * cleanup(arg), if given, runs after the subtransaction has ended, on
 * success and on error.  An error rolls the subtransaction back; if its
 * SQLSTATE is catch_sqlstate (0: none) it is swallowed and the call returns
 * false with *caught set, otherwise it is re-thrown.
 */
typedef bool (*IdemSubxactBody) (void *arg);
typedef void (*IdemSubxactCleanup) (void *arg);

extern bool idem_subxact_run(IdemSubxactBody body, IdemSubxactCleanup cleanup,
							 void *arg, int catch_sqlstate, bool *caught);

/*
 * Would one more subtransaction that writes still fit this backend's cache
 * of subtransaction xids?  (Once it overflows, every snapshot any session
 * takes while this transaction runs has to look into pg_subtrans.)  For
 * subtransactions that are an optimisation, not a necessity.
 */
extern bool idem_subxid_cache_room(void);

/*
 * SPI on one of the extension's own tables, as the table's owner.  Between
 * idem_spi_begin() and idem_spi_end() the current user is the owner of
 * idempotency.<table>, in a security-restricted operation, and
 * search_path is pg_catalog, pg_temp unless writes is true (some of the
 * statements write: the table is then locked in RowExclusiveLock first)
 * and the table has no code of the owner's that could run (src/plans.c);
 * an error that ends the (sub)transaction restores the caller's user and
 * search_path as usual.  (While the schema still belongs to a role that
 * is not a superuser, as 0.1.0 left it before the update, the caller's
 * user stays.)
 */
typedef struct IdemSpi
{
	Oid			save_userid;
	int			save_sec_context;
	int			guc_level;		/* of the pinned search_path; -1 if none */
	Oid			relid;			/* the table */
	bool		direct;			/* a writer's table runs no code: a row may
								 * be changed without the executor
								 * (src/rows.c) */
} IdemSpi;

/* The search_path the statements run under (PostgreSQL 17's safe path). */
#define IDEM_SAFE_SEARCH_PATH	"pg_catalog, pg_temp"
extern int	idem_pin_search_path(void);

extern void idem_spi_begin(IdemSpi *spi, const char *table, bool writes);
extern void idem_spi_end(IdemSpi *spi);

/*
 * Could evaluating expr (a default, a policy's expression), or maintaining
 * index indexoid, run code other than a few built-in functions that look
 * no name up (see "When the pin is needed" in src/plans.c)?  Conservative:
 * what is not plainly understood counts as code.
 */
extern bool idem_expr_runs_code(Node *expr);
extern bool idem_index_runs_code(Oid indexoid);

/*
 * OID of idempotency.<table> (a table, an index, ...) and its owner, cached
 * (see src/plans.c).  InvalidOid if there is none and missing_ok.
 */
extern Oid	idem_table_lookup(const char *table, bool missing_ok, Oid *owner);

#endif							/* IDEMPOTENCY_PLANS_H */
