# test/lib/common.sh -- shared shell helpers for test/run, the suites, the
# demo and the benchmark.  Sourced, never executed.
#
# Conventions
#   PG_CONFIG      pg_config of the server to build against and test with
#   PGBINDIR       its --bindir (initdb, pg_ctl, psql, pgbench)
#   PGXS_DIR       directory holding pgxs.mk's tree (pg_regress & co.)
#   IDEM_ROOT      the project checkout
#   IDEM_WORK      scratch directory of this run (removed at the end)
#   IDEM_RESULTS   file the suites append "ok <name>" / "not ok <name>" to

idem_log()  { printf '%s\n' "== $*" >&2; }
idem_die()  { printf '%s\n' "ERROR: $*" >&2; exit 1; }

# Record one test result (used by suites).
idem_pass() { printf 'ok %s\n' "$1" >>"$IDEM_RESULTS"; printf '   ok      %s\n' "$1"; }
idem_fail() { printf 'not ok %s\n' "$1" >>"$IDEM_RESULTS"; printf '   FAILED  %s\n' "$1"; }

idem_is_root() { [ "$(id -u)" = 0 ]; }

# The operating-system user that owns and runs test clusters: the server
# refuses to run as root, so root hands clusters to "postgres".
idem_server_user() {
	if idem_is_root; then echo postgres; else id -un; fi
}

idem_as_server_user() {
	if idem_is_root; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# Choose PG_CONFIG: an explicit path wins; otherwise the newest server that
# is installed (Debian layout /usr/lib/postgresql/<major>/bin/postgres).
idem_resolve_pg_config() {
	if [ -n "${PG_CONFIG:-}" ] && [ "$PG_CONFIG" != pg_config ]; then
		[ -x "$PG_CONFIG" ] || idem_die "PG_CONFIG=$PG_CONFIG is not executable"
	else
		local server major
		server=$(ls -d /usr/lib/postgresql/*/bin/postgres 2>/dev/null | sort -V | tail -n 1)
		if [ -n "$server" ]; then
			major=$(basename "$(dirname "$(dirname "$server")")")
			PG_CONFIG=/usr/lib/postgresql/$major/bin/pg_config
		else
			PG_CONFIG=$(command -v pg_config || true)
			[ -n "$PG_CONFIG" ] || idem_die "no PostgreSQL server found (looked for /usr/lib/postgresql/*/bin/postgres and pg_config on PATH)"
		fi
	fi
	export PG_CONFIG
}

idem_pg_major() {
	"$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/'
}

# Install what the build and the suites need.  As root: apt-get.  Otherwise:
# print the exact command and stop.
idem_ensure_deps() {
	local major pkgs=()
	major=$(idem_pg_major)
	# Debian ships pgxs.mk with the client; the server headers are what is missing.
	if [ ! -f "$("$PG_CONFIG" --pgxs 2>/dev/null)" ] \
		|| [ ! -f "$("$PG_CONFIG" --includedir-server)/postgres.h" ]; then
		pkgs+=("postgresql-server-dev-$major")
	fi
	command -v make >/dev/null || pkgs+=(make)
	command -v gcc >/dev/null || pkgs+=(gcc)
	perl -MIPC::Run -e 1 2>/dev/null || pkgs+=(libipc-run-perl)
	if [ "${IDEM_NEED_NODE:-1}" = 1 ]; then
		command -v node >/dev/null || pkgs+=(nodejs)
		command -v npm >/dev/null || pkgs+=(npm)
	fi
	if [ "${IDEM_NEED_PGBOUNCER:-1}" = 1 ]; then
		command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || pkgs+=(pgbouncer)
	fi
	[ ${#pkgs[@]} -eq 0 ] && return 0

	if idem_is_root; then
		idem_log "installing: ${pkgs[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq >/dev/null
		apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null \
			|| idem_die "apt-get install ${pkgs[*]} failed"
	else
		printf '%s\n' "Missing packages. Run this, then try again:" >&2
		printf '%s\n' "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${pkgs[*]}" >&2
		exit 2
	fi
}

# idem_apt_install PKG...: build dependencies of a cached build (pgbuild.sh,
# citus.sh).  As root: apt-get install (after apt-get update if the first
# try fails).  Otherwise: print the exact command and exit 2.
idem_apt_install() {
	[ $# -eq 0 ] && return 0
	if idem_is_root; then
		idem_log "installing: $*"
		export DEBIAN_FRONTEND=noninteractive
		apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 \
			|| { apt-get update -qq >/dev/null \
				&& apt-get install -y -qq --no-install-recommends "$@" >/dev/null; } \
			|| idem_die "apt-get install $* failed"
	else
		printf '%s\n' "Missing packages. Run this, then try again:" >&2
		printf '%s\n' "  sudo apt-get update && sudo apt-get install -y --no-install-recommends $*" >&2
		exit 2
	fi
}

# idem_cached_build DIR WHAT DEPS_FN STEPS_FN [ARG...]: build something
# once into DIR, a cache entry outside the checkout (pgbuild.sh, citus.sh).
# Nothing happens when DIR/.complete exists.  Otherwise: wait for DIR.lock
# (a concurrent builder of the same entry finishes first, and its stamp is
# then found), install what DEPS_FN asks for, and run STEPS_FN ARG... in a
# subshell whose working directory is the empty DIR.src, with its output in
# DIR.log and the variables of a calling make unset (a sub-make of ours
# would skip a source tree's generated headers, which it builds at
# MAKELEVEL 0 only).  STEPS_FN must return non-zero on any failure: set -e
# does not apply inside it.  DIR.src goes afterwards; the stamp is written
# last, so a failed or interrupted build is redone by the next caller.
idem_cached_build() {
	local dir=$1 what=$2 deps=$3 steps=$4 log rc t0 lockfd
	shift 4
	[ -f "$dir/.complete" ] && return 0
	mkdir -p "$(dirname "$dir")" || idem_die "cannot create $(dirname "$dir") (set IDEM_CACHE)"
	exec {lockfd}>"$dir.lock"
	flock "$lockfd"
	if [ -f "$dir/.complete" ]; then
		exec {lockfd}>&-
		return 0
	fi
	"$deps"
	log=$dir.log
	idem_log "building $what into $dir; log in $log"
	t0=$SECONDS
	rm -rf "$dir" "$dir.src"
	mkdir -p "$dir" "$dir.src"
	rc=0
	(
		unset MAKELEVEL MAKEFLAGS MFLAGS MAKEOVERRIDES
		cd "$dir.src" && "$steps" "$@"
	) >"$log" 2>&1 || rc=$?
	rm -rf "$dir.src"
	if [ $rc -ne 0 ]; then
		tail -n 40 "$log" >&2
		exec {lockfd}>&-
		idem_die "building $what failed (log: $log)"
	fi
	: >"$dir/.complete"
	exec {lockfd}>&-
	idem_log "built $what in $((SECONDS - t0)) s"
}

# What only the benchmark uses: gnuplot (its chart) and redis-server (the
# redis group).  Best effort: without them the benchmark prints a "skipped"
# line for the chart or the group and goes on.
idem_ensure_bench_tools() {
	local pkgs=()
	command -v gnuplot >/dev/null || pkgs+=(gnuplot-nox)
	command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ] || pkgs+=(redis-server)
	[ ${#pkgs[@]} -eq 0 ] && return 0
	if idem_is_root; then
		idem_log "installing: ${pkgs[*]}"
		export DEBIAN_FRONTEND=noninteractive
		{ apt-get update -qq && apt-get install -y -qq --no-install-recommends "${pkgs[@]}"; } >/dev/null 2>&1 \
			|| idem_log "apt-get install ${pkgs[*]} failed: the benchmark skips what needs them"
	else
		idem_log "not installed: ${pkgs[*]} (sudo apt-get install -y ${pkgs[*]}); the benchmark skips what needs them"
	fi
}

idem_build_install() {
	idem_log "build ($(idem_pg_major), $PG_CONFIG)"
	# Objects built against another server (another major, or the same one
	# configured differently) must not be reused: .build-pg names the server
	# the objects in the checkout were built for.
	local built_for
	built_for="$PG_CONFIG $("$PG_CONFIG" --version) $("$PG_CONFIG" --configure)"
	if [ "$(cat "$IDEM_ROOT/.build-pg" 2>/dev/null)" != "$built_for" ]; then
		make -C "$IDEM_ROOT" -s PG_CONFIG="$PG_CONFIG" clean >/dev/null || idem_die "make clean failed"
		printf '%s\n' "$built_for" >"$IDEM_ROOT/.build-pg"
	fi
	make -C "$IDEM_ROOT" -s PG_CONFIG="$PG_CONFIG" >/dev/null || idem_die "build failed"
	local pkglib
	pkglib=$("$PG_CONFIG" --pkglibdir)
	if [ -w "$pkglib" ]; then
		make -C "$IDEM_ROOT" -s PG_CONFIG="$PG_CONFIG" install >/dev/null || idem_die "make install failed"
	else
		idem_die "cannot write to $pkglib: run as root, or point PG_CONFIG at a PostgreSQL tree you own"
	fi
}

# idem_cluster_start DIR [extra postgresql.conf lines on stdin]
# Creates and starts a throwaway cluster whose socket lives in DIR; exports
# PGHOST / PGPORT / PGUSER / PGDATABASE for clients.
idem_cluster_start() {
	local dir=$1 extra
	extra=$(cat)
	mkdir -p "$dir"
	idem_is_root && chown "$(idem_server_user)" "$dir"
	chmod 700 "$dir"
	idem_as_server_user "$PGBINDIR/initdb" -D "$dir/data" -A trust -U postgres \
		-E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1 \
		|| { cat "$dir/initdb.log" >&2; idem_die "initdb failed"; }
	idem_as_server_user tee -a "$dir/data/postgresql.conf" >/dev/null <<EOF
listen_addresses = ''
unix_socket_directories = '$dir'
port = ${PGPORT:-55432}
max_connections = 200
max_prepared_transactions = 10
fsync = off
full_page_writes = off
log_min_messages = warning
log_line_prefix = '%m [%p] %q%a '
$extra
EOF
	idem_as_server_user "$PGBINDIR/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
		|| { tail -n 30 "$dir/server.log" >&2; idem_die "server did not start"; }
	# Clients (root included) reach it over the socket, as superuser postgres.
	chmod 755 "$dir"
	export PGHOST=$dir PGPORT=${PGPORT:-55432} PGUSER=postgres PGDATABASE=postgres
}

idem_cluster_stop() {
	local dir=$1
	[ -f "$dir/data/postmaster.pid" ] || return 0
	idem_as_server_user "$PGBINDIR/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 \
		|| idem_as_server_user "$PGBINDIR/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
}

# idem_node_scratch DIR NAME SCRIPT...: a scratch directory with node-postgres
# installed from test/clients/package-lock.json (so the checkout stays
# clean) and the given scripts copied in.  On failure prints npm's log,
# records "NAME/npm-ci" as failed and returns non-zero.
idem_node_scratch() {
	local dir=$1 name=$2
	shift 2
	mkdir -p "$dir"
	cp "$IDEM_ROOT"/test/clients/package.json "$IDEM_ROOT"/test/clients/package-lock.json "$dir"/
	cp "$@" "$dir"/
	if ! (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >"$dir/npm.log" 2>&1); then
		cat "$dir/npm.log"
		idem_fail "$name/npm-ci"
		return 1
	fi
}

# psql with the options every script wants.
idem_psql() {
	PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning" \
		"$PGBINDIR/psql" -X -q -v ON_ERROR_STOP=1 "$@"
}
