/*-------------------------------------------------------------------------
 *
 * citus.c
 *	  Recognising Citus and its tables.
 *
 * Citus keeps one row per table it manages in pg_catalog.pg_dist_partition
 * (logicalrelid, partmethod, ..., repmodel).  The table exists only where
 * the citus extension has been created, on the coordinator and on every
 * worker that has metadata.  We read it by name, with the same catalog
 * access functions Citus uses, so this library has no link-time or
 * load-order dependency on Citus.
 *
 *	  partmethod 'h', 'r', 'a'		distributed (hash, range, append)
 *	  partmethod 'n', repmodel 't'	reference table
 *	  partmethod 'n', colocationid <> 0	distributed, one shard (no shard key)
 *	  partmethod 'n', otherwise		Citus local table
 *
 * Callers on hot paths (upsert, events, lease) ask idem_citus_table_kind()
 * for a table on every call; the answer is cached per backend, per table.
 *
 * What protects what.  The cache is backend-local.  Citus sends a relcache
 * invalidation for a table whenever its pg_dist_partition row changes
 * (create_distributed_table, create_reference_table, undistribute_table,
 * metadata sync to a worker), and our relcache callback drops that table's
 * entry, or every entry on a full reset; the next call reads the catalog
 * again.  A table's kind changes only with its pg_dist_partition row, so
 * a cached "plain table" stays right until then, also while the citus
 * extension itself is created (before it, pg_dist_partition does not
 * exist and every table is plain).
 *
 * Memory and lifetime.  The cache (an HTAB keyed by table OID) lives in
 * its own context under CacheMemoryContext for the life of the backend.
 * idem_random_uuid()'s block of random bytes is a static buffer of the
 * process that filled it (see there).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "idempotency.h"
#include "citus.h"
#include "plans.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "miscadmin.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

typedef struct CitusKindEntry
{
	Oid			relid;			/* hash key */
	IdemCitusKind kind;
} CitusKindEntry;

static HTAB *citus_kind_cache = NULL;

static IdemCitusKind citus_read_kind(Oid relid);

const char *
idem_citus_kind_name(IdemCitusKind kind)
{
	switch (kind)
	{
		case IDEM_CITUS_NONE:
			return "plain table";
		case IDEM_CITUS_LOCAL:
			return "Citus local table";
		case IDEM_CITUS_REFERENCE:
			return "reference table";
		case IDEM_CITUS_DISTRIBUTED:
			return "distributed table";
	}
	return "unknown";
}

/*
 * Is idempotency.<table> a distributed table?  Two lookups in backend-local
 * caches (the table's OID, then its kind), with or without Citus.
 */
bool
idem_citus_distributed(const char *table)
{
	Oid			owner;
	Oid			relid;

	relid = idem_table_lookup(table, true, &owner);
	return OidIsValid(relid) &&
		idem_citus_table_kind(relid) == IDEM_CITUS_DISTRIBUTED;
}

/*
 * A random (version 4) UUID, as gen_random_uuid() makes, from the same
 * source (pg_strong_random()): tokens are made here and passed to the
 * statements, because Citus refuses volatile functions in an UPDATE of a
 * distributed table, and because asking the random source for one block of
 * IDEM_RANDOM_BUF bytes costs little more than asking it for 16 (the fixed
 * cost of a call is most of gen_random_uuid()'s).  The block belongs to the
 * process that filled it (a forked child refills its own), and every byte
 * handed out is wiped from it.
 */
#define IDEM_RANDOM_BUF		(UUID_LEN * 32)

static uint8 idem_random_buf[IDEM_RANDOM_BUF];
static int	idem_random_pos = IDEM_RANDOM_BUF;
static int	idem_random_pid = 0;

void
idem_random_uuid(pg_uuid_t *uuid)
{
	if (idem_random_pid != MyProcPid ||
		idem_random_pos > IDEM_RANDOM_BUF - UUID_LEN)
	{
		if (!pg_strong_random(idem_random_buf, IDEM_RANDOM_BUF))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate random values")));
		idem_random_pos = 0;
		idem_random_pid = MyProcPid;
	}
	memcpy(uuid->data, idem_random_buf + idem_random_pos, UUID_LEN);
	explicit_bzero(idem_random_buf + idem_random_pos, UUID_LEN);
	idem_random_pos += UUID_LEN;
	uuid->data[6] = (uuid->data[6] & 0x0f) | 0x40;	/* version 4 */
	uuid->data[8] = (uuid->data[8] & 0x3f) | 0x80;	/* RFC 4122 variant */
}

/* What Citus makes of table relid (IDEM_CITUS_NONE without Citus). */
IdemCitusKind
idem_citus_table_kind(Oid relid)
{
	CitusKindEntry *e;
	bool		found;

	if (citus_kind_cache == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(CitusKindEntry);
		ctl.hcxt = AllocSetContextCreate(CacheMemoryContext,
										 "idempotency Citus table kinds",
										 ALLOCSET_SMALL_SIZES);
		citus_kind_cache = hash_create("idempotency Citus table kinds", 16,
									   &ctl,
									   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}

	e = hash_search(citus_kind_cache, &relid, HASH_FIND, NULL);
	if (e != NULL)
		return e->kind;

	/*
	 * Read first, then enter: an error while reading leaves no half-made
	 * entry behind.  An invalidation that arrives while we read (catalog
	 * access may process the queue) concerns the state we are reading.
	 */
	{
		IdemCitusKind kind = citus_read_kind(relid);

		e = hash_search(citus_kind_cache, &relid, HASH_ENTER, &found);
		e->kind = kind;
		return kind;
	}
}

/*
 * Is Citus installed in this database?  Its metadata table exists once
 * CREATE EXTENSION citus has run (a catalog cache look-up).
 */
bool
idem_citus_installed(void)
{
	return OidIsValid(get_relname_relid("pg_dist_partition",
										PG_CATALOG_NAMESPACE));
}

void
idem_citus_relcache_inval(Oid relid)
{
	HASH_SEQ_STATUS seq;
	CitusKindEntry *e;

	if (citus_kind_cache == NULL)
		return;
	if (OidIsValid(relid))
	{
		hash_search(citus_kind_cache, &relid, HASH_REMOVE, NULL);
		return;
	}
	hash_seq_init(&seq, citus_kind_cache);
	while ((e = hash_seq_search(&seq)) != NULL)
		hash_search(citus_kind_cache, &e->relid, HASH_REMOVE, NULL);
}

/* Look relid up in pg_dist_partition. */
static IdemCitusKind
citus_read_kind(Oid relid)
{
	Oid			catid;
	Oid			indexid;
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tup;
	IdemCitusKind kind = IDEM_CITUS_NONE;

	catid = get_relname_relid("pg_dist_partition", PG_CATALOG_NAMESPACE);
	if (!OidIsValid(catid))
		return IDEM_CITUS_NONE;
	indexid = get_relname_relid("pg_dist_partition_logical_relid_index",
								PG_CATALOG_NAMESPACE);

	rel = table_open(catid, AccessShareLock);
	{
		TupleDesc	desc = RelationGetDescr(rel);
		AttrNumber	att_relid = get_attnum(catid, "logicalrelid");
		AttrNumber	att_method = get_attnum(catid, "partmethod");
		AttrNumber	att_repmodel = get_attnum(catid, "repmodel");
		AttrNumber	att_coloc = get_attnum(catid, "colocationid");

		if (att_relid == InvalidAttrNumber || att_method == InvalidAttrNumber ||
			att_repmodel == InvalidAttrNumber || att_coloc == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("unrecognized Citus metadata layout in pg_catalog.pg_dist_partition"),
					 errhint("This release of idempotency supports Citus 13.")));

		ScanKeyInit(&key, att_relid, BTEqualStrategyNumber, F_OIDEQ,
					ObjectIdGetDatum(relid));
		scan = systable_beginscan(rel, indexid, OidIsValid(indexid), NULL,
								  1, &key);
		tup = systable_getnext(scan);
		if (HeapTupleIsValid(tup))
		{
			bool		isnull;
			char		method;
			char		repmodel;
			uint32		coloc;

			method = DatumGetChar(heap_getattr(tup, att_method, desc, &isnull));
			repmodel = DatumGetChar(heap_getattr(tup, att_repmodel, desc, &isnull));
			coloc = DatumGetUInt32(heap_getattr(tup, att_coloc, desc, &isnull));
			/*
			 * As Citus tells them apart (IsCitusTableTypeInternal): no
			 * distribution column and 2PC replication is a reference
			 * table; otherwise a colocation group makes a single-shard
			 * distributed table (create_distributed_table(t, NULL), a
			 * schema-based shard), and none a Citus local table.
			 */
			if (method != 'n')
				kind = IDEM_CITUS_DISTRIBUTED;
			else if (repmodel == 't')
				kind = IDEM_CITUS_REFERENCE;
			else if (!isnull && coloc != 0)
				kind = IDEM_CITUS_DISTRIBUTED;
			else
				kind = IDEM_CITUS_LOCAL;
		}
		systable_endscan(scan);
	}
	table_close(rel, AccessShareLock);
	return kind;
}
