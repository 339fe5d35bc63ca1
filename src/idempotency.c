/*-------------------------------------------------------------------------
 *
 * idempotency.c
 *	  Module entry point (the callbacks of every file), the library/SQL
 *	  version check, and the check that a writing function may write (not
 *	  on a hot standby, not in a read-only transaction).
 *
 * The shared library and the SQL objects of the extension are installed and
 * upgraded separately: "make install" (or a package upgrade) replaces the
 * library on disk at once, while the SQL objects only change when someone
 * runs ALTER EXTENSION idempotency UPDATE.  A backend that loads a library
 * of version X while the database holds SQL objects of version Y would call
 * C functions with argument lists or table shapes they were not written for.
 * Every SQL-callable entry point therefore calls idempotency_check_version()
 * first.  The library serves the SQL objects of its own release and of every
 * earlier release from IDEMPOTENCY_OLDEST_SQL_VERSION on (entry points are
 * never removed or changed incompatibly), so a package upgrade is no outage;
 * SQL objects newer than the library are refused with a clear error that
 * names both versions and says which command fixes it.
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
 * _PG_init() also registers, once per backend, every cache and transaction
 * callback of the other files: one relcache callback that calls each
 * cache's handler (a backend has ten relcache callback slots, Citus takes
 * five of them), and each file's transaction callbacks, which do nothing
 * while their file has nothing pending.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "idempotency.h"

#include "access/genam.h"
#include "access/xact.h"
#include "access/xlog.h"
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
static void relcache_inval_callback(Datum arg, Oid relid);
static void namespace_inval_callback(Datum arg, int cacheid, uint32 hashvalue);

/* Oldest release whose SQL objects this library still serves. */
#define IDEMPOTENCY_OLDEST_SQL_VERSION	"0.1.0"

/*
 * True once this backend has seen SQL objects this library serves.  Reset
 * by any change of pg_proc (version_inval_callback): ALTER EXTENSION UPDATE
 * changes pg_extension, which sends no invalidation, so every update
 * script must change a function (the upgrade suite checks that each does).
 */
static bool version_checked = false;

/*
 * idempotency.session_locks: when off, mutex_session_lock and
 * mutex_session_try_lock are refused (mutex.c).  PGC_SUSET, so that a role
 * an administrator turned it off for (ALTER ROLE ... SET) cannot turn it
 * back on.
 */
bool		idem_session_locks = true;

/*
 * idempotency.call_scan: plan a call of the one-row upserts in FROM as the
 * custom scan of callscan.c (on), or as a Function Scan (off).  Any role
 * may set it: it changes how a statement runs, not what it may do.
 */
bool		idem_call_scan = true;

void
_PG_init(void)
{
	idem_stats_init();

	DefineCustomBoolVariable(IDEMPOTENCY_EXTNAME ".session_locks",
							 "Allows session-scoped keyed mutexes (mutex_session_lock, mutex_session_try_lock).",
							 "Turn it off for roles that connect through a transaction-pooling proxy, "
							 "where a session mutex would stay with the server connection.",
							 &idem_session_locks,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable(IDEMPOTENCY_EXTNAME ".call_scan",
							 "Runs a call of idempotent_upsert, get_or_create or update_or_create in FROM with the extension's custom scan.",
							 "Off: PostgreSQL's Function Scan, as before the custom scan existed. "
							 "Takes effect when a statement is planned.",
							 &idem_call_scan,
							 true,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	/*
	 * Nothing may use the "idempotency." GUC prefix but this library.  After
	 * the definitions: this drops placeholders of names not defined.
	 */
	MarkGUCPrefixReserved(IDEMPOTENCY_EXTNAME);

	/*
	 * Every cache callback of the library, registered once here rather than
	 * by each cache on first use: one relcache slot of the ten a backend
	 * has (see idempotency.h).
	 */
	CacheRegisterSyscacheCallback(PROCOID, version_inval_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(NAMESPACEOID, namespace_inval_callback, (Datum) 0);
	CacheRegisterRelcacheCallback(relcache_inval_callback, (Datum) 0);

	idem_events_init();
	idem_upsert_init();
	idem_mutex_init();
	idem_locks_init();
	idem_callscan_init();
}

/*
 * A schema renamed or dropped: the caches that keep a table's qualified
 * name (its statements' text) forget every table, as for a reset of the
 * whole relcache.  No relcache invalidation of the tables in the schema
 * comes with it.
 */
static void
namespace_inval_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	idem_tables_relcache_inval(InvalidOid);
	idem_upsert_relcache_inval(InvalidOid);
}

static void
relcache_inval_callback(Datum arg, Oid relid)
{
	idem_tables_relcache_inval(relid);
	idem_citus_relcache_inval(relid);
	idem_events_relcache_inval(relid);
	idem_upsert_relcache_inval(relid);
	idem_rows_relcache_inval(relid);
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
 * Raise an error unless the loaded library serves the installed SQL
 * objects' version.  Called first by every SQL-callable function.
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

	/*
	 * The library serves the SQL objects of every release from
	 * IDEMPOTENCY_OLDEST_SQL_VERSION on: its entry points keep the argument
	 * lists and result types of every such release, and its statements only
	 * use what every such release's tables have.  So installing a new
	 * library is not an outage for databases not yet updated.  SQL objects
	 * newer than the library cannot work; older than the oldest it serves
	 * would need an update first.
	 */
	if (compare_versions(sqlversion, IDEMPOTENCY_VERSION) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"%s\" has SQL objects of version %s, newer than its library version %s",
						IDEMPOTENCY_EXTNAME, sqlversion, IDEMPOTENCY_VERSION),
				 errdetail("The shared library loaded by this session is older than the SQL objects in this database."),
				 errhint("Install version %s or later of the library and reconnect (restart the server if the library is in shared_preload_libraries).",
						 sqlversion)));
	if (compare_versions(sqlversion, IDEMPOTENCY_OLDEST_SQL_VERSION) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"%s\" has SQL objects of version %s, older than its library version %s supports",
						IDEMPOTENCY_EXTNAME, sqlversion, IDEMPOTENCY_VERSION),
				 errdetail("This library serves SQL objects of version %s and later.",
						   IDEMPOTENCY_OLDEST_SQL_VERSION),
				 errhint("Run ALTER EXTENSION %s UPDATE.", IDEMPOTENCY_EXTNAME)));

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

/*
 * Raise SQLSTATE 25006 (read_only_sql_transaction), with a hint, unless this
 * transaction may write.  Called right after the version check by every
 * entry point that writes (fn: the function's name without schema and
 * parentheses).  Without it a write function on a hot standby or in a
 * read-only transaction would fail somewhere inside, on whatever statement
 * comes first, with a message about that statement and no hint -- or, for
 * the read-only paths of some functions, succeed on one call and fail on the
 * next.  On a hot standby every transaction is read-only, so the standby
 * case is tested first for the clearer message.
 */
void
idem_check_writable(const char *fn)
{
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot call %s.%s() on a hot standby",
						IDEMPOTENCY_SCHEMA, fn),
				 errdetail("%s.%s() writes to the database, and a server in recovery accepts only reads.",
						   IDEMPOTENCY_SCHEMA, fn),
				 errhint("Connect to the primary server (for example with target_session_attrs=read-write in the connection string).")));
	if (XactReadOnly)
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot call %s.%s() in a read-only transaction",
						IDEMPOTENCY_SCHEMA, fn),
				 errdetail("%s.%s() writes to the database.",
						   IDEMPOTENCY_SCHEMA, fn),
				 errhint("Call it in a read-write transaction (not BEGIN READ ONLY, and with default_transaction_read_only off).")));
}
