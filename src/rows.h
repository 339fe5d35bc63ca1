/*-------------------------------------------------------------------------
 *
 * rows.h
 *	  Row changes on the extension's own tables without the executor
 *	  (src/rows.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef IDEMPOTENCY_ROWS_H
#define IDEMPOTENCY_ROWS_H

#include "plans.h"

#include "nodes/execnodes.h"
#include "executor/tuptable.h"
#include "nodes/pg_list.h"
#include "storage/itemptr.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/rls.h"

#define IDEM_ROW_MAX_COLS	16

/* A column a direct change reads or sets: its name, type and collation. */
typedef struct IdemRowCol
{
	const char *name;
	Oid			type;
	Oid			collation;		/* InvalidOid: a type without one */
} IdemRowCol;

/*
 * The columns a feature's direct change uses, and their attribute numbers
 * in the table as last checked (filled in by src/rows.c).
 */
typedef struct IdemRowShape
{
	const IdemRowCol *cols;
	int			ncols;
	uint32		defaulted;		/* bit i: an insert's statement leaves
								 * cols[i] to its default (it must have
								 * none) */
	/* set by src/rows.c */
	Oid			relid;			/* InvalidOid: not checked yet */
	uint64		stamp;			/* invalidations seen when checked */
	bool		ok;				/* every column there, as described */
	bool		all;			/* ... and no other column */
	AttrNumber	attnums[IDEM_ROW_MAX_COLS];
	Oid			keyindex;		/* the IdemRowTarget index checked last ... */
	uint64		keystamp;		/* ... at these invalidations ... */
	bool		keyindex_ok;	/* ... and whether it is as the target says */
} IdemRowShape;

/*
 * An update's WHERE and SET: looks at the row version read (values/isnull,
 * the table's whole row, indexed by attribute number - 1; att[i] is
 * cols[i]'s attribute number) and says whether to change it; to change it,
 * sets its new values in place.
 */
typedef enum IdemRowEditResult
{
	IDEM_EDIT_SKIP,				/* the WHERE is false: nothing to change */
	IDEM_EDIT_CHANGE,			/* new values set */
	IDEM_EDIT_FALLBACK			/* the statement must decide (an error) */
} IdemRowEditResult;

typedef IdemRowEditResult (*IdemRowEdit) (void *arg, const AttrNumber *att,
										  Datum *values, bool *isnull);

/* Sets an insert's values (by shape column), all NULL before. */
typedef void (*IdemRowFill) (void *arg, Datum *values, bool *isnull);

/*
 * Which row an update reads: the version at tid, or the one a search of a
 * unique btree index of the extension's, on a single column, finds.
 */
typedef struct IdemRowTarget
{
	ItemPointer tid;			/* or NULL, and: */
	const char *index;			/* idempotency.<index> */
	int			keycol;			/* the shape column it indexes */
	RegProcedure eqproc;		/* the column type's equality */
	Datum		key;
} IdemRowTarget;

typedef enum IdemRowResult
{
	IDEM_ROW_FALLBACK,			/* not done: run the statement instead */
	IDEM_ROW_NONE,				/* update: no such row version, or edit
								 * declined; insert: a conflict */
	IDEM_ROW_DONE				/* updated, inserted */
} IdemRowResult;

/* The rows an IdemRowResult changed (0 or 1), or -1 for IDEM_ROW_FALLBACK. */
static inline int
idem_row_count(IdemRowResult r)
{
	return r == IDEM_ROW_DONE ? 1 : r == IDEM_ROW_NONE ? 0 : -1;
}

/*
 * Does row level security apply to the current user's access to rel (open
 * and locked)?  The relation's pg_class row answers "no policies enabled"
 * without a catalog lookup.
 */
static inline bool
idem_rls_applies(Relation rel)
{
	return rel->rd_rel->relrowsecurity &&
		check_enable_rls(RelationGetRelid(rel), InvalidOid, true) == RLS_ENABLED;
}

extern IdemRowResult idem_row_insert(IdemSpi *spi, IdemRowShape *shape,
									 IdemRowFill fill, void *arg,
									 bool fresh_miss, ItemPointer tid);
extern IdemRowResult idem_row_insert_slot(Relation rel, TupleTableSlot *slot,
										  List *arbiters, bool fresh_miss,
										  ItemPointer tid);
extern bool idem_row_insert_plain(Relation rel, ResultRelInfo *rri,
								  EState *estate, TupleTableSlot **slots,
								  int n, CommandId cid);
extern IdemRowResult idem_row_update(IdemSpi *spi, IdemRowShape *shape,
									 const IdemRowTarget *target,
									 IdemRowEdit edit, void *arg);

#endif							/* IDEMPOTENCY_ROWS_H */
