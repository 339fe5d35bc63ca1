/*-------------------------------------------------------------------------
 *
 * idempotency.c
 *	  Module entry point and the library/SQL version check.
 *
 * The shared library and the SQL objects of the extension are installed and
 * upgraded separately: "make install" (or a package upgrade) replaces the
 * library on disk at once, while the SQL objects only change when someone
 * runs ALTER EXTENSION idempotency UPDATE.  A backend that loads a library
 * of version X while the database holds SQL objects of version Y would call
 * C functions with argument lists or table shapes they were not written for.
 * Every SQL-callable entry point therefore calls idempotency_check_version()
 * first, and a mismatch is reported as a clear error that names both
 * versions and says which command fixes it.
 *
 * The check reads pg_extension.extversion, which has no syscache, so its
 * result is cached in a backend-local flag.  Every upgrade script (and
 * CREATE / DROP EXTENSION) creates, replaces or drops functions, which sends
 * a pg_proc syscache invalidation to every backend; the callback registered
 * here clears the flag on any such invalidation, so the next call re-reads
 * the catalog.  Invalidations are rare (DDL on functions), so the steady
 * state cost of the check is one test of a static bool.
 *
 * Locking: the catalog read takes AccessShareLock on pg_extension, as every
 * other reader of that catalog does.  The cached flag is backend-local.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/rel.h"
#include "utils/syscache.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(idempotency_version);

void		_PG_init(void);

static char *installed_sql_version(void);
static int	compare_versions(const char *a, const char *b);
static void version_inval_callback(Datum arg, int cacheid, uint32 hashvalue);

/* True once this backend has seen matching library and SQL versions. */
static bool version_checked = false;

void
_PG_init(void)
{
	idem_stats_init();

	/* Nothing may use the "idempotency." GUC prefix but this library. */
	MarkGUCPrefixReserved(IDEMPOTENCY_EXTNAME);

	CacheRegisterSyscacheCallback(PROCOID, version_inval_callback, (Datum) 0);

	idem_events_init();
}

static void
version_inval_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	version_checked = false;
}

/*
 * Return the installed SQL version of the extension (palloc'd), or NULL
 * when the extension is not installed in this database.
 */
static char *
installed_sql_version(void)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	char	   *result = NULL;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum(IDEMPOTENCY_EXTNAME));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);

		if (!isnull)
			result = text_to_cstring(DatumGetTextPP(d));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return result;
}

/*
 * Compare two dotted version strings numerically ("0.10.0" > "0.9.1").
 * Non-numeric parts compare as text.  Returns <0, 0 or >0.
 */
static int
compare_versions(const char *a, const char *b)
{
	while (*a || *b)
	{
		if (isdigit((unsigned char) *a) && isdigit((unsigned char) *b))
		{
			char	   *ea;
			char	   *eb;
			unsigned long na = strtoul(a, &ea, 10);
			unsigned long nb = strtoul(b, &eb, 10);

			if (na != nb)
				return na < nb ? -1 : 1;
			a = ea;
			b = eb;
		}
		else
		{
			if (*a != *b)
				return (unsigned char) *a < (unsigned char) *b ? -1 : 1;
			a++;
			b++;
		}
	}
	return 0;
}

/*
 * Raise an error unless the loaded library and the installed SQL objects
 * are of the same version.  Called first by every SQL-callable function.
 */
void
idempotency_check_version(void)
{
	char	   *sqlversion;

	if (likely(version_checked))
		return;

	/* Inside CREATE / ALTER EXTENSION the script itself may call us. */
	if (creating_extension)
		return;

	sqlversion = installed_sql_version();
	if (sqlversion == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"%s\" is not installed in this database",
						IDEMPOTENCY_EXTNAME),
				 errhint("Run CREATE EXTENSION %s.", IDEMPOTENCY_EXTNAME)));

	if (strcmp(sqlversion, IDEMPOTENCY_VERSION) != 0)
	{
		bool		library_newer = compare_versions(IDEMPOTENCY_VERSION, sqlversion) > 0;

		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"%s\" library version %s does not match its installed SQL version %s",
						IDEMPOTENCY_EXTNAME, IDEMPOTENCY_VERSION, sqlversion),
				 errdetail("The shared library loaded by this session and the SQL objects in this database come from different releases."),
				 library_newer
				 ? errhint("Run ALTER EXTENSION %s UPDATE to upgrade the SQL objects to version %s.",
						   IDEMPOTENCY_EXTNAME, IDEMPOTENCY_VERSION)
				 : errhint("Install version %s of the library and reconnect (restart the server if the library is in shared_preload_libraries).",
						   sqlversion)));
	}

	pfree(sqlversion);
	version_checked = true;
}

/*
 * idempotency.version() -> text
 *
 * The version of the loaded library, which (after the check) is also the
 * version of the SQL objects.
 */
Datum
idempotency_version(PG_FUNCTION_ARGS)
{
	idempotency_check_version();
	PG_RETURN_TEXT_P(cstring_to_text(IDEMPOTENCY_VERSION));
}
