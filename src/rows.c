/*-------------------------------------------------------------------------
 *
 * rows.c
 *	  Row changes on the extension's own tables without the executor, and
 *	  the insert of an upsert's new row (idem_row_insert_slot()).
 *
 * A call that writes one row of processed_events or leases through SPI
 * pays for two statements: its own (the function call) and the one SPI
 * runs, whose plan check, executor start and end cost several times the
 * change itself.  Where nothing but the change can happen, the change is
 * made here with the calls the executor makes, with the snapshot SPI would
 * take for a statement that writes (the command counter advanced first,
 * and again after the change):
 *
 *	 - idem_row_update(), an UPDATE of one row: the version at a TID (a TID
 *	   scan's fetch, after pruning the page as an index scan's fetch
 *	   would), or the one a search of a unique btree index on one column
 *	   finds (an index scan's); the feature's edit function checks
 *	   it (the statement's WHERE) and sets the new values (its SET);
 *	   table_tuple_update() writes the new version, HOT where it can.  It
 *	   waits for a concurrent updater of the row, and anything but success
 *	   (the row changed by another transaction since the snapshot, or by
 *	   this one) leaves the row alone and falls back to the statement,
 *	   which, run afresh, sees the new version: what the executor's
 *	   EvalPlanQual recheck would have decided, or 40001 under REPEATABLE
 *	   READ.
 *	 - idem_row_insert(), an INSERT ... ON CONFLICT DO NOTHING of one row
 *	   naming every column: ON CONFLICT's pre-check of every unique index,
 *	   then a speculative insertion, killed and retried when an index
 *	   entry meets a concurrent insert of the key (ExecInsert's loop).
 *	   Only under READ COMMITTED, where a conflict needs no check against
 *	   the transaction's snapshot.
 *
 * Either way, a new version that is not HOT gets its entry in every index
 * from ExecInsertIndexTuples(), with the unique checks the executor makes.
 *
 * idem_row_insert_slot() is the insert for a row the caller has formed,
 * with ON CONFLICT's arbiters, and idem_row_insert_plain() a plain INSERT
 * of many (src/upsert.c: a user's table, whose checks are
 * upsert_insert_direct_build()'s; the caller decides what "nothing but the
 * change" means there, and holds ROW EXCLUSIVE).
 *
 * "Nothing but the change" is, conservatively:
 *	 - the table runs no code (src/plans.c's table_runs_code(), decided
 *	   after the writer's ROW EXCLUSIVE lock: no trigger, rule, CHECK
 *	   constraint, partition or inheritance child, index expression or
 *	   predicate, exclusion constraint, domain or extension type, access
 *	   method or operator class not built in, default or policy calling
 *	   code), and it has no generated column (whose value the executor
 *	   computes);
 *	 - the columns the change uses are there with the types, collations and
 *	   (absent) type modifiers the feature expects, none an identity column;
 *	   for an insert, no other column, and none it leaves out has a default
 *	   (IdemRowShape, checked again after any relcache invalidation);
 *	 - row level security does not apply to the current user, who holds
 *	   the privileges the statement needs (SELECT and INSERT or UPDATE),
 *	   and no module (sepgsql) checks a statement's permissions;
 *	 - the table is not a Citus table (its rows are in its shards);
 *	 - the transaction is not SERIALIZABLE (the predicate locks are the
 *	   executor's to take);
 *	 - the new version breaks no NOT NULL constraint, and the edit found
 *	   nothing only the statement can report (an overflow).
 * Otherwise IDEM_ROW_FALLBACK, before anything is written, and the caller
 * runs its statement, which raises what the executor raises.  A table
 * published for UPDATE without a replica identity raises here what the
 * executor raises.
 *
 * Locks: the caller's idem_spi_begin(writes) holds ROW EXCLUSIVE on the
 * table, which every command that could add code, a generated column or a
 * policy must wait for; an index searched is locked ROW EXCLUSIVE, as the
 * statement's executor locks its table's indexes; the row version is
 * locked by the update itself, a speculative insertion by its token.
 *
 * Memory and lifetime: slots, the snapshot registration and, for index
 * entries, an EState live for one call and are released before it
 * returns (an error releases them with the transaction's resources).  A
 * shape's attribute numbers are kept in the feature's static IdemRowShape
 * until a relcache invalidation (any table: a counter) makes the next call
 * check again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "idempotency.h"
#include "rows.h"
#include "plans.h"
#include "citus.h"

#include "access/relation.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/genam.h"
#include "access/heapam.h"
#include "access/nbtree.h"
#include "access/stratnum.h"
#include "catalog/index.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"

static uint64 rows_invals = 1;	/* relcache invalidations seen */

void
idem_rows_relcache_inval(Oid relid)
{
	rows_invals++;
}

/*
 * Are shape's columns in rel, as described (and none an identity column,
 * none an insert leaves to its default with a default)?  Fills in their
 * attnums, and whether they are all of rel's columns.
 */
static bool
rows_shape_ok(Relation rel, IdemRowShape *shape)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			live = 0;
	int			i,
				j;

	if (shape->relid == RelationGetRelid(rel) && shape->stamp == rows_invals)
		return shape->ok;
	Assert(shape->ncols <= IDEM_ROW_MAX_COLS);
	shape->ok = true;
	for (i = 0; i < shape->ncols && shape->ok; i++)
	{
		const IdemRowCol *col = &shape->cols[i];

		shape->ok = false;
		for (j = 0; j < desc->natts; j++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, j);

			if (att->attisdropped || strcmp(NameStr(att->attname), col->name) != 0)
				continue;
			shape->ok = (att->atttypid == col->type && att->atttypmod == -1 &&
						 att->attcollation == col->collation &&
						 att->attidentity == '\0' &&
						 !((shape->defaulted >> i) & 1 && att->atthasdef));
			shape->attnums[i] = att->attnum;
			break;
		}
	}
	for (j = 0; j < desc->natts; j++)
		if (!TupleDescAttr(desc, j)->attisdropped)
			live++;
	shape->all = (live == shape->ncols);
	shape->relid = RelationGetRelid(rel);
	shape->stamp = rows_invals;
	return shape->ok;
}

/*
 * May a row of rel (opened under spi) be changed here by a statement that
 * needs the privileges in mode?  See the header.
 */
static bool
rows_direct_ok(IdemSpi *spi, Relation rel, IdemRowShape *shape, AclMode mode)
{
	TupleConstr *constr = RelationGetDescr(rel)->constr;
	Oid			relid = RelationGetRelid(rel);

	/* a security module's check of the statement's permissions */
	if (!spi->direct || ExecutorCheckPerms_hook != NULL ||
		(constr != NULL && constr->has_generated_stored) ||
		IdemHasVirtualGenerated(RelationGetDescr(rel)) ||
		!rows_shape_ok(rel, shape))
		return false;
	/*
	 * A Citus table's rows are in its shards: on a node, the table itself
	 * may have none, and no trigger of Citus's to make it run code.
	 */
	if (idem_citus_table_kind(relid) != IDEM_CITUS_NONE)
		return false;
	if (idem_rls_applies(rel))
		return false;
	return pg_class_aclmask(relid, GetUserId(), mode, ACLMASK_ALL) == mode;
}

/* Would the row in slot break a NOT NULL constraint of rel? */
static bool
rows_breaks_not_null(Relation rel, TupleTableSlot *slot)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			i;

	if (desc->constr == NULL || !desc->constr->has_not_null)
		return false;
	for (i = 0; i < desc->natts; i++)
		if (TupleDescAttr(desc, i)->attnotnull && slot->tts_isnull[i])
			return true;
	return false;
}

/* Every index's entry for the new row version in slot, as the executor's. */
static void
rows_index_entries(Relation rel, TupleTableSlot *slot, bool summarizing_only)
{
	EState	   *estate = CreateExecutorState();
	ResultRelInfo *rri = makeNode(ResultRelInfo);

	InitResultRelInfo(rri, rel, 0, NULL, 0);
	ExecOpenIndices(rri, false);
	(void) idem_insert_index_entries(rri, slot, estate, NULL, NIL,
									 summarizing_only);
	ExecCloseIndices(rri);
	FreeExecutorState(estate);
}

/*
 * The unique index target names, open, if it is what the target says: a
 * valid, immediate, unique btree index of rel on the key column alone,
 * under its collation, whose operator family's equality is eqproc.  NULL
 * if not.  The answer is kept in the shape until an invalidation.
 */
static Relation
rows_key_index(Relation rel, IdemRowShape *shape, const IdemRowTarget *target)
{
	const IdemRowCol *col = &shape->cols[target->keycol];
	Oid			owner;			/* not needed here */
	Oid			indexoid = idem_table_lookup(target->index, true, &owner);
	Relation	index;

	if (!OidIsValid(indexoid))
		return NULL;
	/* what the statement's executor takes on the indexes of its table */
	index = relation_open(indexoid, RowExclusiveLock);
	if (shape->keyindex != indexoid || shape->keystamp != rows_invals)
	{
		Form_pg_index ix = index->rd_index;
		Oid			eqop = InvalidOid;
		bool		ok;

		ok = (index->rd_rel->relkind == RELKIND_INDEX &&
			  index->rd_rel->relam == BTREE_AM_OID &&
			  ix->indrelid == RelationGetRelid(rel) && ix->indisunique &&
			  ix->indimmediate && ix->indisvalid && ix->indnkeyatts == 1 &&
			  ix->indkey.values[0] == shape->attnums[target->keycol] &&
			  index->rd_indcollation[0] == col->collation);
		if (ok)
			eqop = get_opfamily_member(index->rd_opfamily[0], col->type,
									   col->type, BTEqualStrategyNumber);
		shape->keyindex_ok = (ok && OidIsValid(eqop) &&
							  get_opcode(eqop) == target->eqproc);
		shape->keyindex = indexoid;
		shape->keystamp = rows_invals;
	}
	if (!shape->keyindex_ok)
	{
		relation_close(index, NoLock);
		return NULL;
	}
	return index;
}

/*
 * Prune the heap page blkno of rel if it is worth it, as an index scan's
 * fetch does before it reads a page (heapam_index_fetch_tuple()).  A TID
 * scan's fetch does not: without this, a row updated through its TID (a
 * claim finished in its own transaction) would leave its old version and
 * the versions before it in place until VACUUM, and the table would grow
 * by every update.  Pruning removes only versions dead to every snapshot
 * and keeps the line pointers of the others, so the TID of a version the
 * fetch can return still leads to it.
 */
static void
rows_prune_page(Relation rel, BlockNumber blkno)
{
	Buffer		buf;

	/* rows_direct_ok() admits built-in access methods only: heap */
	if (rel->rd_rel->relam != HEAP_TABLE_AM_OID)
		return;
	buf = ReadBuffer(rel, blkno);
	heap_page_prune_opt(rel, buf);
	ReleaseBuffer(buf);
}

/*
 * Update the version of the target row that the statement's snapshot
 * sees, as edit decides, in the table spi opened for writing (see the
 * header).
 */
IdemRowResult
idem_row_update(IdemSpi *spi, IdemRowShape *shape, const IdemRowTarget *target,
				IdemRowEdit edit, void *arg)
{
	IdemRowResult result = IDEM_ROW_NONE;
	Relation	rel;
	Relation	index = NULL;
	Snapshot	snap;
	TupleTableSlot *old;
	TupleTableSlot *new;
	TM_FailureData tmfd;
	bool		found;
	bool		update_indexes;
	bool		summarizing_only;
	int			natts;

	if (!spi->direct || IsolationIsSerializable())
		return IDEM_ROW_FALLBACK;
	/* idem_spi_begin(writes) holds ROW EXCLUSIVE */
	rel = relation_open(spi->relid, NoLock);
	if (!rows_direct_ok(spi, rel, shape, ACL_SELECT | ACL_UPDATE) ||
		(target->tid == NULL &&
		 (index = rows_key_index(rel, shape, target)) == NULL))
	{
		relation_close(rel, NoLock);
		return IDEM_ROW_FALLBACK;
	}
	CheckCmdReplicaIdentity(rel, CMD_UPDATE);

	/* the snapshot SPI takes for a statement that writes */
	CommandCounterIncrement();
	snap = RegisterSnapshot(GetTransactionSnapshot());
	natts = RelationGetDescr(rel)->natts;
	old = table_slot_create(rel, NULL);
	new = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsVirtual);
	if (index != NULL)
	{
		IndexScanDesc scan = index_beginscan(rel, index, snap, 1, 0);
		ScanKeyData key;

		ScanKeyInit(&key, 1, BTEqualStrategyNumber, target->eqproc,
					target->key);
		key.sk_collation = index->rd_indcollation[0];
		index_rescan(scan, &key, 1, NULL, 0);
		/* a unique index: the snapshot sees one version at most */
		found = index_getnext_slot(scan, ForwardScanDirection, old);
		index_endscan(scan);
		relation_close(index, NoLock);
	}
	else
	{
		BlockNumber blkno = ItemPointerGetBlockNumberNoCheck(target->tid);

		/* a TID scan skips an address past the end, as a truncation leaves */
		found = (ItemPointerIsValid(target->tid) &&
				 blkno < RelationGetNumberOfBlocks(rel));
		if (found)
		{
			rows_prune_page(rel, blkno);
			found = table_tuple_fetch_row_version(rel, target->tid, snap, old);
		}
	}
	if (found)
	{
		ItemPointerData tid = old->tts_tid;

		slot_getallattrs(old);
		ExecClearTuple(new);
		memcpy(new->tts_values, old->tts_values, natts * sizeof(Datum));
		memcpy(new->tts_isnull, old->tts_isnull, natts * sizeof(bool));
		switch (edit(arg, shape->attnums, new->tts_values, new->tts_isnull))
		{
			case IDEM_EDIT_SKIP:
				break;
			case IDEM_EDIT_FALLBACK:
				result = IDEM_ROW_FALLBACK;
				break;
			case IDEM_EDIT_CHANGE:
				ExecStoreVirtualTuple(new);
				if (rows_breaks_not_null(rel, new))
					result = IDEM_ROW_FALLBACK;
				else if (idem_tuple_update(rel, &tid, new,
										   GetCurrentCommandId(true), snap,
										   &tmfd, &update_indexes,
										   &summarizing_only) != TM_Ok)
				{
					/*
					 * Changed by another transaction since the snapshot
					 * (after waiting for it to end), or by this one: the
					 * statement, run afresh, decides.  Nothing is written.
					 */
					result = IDEM_ROW_FALLBACK;
				}
				else
				{
					if (update_indexes)
						rows_index_entries(rel, new, summarizing_only);
					CommandCounterIncrement();
					result = IDEM_ROW_DONE;
				}
				break;
		}
	}
	ExecDropSingleTupleTableSlot(new);
	ExecDropSingleTupleTableSlot(old);
	UnregisterSnapshot(snap);
	relation_close(rel, NoLock);
	return result;
}

/*
 * Open rri's indexes for an insert with ON CONFLICT, as ExecOpenIndices()
 * with speculative = true does, but with the look-up operators of a
 * speculative insertion only for the arbiters (NIL: every unique index):
 * no other index is pre-checked, and the index entries of the others are
 * made with ordinary unique checks, which do not use them.
 */
static void
rows_open_indices(ResultRelInfo *rri, List *arbiters)
{
	int			i;

	ExecOpenIndices(rri, arbiters == NIL);
	if (arbiters == NIL)
		return;
	for (i = 0; i < rri->ri_NumIndices; i++)
	{
		Relation	index = rri->ri_IndexRelationDescs[i];
		IndexInfo  *ii = rri->ri_IndexRelationInfo[i];

		if (ii->ii_Unique && !index->rd_index->indisexclusion &&
			list_member_oid(arbiters, RelationGetRelid(index)))
			BuildSpeculativeIndexInfo(index, ii);
	}
}

/*
 * INSERT ... ON CONFLICT DO NOTHING of the row in slot, as the executor
 * makes it: a pre-check of the arbiter indexes (NIL: every unique index),
 * then a speculative insertion whose index entries are made with a
 * conflict in an arbiter reported instead of raised; a conflict found then
 * kills the row, and the pre-check, run again, finds the conflicting row
 * (or, if its inserter gave up, none).  A unique index that is not an
 * arbiter raises its violation, as the statement's would.  The pre-check
 * only saves a speculative insertion that would be killed (the index
 * entries find every conflict); fresh_miss: the caller's look with a fresh
 * snapshot has just missed the key, so the first round goes without it.
 */
static IdemRowResult
rows_insert_on_conflict(Relation rel, TupleTableSlot *slot, List *arbiters,
						bool fresh_miss, ItemPointer tid)
{
	EState	   *estate = CreateExecutorState();
	ResultRelInfo *rri = makeNode(ResultRelInfo);
	IdemRowResult result = IDEM_ROW_DONE;
	CommandId	cid = GetCurrentCommandId(true);

	InitResultRelInfo(rri, rel, 0, NULL, 0);
	rows_open_indices(rri, arbiters);
	if (rri->ri_NumIndices == 0)
		table_tuple_insert(rel, slot, cid, 0, NULL);
	else
	{
		for (;;)
		{
			ItemPointerData conflict;
			uint32		token;
			bool		conflicted = false;

			CHECK_FOR_INTERRUPTS();
			if (!fresh_miss &&
				!idem_check_index_constraints(rri, slot, estate, &conflict,
											  arbiters))
			{
				result = IDEM_ROW_NONE;
				break;
			}
			fresh_miss = false;
			token = SpeculativeInsertionLockAcquire(GetCurrentTransactionId());
			table_tuple_insert_speculative(rel, slot, cid, 0, NULL, token);
			list_free(idem_insert_index_entries(rri, slot, estate, &conflicted,
												arbiters, false));
			table_tuple_complete_speculative(rel, slot, token, !conflicted);
			SpeculativeInsertionLockRelease(GetCurrentTransactionId());
			if (!conflicted)
				break;
		}
	}
	if (result == IDEM_ROW_DONE)
		*tid = slot->tts_tid;
	ExecCloseIndices(rri);
	FreeExecutorState(estate);
	return result;
}

/*
 * INSERT ... ON CONFLICT (arbiters) DO NOTHING of the row in slot (every
 * column set, slot->tts_tableOid too), as SPI runs a statement that
 * writes: the command counter advanced before and after.  The caller holds
 * ROW EXCLUSIVE on rel and has decided that nothing but the change can
 * happen (see the header); IDEM_ROW_FALLBACK when the row breaks a NOT NULL
 * constraint (the statement raises it), before anything is written.
 * fresh_miss: a look for the key with a fresh snapshot has just missed it.
 */
IdemRowResult
idem_row_insert_slot(Relation rel, TupleTableSlot *slot, List *arbiters,
					 bool fresh_miss, ItemPointer tid)
{
	IdemRowResult result;

	Assert(!IsolationUsesXactSnapshot());
	if (rows_breaks_not_null(rel, slot))
		return IDEM_ROW_FALLBACK;
	CommandCounterIncrement();
	result = rows_insert_on_conflict(rel, slot, arbiters, fresh_miss, tid);
	CommandCounterIncrement();
	return result;
}

/*
 * A plain INSERT of n rows (slots formed by the caller, tts_tableOid set),
 * as COPY makes it: the heap tuples a page at a time (table_multi_insert,
 * a WAL record per page), then every index's entries for each, with the
 * unique checks of a plain INSERT (a violation raises 23505: the caller
 * runs this in a subtransaction).  rri has its indexes open and, like
 * estate, belongs to the caller, as does the command counter.  False,
 * before any of the n is written, when a row breaks a NOT NULL constraint.
 */
bool
idem_row_insert_plain(Relation rel, ResultRelInfo *rri, EState *estate,
					  TupleTableSlot **slots, int n, CommandId cid)
{
	int			i;

	for (i = 0; i < n; i++)
		if (rows_breaks_not_null(rel, slots[i]))
			return false;
	table_multi_insert(rel, slots, n, cid, 0, NULL);
	for (i = 0; i < n; i++)
		list_free(idem_insert_index_entries(rri, slots[i], estate, NULL, NIL,
											false));
	return true;
}

/*
 * INSERT INTO ... ON CONFLICT DO NOTHING of one row, in the table spi
 * opened for writing, where every column is one of shape's: fill sets the
 * row's values (values and isnull by shape column, every column NULL
 * before) once it is known the insert is made here (see the header; only
 * under READ COMMITTED, where a conflict needs no check against the
 * transaction's snapshot).  On IDEM_ROW_DONE *tid is the new row's.
 * fresh_miss: as for idem_row_insert_slot().
 */
IdemRowResult
idem_row_insert(IdemSpi *spi, IdemRowShape *shape, IdemRowFill fill,
				void *arg, bool fresh_miss, ItemPointer tid)
{
	IdemRowResult result;
	Relation	rel;
	TupleTableSlot *slot;
	Datum		values[IDEM_ROW_MAX_COLS];
	bool		isnull[IDEM_ROW_MAX_COLS];
	int			i;

	if (!spi->direct || IsolationUsesXactSnapshot())
		return IDEM_ROW_FALLBACK;
	/* idem_spi_begin(writes) holds ROW EXCLUSIVE */
	rel = relation_open(spi->relid, NoLock);
	if (!rows_direct_ok(spi, rel, shape, ACL_INSERT | ACL_SELECT) ||
		!shape->all)
	{
		relation_close(rel, NoLock);
		return IDEM_ROW_FALLBACK;
	}
	for (i = 0; i < shape->ncols; i++)
	{
		values[i] = (Datum) 0;
		isnull[i] = true;
	}
	fill(arg, values, isnull);
	slot = table_slot_create(rel, NULL);
	ExecClearTuple(slot);
	memset(slot->tts_isnull, true, RelationGetDescr(rel)->natts * sizeof(bool));
	for (i = 0; i < shape->ncols; i++)
	{
		slot->tts_values[shape->attnums[i] - 1] = values[i];
		slot->tts_isnull[shape->attnums[i] - 1] = isnull[i];
	}
	ExecStoreVirtualTuple(slot);
	slot->tts_tableOid = RelationGetRelid(rel);
	result = idem_row_insert_slot(rel, slot, NIL, fresh_miss, tid);
	ExecDropSingleTupleTableSlot(slot);
	relation_close(rel, NoLock);
	return result;
}
