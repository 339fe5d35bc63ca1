/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  Every PG_VERSION_NUM difference the extension cares about, in one place.
 *
 * The rest of the source is written against PostgreSQL 15's API.  Where a
 * later server spells something differently, a macro or inline wrapper here
 * maps our spelling to the server's, so porting to another major version
 * touches this file only.  No other file may test PG_VERSION_NUM.
 *
 *-------------------------------------------------------------------------
 */
#ifndef IDEMPOTENCY_COMPAT_H
#define IDEMPOTENCY_COMPAT_H

#include "postgres.h"

/*
 * 15 is the oldest: the code uses 15's MarkGUCPrefixReserved(),
 * InitMaterializedSRF() and pg_index.indnullsnotdistinct.
 */
#if PG_VERSION_NUM < 150000
#error "idempotency requires PostgreSQL 15 or later"
#endif

/*
 * The PGPROC of a virtual transaction id: backendId until 16, procNumber
 * (ProcNumberGetProc) from 17.
 */
#if PG_VERSION_NUM >= 170000
#include "storage/procarray.h"	/* ProcNumberGetProc() */
#include "storage/procnumber.h"
#define IdemVxidGetProc(vxid) ProcNumberGetProc((vxid).procNumber)
#else
#include "storage/sinvaladt.h"
#define IdemVxidGetProc(vxid) BackendIdGetProc((vxid).backendId)
#endif

/*
 * The varlena macros (VARSIZE_ANY_EXHDR ...) moved from postgres.h to
 * varatt.h in 16.
 */
#if PG_VERSION_NUM >= 160000
#include "varatt.h"
#endif

/* EXECUTE on a function: pg_proc_aclcheck became object_aclcheck in 16. */
#if PG_VERSION_NUM >= 160000
#define idem_proc_aclcheck(funcid, roleid, mode) \
	object_aclcheck(ProcedureRelationId, (funcid), (roleid), (mode))
#else
#define idem_proc_aclcheck(funcid, roleid, mode) \
	pg_proc_aclcheck((funcid), (roleid), (mode))
#endif

/*
 * ExplainPropertyText() and friends moved to explain_format.h in 18, and
 * ExplainState to explain_state.h.
 */
#if PG_VERSION_NUM >= 180000
#include "commands/explain_format.h"
#include "commands/explain_state.h"
#else
#include "commands/explain.h"
#endif

/* An instr_time in nanoseconds: INSTR_TIME_GET_NANOSEC appeared in 16. */
#if PG_VERSION_NUM >= 160000
#define IdemInstrTimeGetNanosec(t) ((uint64) INSTR_TIME_GET_NANOSEC(t))
#else
#define IdemInstrTimeGetNanosec(t) ((uint64) (INSTR_TIME_GET_DOUBLE(t) * 1000000000.0))
#endif

/*
 * Virtual generated columns appeared in 18: stored as NULL, computed by
 * the executor's rewrite of the query, so a tuple read from the heap
 * lacks their values.
 */
#if PG_VERSION_NUM >= 180000
#define IdemHasVirtualGenerated(tupdesc) \
	((tupdesc)->constr != NULL && (tupdesc)->constr->has_generated_virtual)
#else
#define IdemHasVirtualGenerated(tupdesc) false
#endif

/*
 * LockHeldByMe() takes a third argument, orstronger, from 17; ours asks for
 * exactly the given mode, as 15's does.
 */
#if PG_VERSION_NUM >= 170000
#include "storage/lock.h"
#define LockHeldByMe(locktag, lockmode) LockHeldByMe((locktag), (lockmode), false)
#endif

/*
 * Does a btree scan with an array of keys (a scan key with SK_SEARCHARRAY,
 * as for "key = ANY ($1)") move from one key to the next on the same leaf
 * page without descending from the root again?  From 17.  Until then each
 * key costs a descent, as a rescan per key does, and the array's
 * preprocessing (deconstruct, sort, deduplicate) comes on top: a batch
 * (src/upsert.c) probes its keys one by one there.
 */
#if PG_VERSION_NUM >= 170000
#define IDEM_BTREE_ARRAY_SKIPS true
#else
#define IDEM_BTREE_ARRAY_SKIPS false
#endif

/*
 * index_beginscan() takes an IndexScanInstrumentation pointer (EXPLAIN's
 * index search counts) from 18; ours has none to give.
 */
#if PG_VERSION_NUM >= 180000
#include "access/genam.h"
#define index_beginscan(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), NULL, (nkeys), (norderbys))
#endif

/*
 * A row update without the executor (src/rows.c).  table_tuple_update()
 * says which indexes need entries for the new version: a bool until 15,
 * TU_UpdateIndexes (none, all, only the summarizing ones) from 16, when
 * ExecInsertIndexTuples() gained onlySummarizing.  Ours: wait for
 * concurrent updaters, no cross-check snapshot, and *summarizing_only
 * set when only summarizing indexes need entries; index entries with
 * ON CONFLICT's noDupErr when specconflict is given (for the arbiter
 * indexes; NIL: every unique index).
 */
#include "access/tableam.h"
#include "executor/executor.h"
#if PG_VERSION_NUM >= 160000
static inline TM_Result
idem_tuple_update(Relation rel, ItemPointer otid, TupleTableSlot *slot,
				  CommandId cid, Snapshot snapshot, TM_FailureData *tmfd,
				  bool *update_indexes, bool *summarizing_only)
{
	LockTupleMode lockmode;
	TU_UpdateIndexes which;
	TM_Result	res;

	res = table_tuple_update(rel, otid, slot, cid, snapshot, InvalidSnapshot,
							 true, tmfd, &lockmode, &which);
	*update_indexes = (which != TU_None);
	*summarizing_only = (which == TU_Summarizing);
	return res;
}
#define idem_insert_index_entries(rri, slot, estate, specconflict, \
								  arbiters, summarizing_only) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, \
						  (specconflict) != NULL, (specconflict), (arbiters), \
						  (summarizing_only))
#else
static inline TM_Result
idem_tuple_update(Relation rel, ItemPointer otid, TupleTableSlot *slot,
				  CommandId cid, Snapshot snapshot, TM_FailureData *tmfd,
				  bool *update_indexes, bool *summarizing_only)
{
	LockTupleMode lockmode;

	*summarizing_only = false;
	return table_tuple_update(rel, otid, slot, cid, snapshot, InvalidSnapshot,
							  true, tmfd, &lockmode, update_indexes);
}
#define idem_insert_index_entries(rri, slot, estate, specconflict, \
								  arbiters, summarizing_only) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, \
						  (specconflict) != NULL, (specconflict), (arbiters))
#endif

/*
 * ON CONFLICT's pre-check of the arbiter indexes (NIL: every unique index;
 * src/rows.c): from 18, ExecCheckIndexConstraints() takes the TID of a row
 * being updated (for WITHOUT OVERLAPS), none for an insert.
 */
#if PG_VERSION_NUM >= 180000
static inline bool
idem_check_index_constraints(ResultRelInfo *rri, TupleTableSlot *slot,
							 EState *estate, ItemPointer conflict,
							 List *arbiters)
{
	ItemPointerData none;

	ItemPointerSetInvalid(&none);
	return ExecCheckIndexConstraints(rri, slot, estate, conflict, &none,
									 arbiters);
}
#else
#define idem_check_index_constraints(rri, slot, estate, conflict, arbiters) \
	ExecCheckIndexConstraints((rri), (slot), (estate), (conflict), (arbiters))
#endif

/*
 * The type of a custom scan's scan slot (src/callscan.c): from 16 the scan
 * state may choose it (CustomScanState.slotOps, set when the state is
 * created); until then it is always virtual.  IDEM_CALLSCAN_SLOT_OPS is
 * the slot type of the call scan, a heap tuple slot where one may be
 * chosen: the call's row is stored as it is, and only the columns that
 * are read are taken apart.
 */
#if PG_VERSION_NUM >= 160000
#define IDEM_CALLSCAN_SLOT_OPS (&TTSOpsHeapTuple)
#define idem_customscan_set_slot_ops(css, ops) ((css)->slotOps = (ops))
#else
#define IDEM_CALLSCAN_SLOT_OPS (&TTSOpsVirtual)
#define idem_customscan_set_slot_ops(css, ops) ((void) (ops))
#endif

/*
 * The C library's malloc (src/upsert.c, batch_keep_heap()).  glibc gives
 * the free memory at the top of its heap back to the kernel (brk) once
 * more than its trim threshold is free there, and sets that threshold
 * itself: 128 kB to begin with; when a block it had mapped on its own (a
 * request of at least its mmap threshold, also 128 kB to begin with) is
 * freed, the mmap threshold becomes that block's size and the trim
 * threshold twice it, for blocks of up to IDEM_MALLOC_DYNAMIC_MAX.
 * IDEM_MALLOC_DYNAMIC says whether the C library behaves so.
 */
#if defined(__GLIBC__)
#define IDEM_MALLOC_DYNAMIC 1
#if SIZEOF_LONG == 8
#define IDEM_MALLOC_DYNAMIC_MAX ((Size) 32 * 1024 * 1024)
#else
#define IDEM_MALLOC_DYNAMIC_MAX ((Size) 512 * 1024)
#endif
#else
#define IDEM_MALLOC_DYNAMIC 0
#endif

#endif							/* IDEMPOTENCY_COMPAT_H */
